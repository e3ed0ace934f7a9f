package sandbox

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aivault/aivault/ipc"
	"golang.org/x/sys/unix"
)

// Pool defaults and bounds.
const (
	// DefaultExe is re-executed as the worker: parent and child are always
	// the same build.
	DefaultExe = "/proc/self/exe"
	// DefaultArgv0 is the worker's argv[0]; main.go dispatches on it.
	DefaultArgv0 = "aivault-worker"
	// DefaultPoolSize is used when PoolConfig.Size is negative.
	DefaultPoolSize = 2
	// spawnTimeout bounds a worker's start, lockdown and ready report.
	spawnTimeout = 10 * time.Second
	// exitWait bounds the wait for a worker to exit after its end frame.
	exitWait = 2 * time.Second
	// maxResultFrame bounds one frame from a worker.
	maxResultFrame = 1 << 20
	// stderrTail is how much of a worker's stderr is kept for start-up errors.
	stderrTail = 512
)

// PoolConfig configures the workers a Pool (or Probe) starts.
type PoolConfig struct {
	// Exe is the executable re-executed as a worker; default /proc/self/exe.
	Exe string
	// Argv0 is the worker's argv[0]; default "aivault-worker".
	Argv0 string
	// Size is how many pre-spawned, already locked-down workers are kept
	// ready. 0 spawns a worker per request; negative means DefaultPoolSize.
	Size int
	// RootsPEM are the TLS roots the workers trust (the system bundle, plus
	// the dev CA in devhooks builds), handed over on a pipe.
	RootsPEM []byte
	// Insecure skips Landlock and seccomp (--insecure-no-sandbox). The
	// caller must report this loudly. no_new_privs, non-dumpable, rlimits
	// and the TracerPid check still apply.
	Insecure bool
	// Env is the workers' complete environment (never the monitor's own).
	Env []string
	// Stderr receives the workers' stderr through a pipe (a regular file
	// would kill them with SIGXFSZ under RLIMIT_FSIZE 0); nil means
	// os.Stderr.
	Stderr io.Writer
	// Credential, when set, runs workers as this uid/gid (for example an
	// unprivileged account when the monitor runs as root).
	Credential *syscall.Credential

	// rootsDER is RootsPEM decoded once (withDefaults): what the workers
	// are sent (see roots.go), in rootsFile, a sealed memfd every worker
	// maps read-only (no copy through a pipe, no heap in the worker).
	rootsDER  []byte
	rootsFile *os.File
	rootsErr  error
}

