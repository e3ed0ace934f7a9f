package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/aivault/aivault/ipc"
	"golang.org/x/sys/unix"
)

// spawnForTest starts one worker outside any pool.
func spawnForTest(t *testing.T, cfg PoolConfig) *worker {
	t.Helper()
	cfg = cfg.withDefaults()
	sp := newSpawner(cfg.spawnerExe())
	t.Cleanup(sp.close)
	w, err := spawn(context.Background(), cfg, sp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.kill(); w.wait() })
	return w
}

// checkLockedDown reads the worker's /proc entries from the parent, as the
// pool does before a job, and checks every thread and the rlimits.
func checkLockedDown(t *testing.T, w *worker) {
	t.Helper()
	if w.ready.LandlockABI < MinLandlockABI || !w.ready.Seccomp {
		t.Errorf("ready frame = landlock ABI %d, seccomp %v", w.ready.LandlockABI, w.ready.Seccomp)
	}
	base := "/proc/" + strconv.Itoa(w.pid)
	tasks, err := os.ReadDir(base + "/task")
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) < 2 {
		t.Errorf("expected a multi-threaded Go worker, got %d threads", len(tasks))
	}
	for _, task := range tasks {
		st, err := readStatus(base + "/task/" + task.Name() + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{"Seccomp": "2", "NoNewPrivs": "1", "TracerPid": "0"} {
			if st[k] != want {
				t.Errorf("thread %s: %s = %q, want %q", task.Name(), k, st[k], want)
			}
		}
	}
	limits, err := os.ReadFile(base + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{
		{"Max core file size", "0", "0"},
		{"Max file size", "0", "0"},
		{"Max open files", "16", "16"},
		{"Max locked memory", "0", "0"},
	} {
		found := false
		for _, line := range strings.Split(string(limits), "\n") {
			if strings.HasPrefix(line, want[0]) {
				found = true
				f := strings.Fields(line[len(want[0]):])
				if len(f) < 2 || f[0] != want[1] || f[1] != want[2] {
					t.Errorf("limit %q = %v, want %s %s", want[0], f, want[1], want[2])
				}
			}
		}
		if !found {
			t.Errorf("limit %q missing", want[0])
		}
	}
}

func TestWorkerStatusLockedDown(t *testing.T) {
	u := newUpstream(t, nil)
	w := spawnForTest(t, testConfig(t, u.roots, nil))
	checkLockedDown(t, w)
	if err := w.verify(false); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestVerifyFailsClosedOnInsecureWorker(t *testing.T) {
	u := newUpstream(t, nil)
	cfg := testConfig(t, u.roots, nil)
	cfg.Insecure = true
	w := spawnForTest(t, cfg)
	// An insecure worker is not in seccomp mode: the strict check refuses it.
	err := w.verify(false)
	var se *Error
	if !errors.As(err, &se) || se.Class != ClassSandboxUnavailable || !strings.Contains(se.Msg, "seccomp") {
		t.Fatalf("verify(strict) = %v, want SandboxUnavailable about seccomp", err)
	}
	if err := w.verify(true); err != nil {
		t.Fatalf("verify(insecure) = %v", err)
	}
}

func TestVerifyDeadWorker(t *testing.T) {
	u := newUpstream(t, nil)
	w := spawnForTest(t, testConfig(t, u.roots, nil))
	w.kill()
	// Not reaped yet: the pid stays ours (a zombie) until wait.
	err := pollErr(t, func() error { return w.verify(false) })
	if !errors.Is(err, errWorkerGone) {
		t.Fatalf("verify(dead) = %v, want errWorkerGone", err)
	}
}

// TestAliveDeadWorker: take's check notices an idle worker that died,
// without reaping it (the pid stays the monitor's until wait).
func TestAliveDeadWorker(t *testing.T) {
	u := newUpstream(t, nil)
	w := spawnForTest(t, testConfig(t, u.roots, nil))
	if err := w.alive(); err != nil {
		t.Fatalf("alive(ready worker) = %v", err)
	}
	w.kill()
	err := pollErr(t, w.alive)
	if !errors.Is(err, errWorkerGone) {
		t.Fatalf("alive(killed) = %v, want errWorkerGone", err)
	}
	if _, serr := os.Stat(fmt.Sprintf("/proc/%d", w.pid)); serr != nil {
		t.Fatalf("the dead worker was reaped by the check: %v", serr)
	}
	if st := w.wait(); st == nil || st.Success() {
		t.Fatalf("wait after kill = %v", st)
	}
}

// pollErr retries f until it returns an error.
func pollErr(t *testing.T, f func() error) error {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if err := f(); err != nil {
			return err
		}
		waitABit()
	}
	t.Fatal("condition not reached")
	return nil
}

func TestProbes(t *testing.T) {
	u := newUpstream(t, nil)
	for _, tc := range []struct {
		what   string
		detail string
	}{
		{ProbeOpen, "EACCES"},
		{ProbeSocket, "EPERM"},
		{ProbeExec, "EPERM"},
		{ProbeSyscall, "SIGSYS"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			res, err := Probe(context.Background(), testConfig(t, u.roots, nil), tc.what)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Blocked || !strings.Contains(res.Detail, tc.detail) {
				t.Fatalf("probe %s = %+v, want blocked with %s", tc.what, res, tc.detail)
			}
		})
	}
}

