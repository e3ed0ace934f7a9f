package sandbox

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/aivault/aivault/ipc"
	"golang.org/x/sys/unix"
)

// Descriptors a worker is started with.
const (
	jobFD   = 3 // unix SOCK_STREAM: job in, results out
	rootsFD = 4 // sealed memfd: TLS roots (DER, see roots.go), mapped read-only
)

// Environment variables the monitor sets for a worker (the rest of the
// worker's environment is PoolConfig.Env, never the monitor's own).
const (
	envParentPID = "AIVAULT_WORKER_PPID"
	envInsecure  = "AIVAULT_WORKER_INSECURE"
)

// Worker exit codes.
const (
	exitServed   = 0
	exitFailed   = 1
	exitRefused  = 2 // not started by a monitor
	exitLockdown = 3 // the sandbox could not be established
)

// maxRootsBytes bounds the roots mapped from the roots descriptor.
const maxRootsBytes = 16 << 20

// WorkerMain is the entry point of the "aivault-worker" applet. It refuses
// to run (exit 2) unless descriptor 3 is a unix stream socket and
// descriptor 4 a sealed memfd, as handed over by the monitor. It then locks itself down, loads
// the TLS roots, reports ready, serves exactly one job and exits.
func WorkerMain() int {
	if err := checkWorkerFDs(); err != nil {
		fmt.Fprintf(os.Stderr, "aivault-worker: error: %v\n", err)
		fmt.Fprintf(os.Stderr, "aivault-worker: hint: this is an internal applet that aivaultd starts for each request; run 'aivault' instead\n")
		return exitRefused
	}
	// Wrap the job channel before the lockdown (this also starts the Go
	// network poller while its setup syscalls are still allowed).
	jf := os.NewFile(jobFD, "job")
	fc, err := net.FileConn(jf)
	_ = jf.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "aivault-worker: error: job channel: %v\n", err)
		return exitRefused
	}
	conn, ok := fc.(*net.UnixConn)
	if !ok {
		fmt.Fprintf(os.Stderr, "aivault-worker: error: job channel is not a unix socket\n")
		return exitRefused
	}
	defer conn.Close()

	info, err := lockdown(os.Getenv(envInsecure) == "1", parentPIDFromEnv())
	if err != nil {
		fmt.Fprintf(os.Stderr, "aivault-worker: error: lockdown failed: %v\n", err)
		return exitLockdown
	}

	// A worker without usable roots still serves probes; a request fails
	// (it never falls back to the system's files).
	roots, rootsErr := readRoots()
	if err := ipc.WriteFrame(conn, ipc.Result{Kind: ipc.ResultReady, LandlockABI: info.LandlockABI, Seccomp: info.Seccomp}); err != nil {
		fmt.Fprintf(os.Stderr, "aivault-worker: error: send ready: %v\n", err)
		return exitFailed
	}

	var job ipc.Job
	sock, err := ipc.ReadFrameFD(conn, ipc.DefaultMaxFrame, &job)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return exitServed // the monitor closed the pool
		}
		fmt.Fprintf(os.Stderr, "aivault-worker: error: read job: %v\n", err)
		return exitFailed
	}
	emit := func(r ipc.Result) error { return ipc.WriteFrame(conn, r) }
	var end ipc.Result
	if job.Probe != "" {
		if sock != nil {
			_ = sock.Close()
		}
		end = runProbe(job.Probe)
	} else {
		if rootsErr != nil {
			if sock != nil {
				_ = sock.Close()
			}
			end = ipc.Result{ErrorClass: ClassUpstreamTLS, Error: rootsErr.Error()}
		} else {
			read := func(r *ipc.Result) error { return ipc.ReadFrame(conn, ipc.DefaultMaxFrame, r) }
			end = runJobSigned(job, sock, roots, emit, workerSignFunc(emit, read))
		}
	}
	wipeJob(&job)
	end.Kind = ipc.ResultEnd
	if err := emit(end); err != nil {
		fmt.Fprintf(os.Stderr, "aivault-worker: error: send result: %v\n", err)
		return exitFailed
	}
	return exitServed
}

// checkWorkerFDs verifies the descriptors a monitor hands a worker.
func checkWorkerFDs() error {
	var st unix.Stat_t
	if err := unix.Fstat(jobFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return errors.New("descriptor 3 is not the monitor's job socket")
	}
	dom, err1 := unix.GetsockoptInt(jobFD, unix.SOL_SOCKET, unix.SO_DOMAIN)
	typ, err2 := unix.GetsockoptInt(jobFD, unix.SOL_SOCKET, unix.SO_TYPE)
	if err1 != nil || err2 != nil || dom != unix.AF_UNIX || typ != unix.SOCK_STREAM {
		return errors.New("descriptor 3 is not a unix stream socket")
	}
	if err := unix.Fstat(rootsFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errors.New("descriptor 4 is not the monitor's roots file")
	}
	if seals, err := unix.FcntlInt(rootsFD, unix.F_GET_SEALS, 0); err != nil || seals&rootsSeals != rootsSeals {
		return errors.New("descriptor 4 is not the monitor's sealed roots memfd")
	}
	return nil
}

// readRoots maps the roots (concatenated DER, see roots.go) from the sealed
// roots memfd, read-only. An empty or unusable set is an error: the worker
// never falls back to files.
func readRoots() (*rootSet, error) {
	var st unix.Stat_t
	if err := unix.Fstat(rootsFD, &st); err != nil {
		return nil, fmt.Errorf("TLS roots: %w", err)
	}
	if st.Size <= 0 || st.Size > maxRootsBytes {
		return nil, fmt.Errorf("TLS roots: %d bytes (want 1..%d)", st.Size, maxRootsBytes)
	}
	der, err := unix.Mmap(rootsFD, 0, int(st.Size), unix.PROT_READ, unix.MAP_PRIVATE)
	_ = unix.Close(rootsFD)
	if err != nil {
		return nil, fmt.Errorf("map TLS roots: %w", err)
	}
	return newRootSet(der) // the mapping lives as long as the process
}

// wipeJob zeroes the secret-bearing parts of a job.
func wipeJob(j *ipc.Job) {
	for _, s := range j.Scrub {
		clear(s)
	}
	clear(j.Body)
	j.Headers = nil
	j.Target = ""
}