func (c PoolConfig) withDefaults() PoolConfig {
	if c.Exe == "" {
		c.Exe = DefaultExe
	}
	if c.Argv0 == "" {
		c.Argv0 = DefaultArgv0
	}
	if c.Size < 0 {
		c.Size = DefaultPoolSize
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.rootsDER == nil {
		c.rootsDER = rootsDER(c.RootsPEM)
	}
	if c.rootsFile == nil && c.rootsErr == nil {
		c.rootsFile, c.rootsErr = sealedMemfd("aivault-roots", c.rootsDER)
	}
	return c
}

// spawnerExe is what the spawner's Landlock domain allows (see
// spawnlandlock.go): the worker executable, or nothing without a sandbox.
func (c PoolConfig) spawnerExe() string {
	if c.Insecure {
		return ""
	}
	return c.Exe
}

// closeFiles closes the memfd withDefaults made.
func (c PoolConfig) closeFiles() {
	if c.rootsFile != nil {
		_ = c.rootsFile.Close()
	}
}

// sealedMemfd returns a memfd holding data, sealed against any change
// (write, shrink, grow, and further sealing), positioned at offset 0.
func sealedMemfd(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, rootsSeals|unix.F_SEAL_SEAL); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("seal %s: %w", name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// rootsSeals are the seals a worker requires on its roots descriptor.
const rootsSeals = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW

// PoolStats are counters for `aivault status` and tests.
type PoolStats struct {
	Size    int // configured number of ready workers
	Idle    int // ready workers now
	Spawned int64
	Served  int64 // jobs that ended with an end frame
	Failed  int64 // workers that failed to start, failed the check, or died mid-job
	// LastError is the most recent start-up failure (no secrets: start-up
	// happens before a worker sees a job).
	LastError string
}

// Pool keeps single-use, pre-spawned, locked-down workers and runs jobs on
// them. It is safe for concurrent use.
type Pool struct {
	cfg    PoolConfig
	ctx    context.Context
	cancel context.CancelFunc
	idle   chan *worker
	wake   chan struct{}
	done   chan struct{}
	sp     *spawner

	spawned, served, failed atomic.Int64
	lastErr                 atomic.Value // string
	closeOnce               sync.Once

	// hookTake, set only by tests, sees each worker's pid before its job.
	hookTake func(pid int)
}

// NewPool checks kernel support (unless cfg.Insecure), starts one worker
// synchronously to prove the sandbox works here, and keeps cfg.Size workers
// ready from then on.
func NewPool(ctx context.Context, cfg PoolConfig) (*Pool, error) {
	if len(cfg.RootsPEM) == 0 {
		return nil, errorf(ClassSandboxUnavailable, "no TLS roots were configured for the workers")
	}
	if !cfg.Insecure {
		if s := Support(); !s.OK() {
			return nil, &Error{Class: ClassSandboxUnavailable, Msg: "the worker sandbox is not available: " + strings.Join(s.Problems, "; ")}
		}
	}
	cfg = cfg.withDefaults()
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &Pool{
		cfg:    cfg,
		ctx:    pctx,
		cancel: cancel,
		idle:   make(chan *worker, max(cfg.Size, 1)),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		sp:     newSpawner(cfg.spawnerExe()),
	}
	p.lastErr.Store("")
	w, err := p.spawnChecked(ctx)
	if err != nil {
		cancel()
		p.sp.close()
		cfg.closeFiles()
		return nil, err
	}
	if cfg.Size > 0 {
		p.idle <- w
		go p.fill()
	} else {
		w.kill()
		w.wait()
		close(p.done)
	}
	return p, nil
}

// Stats returns the pool's counters.
func (p *Pool) Stats() PoolStats {
	return PoolStats{
		Size:      p.cfg.Size,
		Idle:      len(p.idle),
		Spawned:   p.spawned.Load(),
		Served:    p.served.Load(),
		Failed:    p.failed.Load(),
		LastError: p.lastErr.Load().(string),
	}
}

// Close stops refilling, kills the idle workers and waits for them and for
// finished workers still being reaped (bounded). Jobs already running finish
// normally; Run after Close fails.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		<-p.done
		for {
			select {
			case w := <-p.idle:
				w.kill()
				w.wait()
			default:
				// Workers that finished their job are reaped in the
				// background (serve); let them go before returning, so
				// that nothing the pool started outlives Close.
				p.sp.close()
				p.sp.waitReaped(exitWait + time.Second)
				p.cfg.closeFiles()
				return
			}
		}
	})
	return nil
}

