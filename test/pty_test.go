package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"
)

// cmdPtyrun runs a command on a pseudo-terminal, as a person at a terminal
// would: it waits for each prompt to appear before typing the answer, so
// that the terminal's echo state is the program's own. The transcript (what
// the terminal showed) becomes stdout; stderr is empty.
//
//	ptyrun [-expect PROMPT -send TEXT]... -- CMD ARGS...
//
// With !, the command must exit non-zero.
func cmdPtyrun(ts *testscript.TestScript, neg bool, args []string) {
	type step struct{ expect, send string }
	var steps []step
	for len(args) > 0 && args[0] != "--" {
		if len(args) < 4 || args[0] != "-expect" || args[2] != "-send" {
			ts.Fatalf("usage: ptyrun [-expect PROMPT -send TEXT]... -- CMD ARGS...")
		}
		steps = append(steps, step{args[1], args[3]})
		args = args[4:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: ptyrun [-expect PROMPT -send TEXT]... -- CMD ARGS...")
	}
	args = args[1:]
	env, dir, stdin := snapshot(ts, state(ts))
	stdin.Close()
	master, slave, err := openPty()
	ts.Check(err)
	defer master.Close()
	// The script's PATH, not ours, finds the command.
	path := ""
	for _, d := range strings.Split(getenvFrom(env, "PATH"), ":") {
		if p := d + "/" + args[0]; fileExists(p) {
			path = p
			break
		}
	}
	if path == "" {
		ts.Fatalf("ptyrun: %s not found on the script's PATH", args[0])
	}
	cmd := exec.Command(path, args[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	ts.Check(cmd.Start())
	slave.Close()

	var mu sync.Mutex
	var transcript bytes.Buffer
	done := make(chan struct{})
	more := make(chan struct{}, 1) // signalled after every read from the terminal
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			mu.Lock()
			transcript.Write(buf[:n])
			mu.Unlock()
			select {
			case more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	seen := 0
	for _, s := range steps {
		timeout := time.NewTimer(30 * time.Second)
		finished := false
		for {
			mu.Lock()
			idx := strings.Index(transcript.String()[seen:], s.expect)
			got := transcript.String()
			mu.Unlock()
			if idx >= 0 {
				seen += idx + len(s.expect)
				break
			}
			if finished {
				_ = cmd.Process.Kill()
				ts.Fatalf("ptyrun: prompt %q did not appear; the terminal showed:\n%s", s.expect, got)
			}
			select {
			case <-more:
			case <-done: // look once more at everything read, then give up
				finished = true
			case <-timeout.C:
				finished = true
			}
		}
		timeout.Stop()
		_, err := master.Write([]byte(s.send + "\r"))
		ts.Check(err)
	}
	werr := cmd.Wait()
	<-done
	mu.Lock()
	out := strings.ReplaceAll(transcript.String(), "\r\n", "\n")
	mu.Unlock()
	ts.Logf("terminal:\n%s", out)
	if (werr != nil) != neg {
		ts.Fatalf("ptyrun: %s exited with %v", args[0], werr)
	}
	_, _ = fmt.Fprint(ts.Stdout(), out)
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// openPty opens a new pseudo-terminal pair.
func openPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}
