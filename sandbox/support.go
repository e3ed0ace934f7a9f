package sandbox

import (
	"errors"
	"fmt"
	"unsafe"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// SupportInfo says what this kernel offers the worker sandbox.
type SupportInfo struct {
	// LandlockABI is the kernel's Landlock ABI version (0: none).
	LandlockABI int
	// SeccompAvailable is true when seccomp filters with kill-process and
	// TSYNC can be loaded.
	SeccompAvailable bool
	// Problems lists what is missing, one sentence each; empty when the
	// full sandbox is available. The monitor refuses to start unless it is
	// empty or the operator passed --insecure-no-sandbox.
	Problems []string
}

// OK reports whether the full sandbox is available.
func (s SupportInfo) OK() bool { return len(s.Problems) == 0 }

// Support probes the running kernel (without changing anything) for the
// features the worker needs: Landlock ABI ≥ 4 and seccomp filters.
func Support() SupportInfo {
	var s SupportInfo
	abi, err := llsys.LandlockGetABIVersion()
	switch {
	case err != nil && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)):
		s.Problems = append(s.Problems, "Landlock is not enabled in this kernel (needs CONFIG_SECURITY_LANDLOCK and \"landlock\" in the lsm= boot parameter)")
	case err != nil:
		s.Problems = append(s.Problems, fmt.Sprintf("Landlock ABI version could not be read: %v", err))
	default:
		s.LandlockABI = abi
		if abi < MinLandlockABI {
			s.Problems = append(s.Problems, fmt.Sprintf("Landlock ABI %d is too old: need %d (Linux 6.7+) to deny TCP connections", abi, MinLandlockABI))
		}
	}
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		s.Problems = append(s.Problems, "seccomp is not available in this kernel (CONFIG_SECCOMP_FILTER)")
		return s
	}
	// The filter's default action (kill the process) and its errno rules
	// must exist here (Linux 4.14+); TSYNC came before both.
	for _, act := range []uint32{unix.SECCOMP_RET_KILL_PROCESS, unix.SECCOMP_RET_ERRNO} {
		a := act
		if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&a))); errno != 0 {
			s.Problems = append(s.Problems, fmt.Sprintf("this kernel's seccomp lacks the action %#x (needs Linux 4.14+): %v", act, errno))
			return s
		}
	}
	if _, err := filterProgram(); err != nil {
		s.Problems = append(s.Problems, "the worker's seccomp filter: "+err.Error())
		return s
	}
	s.SeccompAvailable = true
	return s
}