// fill keeps cfg.Size workers ready until the pool is closed.
func (p *Pool) fill() {
	defer close(p.done)
	backoff := 50 * time.Millisecond
	for {
		for len(p.idle) < p.cfg.Size {
			w, err := p.spawnChecked(p.ctx)
			if err != nil {
				if p.ctx.Err() != nil {
					return
				}
				t := time.NewTimer(backoff)
				select {
				case <-p.ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			select {
			case p.idle <- w: // only fill sends, and len < cap: never blocks
			case <-p.ctx.Done():
				w.kill()
				w.wait()
				return
			}
		}
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		}
	}
}

// spawnChecked starts a worker and waits for its ready report; failures are
// counted and remembered.
func (p *Pool) spawnChecked(ctx context.Context) (*worker, error) {
	p.spawned.Add(1)
	w, err := spawn(ctx, p.cfg, p.sp)
	if err != nil {
		p.failed.Add(1)
		p.lastErr.Store(err.Error())
		return nil, err
	}
	return w, nil
}

// take returns a verified worker (spawn checked its lockdown): an idle one,
// or a fresh one when none is ready. An idle worker found dead is replaced
// once.
func (p *Pool) take(ctx context.Context) (*worker, error) {
	if p.ctx.Err() != nil {
		return nil, errorf(ClassWorkerFailed, "the worker pool is closed")
	}
	for attempt := 0; ; attempt++ {
		var w *worker
		select {
		case w = <-p.idle:
			select {
			case p.wake <- struct{}{}:
			default:
			}
		default:
			var err error
			if w, err = p.spawnChecked(ctx); err != nil {
				return nil, err
			}
		}
		err := w.alive()
		if err == nil {
			return w, nil
		}
		w.kill()
		w.wait()
		p.failed.Add(1)
		if !errors.Is(err, errWorkerGone) {
			return nil, err
		}
		if attempt > 0 {
			return nil, &Error{Class: ClassWorkerFailed, Msg: "workers die before getting their job", Err: err}
		}
	}
}

// Run takes one verified worker, sends it job and conn (the connected
// upstream socket, which stays open in the caller: close it afterwards) and
// relays its result frames to emit: at most one head, chunks, and one end.
//
// The monitor re-applies the header allow-list and its own scrubber to what
// the worker sends, so even a subverted worker cannot return a response
// header outside the allow-list or a plain copy of an injected value.
//
// When the end frame was relayed, Run returns nil: the end frame's
// ErrorClass (UpstreamTimeout, ResponseTooLarge, …) tells how the request
// went. Otherwise it returns an *Error: WorkerFailed when the worker
// crashed, was killed or broke the protocol (the pool replaces it),
// UpstreamTimeout when it outlived the job's timeout, ResponseTooLarge when
// it sent more than the limit, SandboxUnavailable when no worker passed the
// lockdown check; or the error from emit, or the context's error.
func (p *Pool) Run(ctx context.Context, job ipc.Job, conn *os.File, emit func(ipc.Result) error) error {
	return p.RunSigned(ctx, job, conn, nil, emit)
}

// RunSigned is Run for a job with a client certificate (job.ClientCertPEM):
// signer, which stays in the monitor, answers the worker's one handshake
// signature request (see mtls.go).
func (p *Pool) RunSigned(ctx context.Context, job ipc.Job, conn *os.File, signer crypto.Signer, emit func(ipc.Result) error) error {
	w, err := p.take(ctx)
	if err != nil {
		return err
	}
	w.signer = signer
	if p.hookTake != nil {
		p.hookTake(w.pid)
	}
	err = serve(ctx, w, job, conn, emit)
	var se *Error
	if err == nil {
		p.served.Add(1)
	} else if errors.As(err, &se) && se.Class == ClassWorkerFailed {
		p.failed.Add(1)
	}
	return err
}

// worker is one spawned worker process.
type worker struct {
	cmd   *exec.Cmd
	conn  *net.UnixConn
	pid   int
	ready ipc.Result
	tail  *tailWriter
	sp    *spawner

	waitOnce sync.Once
	state    *os.ProcessState

	signer crypto.Signer // mTLS: signs for this worker's one job (monitor side)
}

// spawn starts a worker and waits for its ready frame.
func spawn(ctx context.Context, cfg PoolConfig, sp *spawner) (*worker, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, errorf(ClassWorkerFailed, "socketpair: %v", err)
	}
	parentEnd := os.NewFile(uintptr(fds[0]), "worker-job")
	childEnd := os.NewFile(uintptr(fds[1]), "worker-job")
	defer childEnd.Close()
	fc, err := net.FileConn(parentEnd)
	_ = parentEnd.Close()
	if err != nil {
		return nil, errorf(ClassWorkerFailed, "job channel: %v", err)
	}
	uc := fc.(*net.UnixConn)
	if cfg.rootsFile == nil {
		_ = uc.Close()
		return nil, errorf(ClassWorkerFailed, "TLS roots for the workers: %v", cfg.rootsErr)
	}

	env := append([]string{}, cfg.Env...)
	env = append(env, envParentPID+"="+strconv.Itoa(os.Getpid()))
	if cfg.Insecure {
		env = append(env, envInsecure+"=1")
	}
	tail := &tailWriter{}
	cmd := &exec.Cmd{
		Path: cfg.Exe,
		Args: []string{cfg.Argv0},
		Env:  env,
		// A writer that is not an *os.File makes os/exec hand the worker a
		// pipe; errors are swallowed so the worker never gets EPIPE on
		// stderr (which Go turns into SIGPIPE).
		Stderr:     &stderrWriter{w: cfg.Stderr, tail: tail},
		ExtraFiles: []*os.File{childEnd, cfg.rootsFile},
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig:  syscall.SIGKILL,
			Credential: cfg.Credential,
		},
		WaitDelay: time.Second,
	}
	if err := sp.start(cmd); err != nil {
		_ = uc.Close()
		if errors.Is(err, errSpawnerClosed) {
			return nil, errorf(ClassWorkerFailed, "the worker pool is closed")
		}
		return nil, errorf(ClassWorkerFailed, "start worker %s: %v", cfg.Exe, err)
	}
	_ = childEnd.Close()
	w := &worker{cmd: cmd, conn: uc, pid: cmd.Process.Pid, tail: tail, sp: sp}

	deadline := time.Now().Add(spawnTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = uc.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = uc.SetReadDeadline(time.Unix(1, 0)) })
	var ready ipc.Result
	err = ipc.ReadFrame(uc, 4096, &ready)
	stop()
	_ = uc.SetReadDeadline(time.Time{})
	if err == nil && ready.Kind != ipc.ResultReady {
		err = fmt.Errorf("unexpected %q frame", ready.Kind)
	}
	if err == nil && !cfg.Insecure && (!ready.Seccomp || ready.LandlockABI < MinLandlockABI) {
		err = fmt.Errorf("worker reports an incomplete sandbox (landlock ABI %d, seccomp %v)", ready.LandlockABI, ready.Seccomp)
	}
	if err != nil {
		w.kill()
		w.wait()
		msg := fmt.Sprintf("worker did not become ready: %v (%s)", err, describeExit(w.state))
		if t := w.tail.String(); t != "" {
			msg += ": " + t
		}
		return nil, &Error{Class: ClassWorkerFailed, Msg: msg}
	}
	w.ready = ready
	// The monitor's own check, from outside, of every thread the worker
	// has: done here, when it reports ready and before it can be handed a
	// job, so that it is off the request's path (take only checks that
	// the worker is still alive). What it checks cannot be undone by the
	// worker: no_new_privs and a seccomp filter are for life and every
	// later thread inherits them; attaching a tracer to a non-dumpable
	// process of another uid needs CAP_SYS_PTRACE.
	if err := w.verify(cfg.Insecure); err != nil {
		w.kill()
		w.wait()
		var se *Error
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, &Error{Class: ClassWorkerFailed, Msg: "worker died before its check: " + describeExit(w.state), Err: err}
	}
	return w, nil
}

