package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"
)

// landlockCheckArgv0 makes the test binary apply only the worker's Landlock
// configuration (no seccomp) and report what it can still do, so the
// Landlock layer is proven on its own and not just hidden behind seccomp.
const landlockCheckArgv0 = "aivault-landlock-check"

func landlockCheckMain() int {
	if err := landlock.V11.BestEffort().Restrict(); err != nil {
		fmt.Println("restrict:", err)
		return 1
	}
	return landlockProbes()
}

// landlockProbes tries what a restricted worker must not do and prints the
// outcome of each.
func landlockProbes() int {
	res := func(err error) string {
		if err == nil {
			return "ok"
		}
		return errnoName(err)
	}
	_, err := os.Open("/etc/passwd")
	fmt.Printf("open=%s\n", res(err))
	_, err = os.ReadDir("/")
	fmt.Printf("readdir=%s\n", res(err))
	err = os.WriteFile(os.Getenv("LL_WRITE"), []byte("x"), 0o600)
	fmt.Printf("write=%s\n", res(err))
	c, err := net.Dial("tcp4", os.Getenv("LL_ADDR"))
	if err == nil {
		c.Close()
	}
	fmt.Printf("connect=%s\n", res(unwrapSyscall(err)))
	fmt.Printf("bind=%s\n", res(rawBind(0)))
	// MPTCP is not covered by Landlock's TCP rules (SANDBOX-NOTES trap 1;
	// Go's net.Listen uses MPTCP by default): the seccomp filter denies
	// socket() altogether for that reason. Reported, not asserted.
	fmt.Printf("mptcp-bind=%s\n", res(rawBind(unix.IPPROTO_MPTCP)))
	return 0
}

// rawBind binds a fresh IPv4 stream socket of the given protocol.
func rawBind(proto int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
}

func unwrapSyscall(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

func TestLandlockLayerAlone(t *testing.T) {
	if s := Support(); s.LandlockABI < MinLandlockABI {
		t.Fatalf("this machine lacks Landlock ABI %d: %v", MinLandlockABI, s.Problems)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Args = []string{landlockCheckArgv0}
	cmd.Env = []string{"LL_ADDR=" + l.Addr().String(), "LL_WRITE=" + t.TempDir() + "/f"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := string(out)
	for _, want := range []string{"open=EACCES", "readdir=EACCES", "write=EACCES", "connect=EACCES", "bind=EACCES"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("want %s; got:\n%s", want, got)
		}
	}
	t.Logf("landlock alone:\n%s", got)
}

// earlyCheckEnv makes the test binary, started as aivault-worker with a job
// socket on descriptor 3 (so that the worker's C constructor ran), report
// what the process can still do with nothing but that constructor's
// Landlock domain: no seccomp filter, no other lockdown step.
const earlyCheckEnv = "AIVAULT_TEST_EARLY_LANDLOCK_CHECK"

func earlyLandlockCheckMain() int {
	abi, errno := earlyLandlock()
	fmt.Printf("early-abi=%d errno=%d\n", abi, int(errno))
	return landlockProbes()
}

func TestEarlyLandlockDomainAlone(t *testing.T) {
	if s := Support(); s.LandlockABI < MinLandlockABI {
		t.Fatalf("this machine lacks Landlock ABI %d: %v", MinLandlockABI, s.Problems)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "job"), os.NewFile(uintptr(fds[1]), "peer")
	defer a.Close()
	defer b.Close()
	run := func(argv0 string) string {
		cmd := exec.Command(exe)
		cmd.Args = []string{argv0}
		cmd.ExtraFiles = []*os.File{a}
		cmd.Env = []string{earlyCheckEnv + "=1", "LL_ADDR=" + l.Addr().String(), "LL_WRITE=" + t.TempDir() + "/f"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return string(out)
	}
	got := run(DefaultArgv0)
	if !strings.Contains(got, "early-abi=") || strings.Contains(got, "early-abi=0 ") {
		t.Fatalf("the constructor did not restrict the worker:\n%s", got)
	}
	for _, want := range []string{"open=EACCES", "readdir=EACCES", "write=EACCES", "connect=EACCES", "bind=EACCES"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("want %s; got:\n%s", want, got)
		}
	}
	t.Logf("constructor's Landlock domain alone:\n%s", got)
}
