package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// MinLandlockABI is the oldest Landlock ABI the worker accepts: ABI 4 is the
// first that can deny TCP bind and connect.
const MinLandlockABI = 4

// workerNoFile is the worker's RLIMIT_NOFILE: stdio, the job channel, the
// roots and filter memfds (closed once read), the upstream socket, the Go runtime's epoll and event fds and
// a little slack. Opening files is denied anyway.
const workerNoFile = 16

// lockdownInfo is what the worker reports about its own lockdown.
type lockdownInfo struct {
	LandlockABI int
	Seccomp     bool
}

// lockdown confines the calling process, in this order: no_new_privs (all
// threads), non-dumpable, parent-death signal, resource limits, Landlock with
// no file or TCP access at all, then the seccomp allow-list with TSYNC. With
// insecure set, Landlock and seccomp are skipped (the operator's
// --insecure-no-sandbox); everything else still applies.
//
// RLIMIT_NPROC is deliberately not set: it counts threads per real uid and
// would kill a non-root Go worker; fork is denied by seccomp instead.
func lockdown(insecure bool, parentPID int) (lockdownInfo, error) {
	var info lockdownInfo
	// no_new_privs is per thread. A worker started by a Pool inherits it on
	// every thread from the spawner's thread (spawner.go): all threads
	// descend from the exec'd one, so this thread having it means all do.
	// Otherwise set it on every thread. (The monitor checks each thread's
	// NoNewPrivs before handing out a job either way.)
	if nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); err != nil || nnp != 1 {
		if err := llsys.AllThreadsPrctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return info, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return info, fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return info, fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", err)
	}
	// The monitor may have died before the prctl above took effect.
	if parentPID > 0 && os.Getppid() != parentPID {
		return info, errors.New("the monitor that started this worker is gone")
	}
	for _, l := range []struct {
		name     string
		resource int
		value    uint64
	}{
		{"RLIMIT_CORE", unix.RLIMIT_CORE, 0},
		{"RLIMIT_FSIZE", unix.RLIMIT_FSIZE, 0},
		{"RLIMIT_MEMLOCK", unix.RLIMIT_MEMLOCK, 0},
		{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, workerNoFile},
	} {
		lim := unix.Rlimit{Cur: l.value, Max: l.value}
		if err := unix.Setrlimit(l.resource, &lim); err != nil {
			return info, fmt.Errorf("setrlimit(%s): %w", l.name, err)
		}
	}
	if insecure {
		return info, nil
	}

	// Normally the worker started inside the Landlock domain of the
	// spawner's thread (spawnlandlock.go), on every thread it has.
	landlocked, err := workerLandlocked()
	if err != nil {
		return info, fmt.Errorf("landlock check: %w", err)
	}
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil {
		return info, fmt.Errorf("landlock is not available: %w", err)
	}
	if abi < MinLandlockABI {
		return info, fmt.Errorf("landlock ABI %d is too old (need %d, for TCP rules)", abi, MinLandlockABI)
	}
	if !landlocked {
		// Started some other way (not by a Pool): apply the same kind of
		// ruleset to every thread through go-landlock: every access right
		// handled and no rule, so no file access at all, no TCP bind or
		// connect, and (ABI ≥ 6) no signals or abstract unix sockets
		// outside the worker. BestEffort only drops rights the kernel
		// cannot express; the ABI floor above keeps the TCP rules. (Under
		// cgo, go-landlock enforces per thread through libpsx, which needs
		// to list /proc/<pid>/task; before ABI 8 it therefore adds one
		// read-dir rule for that directory, its bug #39.)
		if err := landlock.V11.BestEffort().Restrict(); err != nil {
			return info, fmt.Errorf("landlock: %w", err)
		}
		if landlocked, err = workerLandlocked(); err != nil || !landlocked {
			return info, fmt.Errorf("landlock: the ruleset does not deny file access (%v)", err)
		}
	}
	info.LandlockABI = abi

	if err := loadSeccomp(); err != nil {
		return info, fmt.Errorf("seccomp: %w", err)
	}
	info.Seccomp = true
	return info, nil
}

// parentPIDFromEnv reads the monitor's pid passed in the worker environment.
func parentPIDFromEnv() int {
	pid, err := strconv.Atoi(os.Getenv(envParentPID))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