// alive reports errWorkerGone when the (not yet reaped, so still ours)
// worker has exited or been killed while idle: its state in /proc/<pid>/stat
// is Z or X, or the file is gone. One small read: the full check ran at
// spawn (verify).
func (w *worker) alive() error {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(w.pid) + "/stat")
	if err != nil {
		return fmt.Errorf("%w: %v", errWorkerGone, err)
	}
	// "pid (comm) S ...": the state follows the last ')' (comm may hold any byte).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return fmt.Errorf("%w: unreadable stat", errWorkerGone)
	}
	if st := data[i+2]; st == 'Z' || st == 'X' || st == 'x' {
		return errWorkerGone
	}
	return nil
}

// errWorkerGone marks an idle worker that died before it got a job.
var errWorkerGone = errors.New("worker exited while idle")

// verify reads /proc/<pid>/status of every thread of the (not yet reaped,
// so not reusable) worker pid and requires TracerPid 0, NoNewPrivs 1 and,
// unless insecure, Seccomp 2 (filter mode).
func (w *worker) verify(insecure bool) error {
	base := "/proc/" + strconv.Itoa(w.pid)
	main, err := readStatus(base + "/status")
	if err != nil {
		return fmt.Errorf("%w: %v", errWorkerGone, err)
	}
	if s := main["State"]; strings.HasPrefix(s, "Z") || strings.HasPrefix(s, "X") {
		return errWorkerGone
	}
	tasks, err := os.ReadDir(base + "/task")
	if err != nil {
		return fmt.Errorf("%w: %v", errWorkerGone, err)
	}
	if len(tasks) == 0 {
		return errWorkerGone
	}
	for _, t := range tasks {
		st, err := readStatus(base + "/task/" + t.Name() + "/status")
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // a thread that just exited
			}
			return &Error{Class: ClassSandboxUnavailable, Msg: "cannot read the worker's status", Err: err}
		}
		if st["TracerPid"] != "0" {
			return errorf(ClassSandboxUnavailable, "worker %d is being traced (TracerPid %s); refusing to hand it a job", w.pid, st["TracerPid"])
		}
		if st["NoNewPrivs"] != "1" {
			return errorf(ClassSandboxUnavailable, "worker %d thread %s lacks no_new_privs", w.pid, t.Name())
		}
		if !insecure && st["Seccomp"] != "2" {
			return errorf(ClassSandboxUnavailable, "worker %d thread %s is not in seccomp filter mode (Seccomp %s)", w.pid, t.Name(), st["Seccomp"])
		}
	}
	return nil
}

