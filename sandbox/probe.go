package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/aivault/aivault/ipc"
	"golang.org/x/sys/unix"
)

// Probe names accepted by Probe (and ipc.Job.Probe).
const (
	ProbeOpen    = "open"    // open a file
	ProbeSocket  = "socket"  // create a new socket
	ProbeExec    = "exec"    // execute a program, fork
	ProbeSyscall = "syscall" // call a syscall outside the allow-list
)

// ProbeNames lists every probe, in the order `doctor --sandbox` runs them.
func ProbeNames() []string { return []string{ProbeOpen, ProbeSocket, ProbeExec, ProbeSyscall} }

// ProbeResult is what a doctor probe observed.
type ProbeResult struct {
	What    string
	Blocked bool
	// Detail is the errno the worker saw ("EACCES") or how it died
	// ("killed by SIGSYS (seccomp)").
	Detail string
}

// Probe starts a real worker with cfg, verified like the pool's are, asks
// it to attempt one forbidden action and reports whether it was blocked.
// An error means the probe could not be run at all.
func Probe(ctx context.Context, cfg PoolConfig, what string) (ProbeResult, error) {
	res := ProbeResult{What: what}
	switch what {
	case ProbeOpen, ProbeSocket, ProbeExec, ProbeSyscall:
	default:
		return res, errorf(ClassInvalidRequest, "unknown probe %q (want one of %s)", truncate(what, 20), strings.Join(ProbeNames(), ", "))
	}
	cfg = cfg.withDefaults() // probes need no TLS roots
	defer cfg.closeFiles()
	sp := newSpawner(cfg.spawnerExe())
	defer sp.close()
	w, err := spawn(ctx, cfg, sp)
	if err != nil {
		return res, err
	}
	var end *ipc.Result
	err = serve(ctx, w, ipc.Job{V: ipc.ProtocolVersion, Probe: what, TimeoutMs: 10_000}, nil, func(r ipc.Result) error {
		if r.Kind == ipc.ResultEnd {
			end = &r
		}
		return nil
	})
	var we *workerExit
	switch {
	case err == nil && end != nil && end.ErrorClass == ClassProbeBlocked:
		res.Blocked, res.Detail = true, end.Error
	case err == nil && end != nil && end.ErrorClass == ClassProbeNotBlocked:
		res.Detail = end.Error
	case err == nil && end != nil:
		return res, errorf(ClassWorkerFailed, "probe %s: %s: %s", what, end.ErrorClass, end.Error)
	case errors.As(err, &we) && we.Signal != 0:
		res.Blocked, res.Detail = true, we.Error()
	case errors.As(err, &we) && what == ProbeExec:
		// The worker was replaced by another program.
		res.Detail = "the worker executed another program (" + we.Error() + ")"
	case err != nil:
		return res, err
	default:
		return res, errorf(ClassWorkerFailed, "probe %s: no result", what)
	}
	return res, nil
}

// runProbe attempts one forbidden action inside a worker and returns the
// end frame describing the outcome (the "syscall" probe does not return
// when seccomp works: the kernel kills the worker).
func runProbe(what string) ipc.Result {
	blocked := func(format string, args ...any) ipc.Result {
		return ipc.Result{ErrorClass: ClassProbeBlocked, Error: fmt.Sprintf(format, args...)}
	}
	allowed := func(format string, args ...any) ipc.Result {
		return ipc.Result{ErrorClass: ClassProbeNotBlocked, Error: fmt.Sprintf(format, args...)}
	}
	switch what {
	case ProbeOpen:
		for _, path := range []string{"/etc/passwd", "/proc/self/status"} {
			f, err := os.Open(path)
			if err == nil {
				_ = f.Close()
				return allowed("opened %s", path)
			}
		}
		_, err := os.Open("/etc/passwd")
		return blocked("open /etc/passwd: %s", errnoName(err))
	case ProbeSocket:
		for _, s := range []struct {
			name             string
			domain, typ, pro int
		}{
			{"tcp", unix.AF_INET, unix.SOCK_STREAM, 0},
			{"mptcp", unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP},
			{"udp", unix.AF_INET, unix.SOCK_DGRAM, 0},
			{"unix", unix.AF_UNIX, unix.SOCK_STREAM, 0},
		} {
			fd, err := unix.Socket(s.domain, s.typ|unix.SOCK_CLOEXEC, s.pro)
			if err == nil {
				_ = unix.Close(fd)
				return allowed("created a %s socket", s.name)
			}
		}
		_, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return blocked("socket: %s", errnoName(err))
	case ProbeExec:
		// Fork first (os.StartProcess), then execve in place.
		p, ferr := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
		if ferr == nil {
			_, _ = p.Wait()
			return allowed("started /bin/true")
		}
		eerr := syscall.Exec("/bin/true", []string{"true"}, nil)
		return blocked("fork+exec: %s; execve: %s", errnoName(ferr), errnoName(eerr))
	case ProbeSyscall:
		// unshare(0) changes nothing when allowed; it is not on the
		// allow-list, so seccomp kills the worker with SIGSYS.
		_, _, errno := unix.RawSyscall(unix.SYS_UNSHARE, 0, 0, 0)
		if errno != 0 {
			return blocked("unshare: %s", unix.ErrnoName(errno))
		}
		return allowed("unshare(0) succeeded")
	}
	return ipc.Result{ErrorClass: ClassInvalidRequest, Error: "unknown probe"}
}

func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
	}
	if err == nil {
		return "no error"
	}
	return err.Error()
}