// TestProbesInsecure shows that the probes do detect a missing sandbox.
func TestProbesInsecure(t *testing.T) {
	u := newUpstream(t, nil)
	cfg := testConfig(t, u.roots, nil)
	cfg.Insecure = true
	for _, what := range []string{ProbeOpen, ProbeSocket, ProbeSyscall} {
		res, err := Probe(context.Background(), cfg, what)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Blocked {
			t.Errorf("insecure probe %s = %+v, want not blocked", what, res)
		}
	}
	if _, err := Probe(context.Background(), cfg, "bogus"); err == nil {
		t.Error("unknown probe accepted")
	}
}

func TestWorkerRefusesWithoutMonitorFDs(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	s0, s1 := os.NewFile(uintptr(fds[0]), "s0"), os.NewFile(uintptr(fds[1]), "s1")
	defer s0.Close()
	defer s1.Close()
	// A regular file with the right content but no seals: the worker maps
	// its roots and requires that nobody can change them underneath.
	unsealed, err := os.CreateTemp(t.TempDir(), "roots")
	if err != nil {
		t.Fatal(err)
	}
	defer unsealed.Close()
	if _, err := unsealed.Write(rootsDER(newTestCA(t, "x").pem)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		extra []*os.File
	}{
		{"no fds", nil},
		{"pipe as fd 3", []*os.File{pr, pr}},
		{"socket without roots", []*os.File{s1}},
		{"socket and a socket", []*os.File{s1, s1}},
		{"socket and a pipe", []*os.File{s1, pr}},
		{"socket and an unsealed file", []*os.File{s1, unsealed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(exe)
			cmd.Args = []string{DefaultArgv0}
			cmd.Env = []string{}
			cmd.ExtraFiles = tc.extra
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitRefused {
				t.Fatalf("exit = %v, want %d; output %s", err, exitRefused, out)
			}
			if !strings.Contains(string(out), "descriptor ") || !strings.Contains(string(out), "hint:") {
				t.Fatalf("output %q lacks a clear message", out)
			}
		})
	}
}

// TestWorkerWithoutRoots: probes need no roots; a request without them
// fails instead of falling back to the system's certificate files.
func TestWorkerWithoutRoots(t *testing.T) {
	cfg := testConfig(t, []byte("\n"), nil)
	res, err := Probe(context.Background(), cfg, ProbeSyscall)
	if err != nil || !res.Blocked {
		t.Fatalf("probe without roots = %+v, %v", res, err)
	}
	u := newUpstream(t, nil)
	w := spawnForTest(t, cfg)
	var c collected
	job := ipc.Job{V: ipc.ProtocolVersion, ServerName: "example.com", Method: "GET", Target: "/", TimeoutMs: 5000}
	if err := serve(context.Background(), w, job, u.dial(t), c.emit); err != nil {
		t.Fatal(err)
	}
	if c.end == nil || c.end.ErrorClass != ClassUpstreamTLS || c.head != nil {
		t.Fatalf("end = %+v head = %+v", c.end, c.head)
	}
}