// readStatus parses the "Key:\tvalue" lines of a /proc status file.
func readStatus(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

func (w *worker) kill() {
	_ = w.cmd.Process.Kill()
}

// wait reaps the worker once and closes the job channel.
func (w *worker) wait() *os.ProcessState {
	w.waitOnce.Do(func() {
		_ = w.conn.Close()
		_ = w.cmd.Wait()
		w.state = w.cmd.ProcessState
		w.sp.release()
	})
	return w.state
}

// workerExit describes how a worker process ended; it is the cause (Err)
// of a WorkerFailed error.
type workerExit struct {
	Signal syscall.Signal // 0 when it exited
	Code   int
}

func (e *workerExit) Error() string {
	if e.Signal != 0 {
		return "worker killed by " + signalName(e.Signal)
	}
	return "worker exited with status " + strconv.Itoa(e.Code)
}

func exitOf(st *os.ProcessState) *workerExit {
	if st == nil {
		return nil
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	if !ok {
		return &workerExit{Code: st.ExitCode()}
	}
	if ws.Signaled() {
		return &workerExit{Signal: ws.Signal()}
	}
	return &workerExit{Code: ws.ExitStatus()}
}

func describeExit(st *os.ProcessState) string {
	if e := exitOf(st); e != nil {
		return e.Error()
	}
	return "worker state unknown"
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		if s == syscall.SIGSYS {
			return n + " (seccomp)"
		}
		return n
	}
	return "signal " + strconv.Itoa(int(s))
}

// serve hands job and conn to w and relays its frames; it always reaps w.
func serve(ctx context.Context, w *worker, job ipc.Job, conn *os.File, emit func(ipc.Result) error) (err error) {
	reapLater := false
	defer func() {
		if !reapLater {
			w.wait()
		}
	}()
	timeout := DefaultTimeout
	if job.TimeoutMs > 0 {
		timeout = min(time.Duration(job.TimeoutMs)*time.Millisecond, maxTimeout)
	}
	// The worker enforces the timeout itself and reports UpstreamTimeout;
	// the monitor kills it if it outlives the timeout plus a grace period.
	limit := timeout + min(max(timeout/10, time.Second), 5*time.Second)
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var killed atomic.Bool
	stop := context.AfterFunc(rctx, func() {
		killed.Store(true)
		w.kill()
	})
	defer stop()

	// Needles for the monitor's own pass over what the worker returns.
	needles := Needles(job.Scrub, job.ResponseBlock)
	sc := NewScrubber(needles)
	defer sc.Wipe()
	outCap := outputCap(job.MaxResponseBytes, needles)
	for _, n := range needles {
		clear(n)
	}

	failed := func(cause error) error {
		w.kill()
		st := w.wait()
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("sandbox: request abandoned: %w", ctx.Err())
		case killed.Load():
			return &Error{Class: ClassUpstreamTimeout, Msg: fmt.Sprintf("the request did not finish within %s; its worker was killed", limit)}
		}
		ex := exitOf(st)
		msg := "the worker failed"
		if ex != nil {
			msg += ": " + ex.Error()
		}
		if cause != nil && !errors.Is(cause, io.EOF) && !errors.Is(cause, io.ErrUnexpectedEOF) && !errors.Is(cause, net.ErrClosed) {
			msg += " (" + cause.Error() + ")"
		}
		var e error = ex
		if ex == nil {
			e = cause
		}
		return &Error{Class: ClassWorkerFailed, Msg: msg, Err: e}
	}

	if conn != nil {
		err = ipc.WriteFrameFD(w.conn, job, conn)
	} else {
		err = ipc.WriteFrame(w.conn, job)
	}
	if err != nil {
		return failed(err)
	}

	sawHead := false
	signs := 0
	var out int64
	for {
		var r ipc.Result
		if rerr := ipc.ReadFrame(w.conn, maxResultFrame, &r); rerr != nil {
			return failed(rerr)
		}
		switch r.Kind {
		case ipc.ResultSign:
			if w.signer == nil || len(job.ClientCertPEM) == 0 || sawHead || signs >= maxSignsPerJob {
				return failed(errors.New("protocol violation: unexpected sign frame"))
			}
			signs++
			if werr := ipc.WriteFrame(w.conn, answerSign(w.signer, r)); werr != nil {
				return failed(werr)
			}
			continue
		case ipc.ResultHead:
			if sawHead || r.Status < 100 || r.Status > 999 {
				return failed(errors.New("protocol violation: bad head frame"))
			}
			sawHead = true
			r = ipc.Result{Kind: ipc.ResultHead, Status: r.Status, Headers: recheckHeaders(r.Headers, sc)}
		case ipc.ResultChunk:
			if !sawHead {
				return failed(errors.New("protocol violation: chunk before head"))
			}
			out += int64(len(r.Data))
			if out > outCap {
				w.kill()
				w.wait()
				return errorf(ClassResponseTooLarge, "the worker sent more than the response limit")
			}
			data := sc.Write(r.Data)
			clear(r.Data)
			if len(data) == 0 {
				continue
			}
			r = ipc.Result{Kind: ipc.ResultChunk, Data: data}
		case ipc.ResultEnd:
			if rest := sc.Flush(); len(rest) > 0 {
				if err := emit(ipc.Result{Kind: ipc.ResultChunk, Data: rest}); err != nil {
					w.kill()
					return err
				}
			}
			// Rebuild the end frame from the fields an end may carry.
			end := ipc.Result{
				Kind:       ipc.ResultEnd,
				ErrorClass: r.ErrorClass,
				Error:      truncate(string(sc.Once([]byte(r.Error))), maxErrorLen),
				BytesIn:    r.BytesIn,
				BytesOut:   r.BytesOut,
			}
			if end.ErrorClass != "" && !knownClass(end.ErrorClass) {
				end.ErrorClass, end.Error = ClassWorkerFailed, "the worker reported an unknown error class"
			}
			if err := emit(end); err != nil {
				w.kill()
				return err
			}
			// The worker has nothing left to do and exits by itself; it is
			// reaped in the background (its exit, unmapping a whole Go
			// process, took about a millisecond off every request's
			// latency), killed if it lingers. The spawner counts it live
			// until then, and Close waits for it.
			reapLater = true
			go func() {
				t := time.AfterFunc(exitWait, w.kill)
				w.wait()
				t.Stop()
			}()
			return nil
		default:
			return failed(fmt.Errorf("protocol violation: unexpected %q frame", truncate(r.Kind, 20)))
		}
		if err := emit(r); err != nil {
			w.kill()
			return err
		}
	}
}

