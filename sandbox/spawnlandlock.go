package sandbox

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Workers get their Landlock domain from the spawner's thread.
//
// A Landlock domain belongs to a thread, is copied into every process that
// thread forks and survives execve. The spawner (spawner.go) owns one
// locked OS thread that does nothing but fork and exec workers, so it
// restricts that thread once (restrictSpawnerThread) and every worker starts
// inside the domain on its first instruction, before the Go runtime has
// created a thread: nothing to broadcast to the worker's threads, and no
// cgo constructor. The Go runtime never clones a new thread from a locked
// one (it hands thread creation to its template thread), so the domain
// cannot leak into the monitor's other threads.
//
// The domain handles every file right the kernel knows and allows only
// reading and executing the worker's own executable (execve needs both;
// a cgo build, which may be dynamically linked, also gets the loader cache
// and the system library directories, read-only), no
// TCP bind or connect, and (ABI ≥ 6) no abstract unix sockets outside it.
// Signals are not scoped: the Go runtime may preempt the monitor's other
// threads from this one, and the worker's seccomp filter already allows
// kill and tgkill only towards itself. The worker checks that it is in a
// domain (workerLandlocked) and refuses to run otherwise.

// landlockRulesetAttr is struct landlock_ruleset_attr as of ABI 6.
type landlockRulesetAttr struct {
	handledAccessFS  uint64
	handledAccessNet uint64
	scoped           uint64
}

// landlockPathBeneathAttr is the packed struct landlock_path_beneath_attr
// (the kernel reads its first 12 bytes).
type landlockPathBeneathAttr struct {
	allowedAccess uint64
	parentFD      int32
}

// workerRuleset is what a worker domain handles on a kernel of Landlock ABI abi.
func workerRuleset(abi int) landlockRulesetAttr {
	var a landlockRulesetAttr
	a.handledAccessFS = 1<<13 - 1 // ABI 1: execute .. make_sym
	if abi >= 2 {
		a.handledAccessFS |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		a.handledAccessFS |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		a.handledAccessFS |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	if abi >= 4 {
		a.handledAccessNet = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
	}
	if abi >= 6 {
		a.scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
	}
	return a
}

// restrictSpawnerThread puts the calling (locked) thread in a worker domain
// that may only read and execute exe. no_new_privs must already be set on
// the thread.
func restrictSpawnerThread(exe string) error {
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil {
		return fmt.Errorf("landlock is not available: %w", err)
	}
	if abi < MinLandlockABI {
		return fmt.Errorf("landlock ABI %d is too old (need %d, for TCP rules)", abi, MinLandlockABI)
	}
	attr := workerRuleset(abi)
	r, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
	ruleset := int(r)
	defer unix.Close(ruleset)
	// O_PATH resolves /proc/self/exe to the executable itself.
	fd, err := unix.Open(exe, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", exe, err)
	}
	defer unix.Close(fd)
	if err := addReadExecRule(ruleset, fd, exe); err != nil {
		return err
	}
	// A cgo build may be dynamically linked (go test binaries are; the
	// product is pure Go, hence static) and then needs its loader and
	// shared libraries (loaderPaths).
	for _, p := range loaderPaths {
		pfd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // not on this system
		}
		err = addReadExecRule(ruleset, pfd, p)
		_ = unix.Close(pfd)
		if err != nil {
			return err
		}
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); errno != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", errno)
	}
	return nil
}

// addReadExecRule allows reading and executing the file (or everything
// beneath the directory) fd refers to.
func addReadExecRule(ruleset, fd int, name string) error {
	access := uint64(unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		access |= unix.LANDLOCK_ACCESS_FS_READ_DIR
	}
	rule := landlockPathBeneathAttr{allowedAccess: access, parentFD: int32(fd)}
	if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("landlock_add_rule(%s): %w", name, errno)
	}
	return nil
}

// workerLandlocked reports whether this process is in a Landlock domain
// that denies file access: a worker started by the spawner cannot open its
// own /proc/self/stat for reading.
func workerLandlocked() (bool, error) {
	fd, err := unix.Open("/proc/self/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		_ = unix.Close(fd)
		return false, nil
	}
	if errors.Is(err, unix.EACCES) {
		return true, nil
	}
	return false, &os.PathError{Op: "open", Path: "/proc/self/stat", Err: err}
}
