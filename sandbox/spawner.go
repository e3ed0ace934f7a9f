package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// spawner starts worker processes from one dedicated, locked OS thread.
//
// A worker's parent-death signal (PR_SET_PDEATHSIG) fires when the *thread*
// that forked it exits, not the process. Go threads normally live forever,
// but a thread is destroyed when a goroutine locked to it returns; forking
// from arbitrary goroutines would let such an unrelated exit SIGKILL a
// worker mid-request. The spawner's thread stays locked (so nothing else
// runs on it) until the spawner is closed and every worker it started has
// been reaped.
type spawner struct {
	reqs chan spawnReq
	// exe, when set, is the only file the spawner thread's Landlock domain
	// (and so every worker's) allows: read and execute.
	exe      string
	startErr error    // set by the thread before the first request: the domain could not be made
	devNull  *os.File // workers' stdin and stdout (the restricted thread cannot open it)

	mu      sync.Mutex
	cond    *sync.Cond
	live    int
	closing bool
}

type spawnReq struct {
	cmd *exec.Cmd
	res chan error
}

var errSpawnerClosed = errors.New("the worker pool is closed")

// newSpawner starts the spawner's thread. With a non-empty exe the thread
// restricts itself to a worker Landlock domain first (spawnlandlock.go);
// if that fails, every start fails with the reason.
func newSpawner(exe string) *spawner {
	s := &spawner{reqs: make(chan spawnReq), exe: exe}
	s.cond = sync.NewCond(&s.mu)
	if f, err := os.Open(os.DevNull); err == nil {
		s.devNull = f
	}
	ready := make(chan struct{})
	go s.loop(ready)
	<-ready
	return s
}

func (s *spawner) loop(ready chan<- struct{}) {
	runtime.LockOSThread()
	// no_new_privs is per thread and survives fork and execve: set on this
	// thread, every worker starts with it on all of its threads, so its
	// lockdown needs no all-threads prctl (lockdown.go; that broadcast was a
	// tenth of a worker's CPU). The same holds for the Landlock domain
	// (spawnlandlock.go). The thread is then never unlocked: it ends with
	// the loop instead of going back to the scheduler restricted.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		s.startErr = fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	} else if s.exe != "" {
		if err := restrictSpawnerThread(s.exe); err != nil {
			s.startErr = err
		}
	}
	close(ready)
	for r := range s.reqs {
		if s.startErr != nil {
			r.res <- s.startErr
			continue
		}
		if r.cmd.Stdin == nil && s.devNull != nil {
			r.cmd.Stdin = s.devNull
		}
		if r.cmd.Stdout == nil && s.devNull != nil {
			r.cmd.Stdout = s.devNull
		}
		r.res <- r.cmd.Start()
	}
	if s.devNull != nil {
		_ = s.devNull.Close()
	}
}

// start runs cmd.Start on the spawner's thread. On success the caller must
// call release once the process has been reaped.
func (s *spawner) start(cmd *exec.Cmd) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errSpawnerClosed
	}
	s.live++
	s.mu.Unlock()
	res := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, res: res}
	if err := <-res; err != nil {
		s.release()
		return err
	}
	return nil
}

// release records that one started worker has been reaped.
func (s *spawner) release() {
	s.mu.Lock()
	s.live--
	s.cond.Broadcast()
	s.mu.Unlock()
}

// waitReaped waits until every started worker has been reaped, or d has
// passed; it reports whether none is left.
func (s *spawner) waitReaped(d time.Duration) bool {
	t := time.AfterFunc(d, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer t.Stop()
	deadline := time.Now().Add(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.live > 0 && time.Now().Before(deadline) {
		s.cond.Wait()
	}
	return s.live == 0
}

// close refuses further starts and lets the thread go once every started
// worker has been reaped. It does not block.
func (s *spawner) close() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	s.mu.Unlock()
	go func() {
		s.mu.Lock()
		for s.live > 0 {
			s.cond.Wait()
		}
		s.mu.Unlock()
		close(s.reqs)
	}()
}