// recheckHeaders re-applies the allow-list and the scrubber in the monitor.
func recheckHeaders(hs []ipc.Header, sc *Scrubber) []ipc.Header {
	var out []ipc.Header
	for _, h := range hs {
		if len(out) >= maxRespHeaders || !allowedResponseHeader(h.Name) {
			continue
		}
		out = append(out, ipc.Header{Name: strings.ToLower(h.Name), Value: truncate(string(sc.Once([]byte(h.Value))), maxRespHeaderValue)})
	}
	return out
}

// outputCap is the most body bytes a correct worker can send for limit
// decoded bytes: every redaction may grow the text by the marker.
func outputCap(limit int64, needles [][]byte) int64 {
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	shortest := 0
	for _, n := range needles {
		if shortest == 0 || len(n) < shortest {
			shortest = len(n)
		}
	}
	if shortest == 0 {
		return limit
	}
	return limit + (limit/int64(shortest)+1)*int64(len(RedactMarker))
}

// stderrWriter forwards a worker's stderr and keeps its tail; it never
// fails, so the worker never sees EPIPE on stderr.
type stderrWriter struct {
	w    io.Writer
	tail *tailWriter
}

func (s *stderrWriter) Write(p []byte) (int, error) {
	_, _ = s.w.Write(p)
	_, _ = s.tail.Write(p)
	return len(p), nil
}

// tailWriter keeps the last stderrTail bytes written.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > stderrTail {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-stderrTail:]...)
	}
	return len(p), nil
}

// String returns the tail as one line.
func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return truncate(strings.TrimSpace(strings.ReplaceAll(string(t.buf), "\n", " | ")), stderrTail)
}
