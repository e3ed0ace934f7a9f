//go:build cgo

// Package seccompgen compiles the worker's seccomp filter with libseccomp.
// It is used at development time only: `go generate ./sandbox` writes the
// compiled program (raw BPF, with sandbox.FilterPIDPlaceholder where the
// worker's pid goes) to sandbox/seccomp_<arch>.bpf, which the product embeds;
// TestEmbeddedFilterIsCurrent fails when the policy below and the embedded
// program disagree. The product binary therefore needs neither libseccomp
// nor cgo.
package seccompgen

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/aivault/aivault/sandbox"
	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Arches are the architectures a program is generated for (GOARCH names).
var Arches = map[string]seccomp.ScmpArch{"amd64": seccomp.ArchAMD64}

// Program compiles the worker filter for goarch with the pid placeholder.
func Program(goarch string) ([]byte, error) {
	arch, ok := Arches[goarch]
	if !ok {
		return nil, fmt.Errorf("no seccomp filter is generated for %s", goarch)
	}
	native, err := seccomp.GetNativeArch()
	if err != nil {
		return nil, err
	}
	if native != arch {
		return nil, fmt.Errorf("generate the %s filter on %s (this is %s)", goarch, goarch, native)
	}
	f, err := buildFilter(sandbox.FilterPIDPlaceholder)
	if err != nil {
		return nil, err
	}
	defer f.Release()
	return exportBPF(f)
}

// minSeccompAPI is the libseccomp API level the worker requires: level 3
// means the kernel supports SECCOMP_RET_KILL_PROCESS and TSYNC.
const minSeccompAPI = 3

// allowedSyscalls is what a locked-down worker may call without conditions:
// what the Go runtime (scheduler, sysmon, signals, netpoll, timers, cgo
// threads) and a TLS client over an already-connected socket need. Measured
// on Go 1.26 / glibc 2.36 (see SANDBOX-NOTES.md), minus everything the
// worker never needs: no socket, connect, bind, open, stat of paths,
// readlink, getdents, ioctl, exec, fork. Names unknown on the running
// architecture are skipped.
func allowedSyscalls() []string {
	return []string{
		// memory
		"brk", "mmap", "munmap", "mprotect", "madvise", "mremap",
		// scheduling, threads, time
		"futex", "sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep",
		"clock_gettime", "gettimeofday", "set_robust_list", "rseq", "restart_syscall",
		"setitimer", "timer_create", "timer_settime", "timer_delete",
		"getpid", "gettid", "exit", "exit_group",
		// signals (the runtime's preemption, crash handling)
		"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
		// the network poller
		"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
		"eventfd2", "pipe2",
		// I/O on descriptors the worker already holds
		"read", "write", "readv", "writev", "pread64", "lseek", "close", "fcntl", "fstat",
		"getsockopt", "setsockopt", "getsockname", "getpeername",
		"recvfrom", "sendto", "recvmsg", "sendmsg", "shutdown",
		// misc
		"getrandom", "uname",
	}
}

// errnoRule makes a syscall fail with errno instead of killing the worker.
type errnoRule struct {
	name  string
	errno unix.Errno
}

// errnoSyscalls fail with an error instead of killing the worker: things
// Go's standard library may attempt on error paths (and the doctor probes
// try), which are denied whatever happens. Landlock denies the file
// operations too; seccomp makes them fail before reaching the file system.
func errnoSyscalls() []errnoRule {
	return []errnoRule{
		{"open", unix.EACCES},
		{"openat", unix.EACCES},
		{"openat2", unix.EACCES},
		{"creat", unix.EACCES},
		{"socket", unix.EPERM},
		{"socketpair", unix.EPERM},
		{"execve", unix.EPERM},
		{"execveat", unix.EPERM},
		{"fork", unix.EPERM},
		{"vfork", unix.EPERM},
		// The runtime and glibc fall back to clone when clone3 is unavailable;
		// clone3's flags live in memory and cannot be checked by seccomp.
		{"clone3", unix.ENOSYS},
		{"pidfd_open", unix.ENOSYS},
	}
}

// buildFilter returns the worker's seccomp filter: default KILL_PROCESS,
// other architectures killed, TSYNC on, the allow-list above, clone only for
// threads, kill/tgkill only to the worker itself.
func buildFilter(pid int) (*seccomp.ScmpFilter, error) {
	api, err := seccomp.GetAPI()
	if err != nil {
		return nil, fmt.Errorf("libseccomp API level: %w", err)
	}
	if api < minSeccompAPI {
		return nil, fmt.Errorf("libseccomp API level %d is too old (need %d: kill-process and TSYNC)", api, minSeccompAPI)
	}
	f, err := seccomp.NewFilter(seccomp.ActKillProcess)
	if err != nil {
		return nil, fmt.Errorf("new filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	// The architecture check: only the native ABI; x32 and compat syscalls
	// kill the process.
	if err := f.SetBadArchAction(seccomp.ActKillProcess); err != nil {
		return nil, fmt.Errorf("bad-arch action: %w", err)
	}
	if err := f.SetNoNewPrivsBit(true); err != nil {
		return nil, fmt.Errorf("no_new_privs bit: %w", err)
	}
	add := func(name string, act seccomp.ScmpAction, conds ...seccomp.ScmpCondition) error {
		sc, err := seccomp.GetSyscallFromName(name)
		if err != nil {
			if errors.Is(err, seccomp.ErrSyscallDoesNotExist) {
				return nil // not on this architecture
			}
			return fmt.Errorf("resolve %s: %w", name, err)
		}
		if len(conds) == 0 {
			err = f.AddRule(sc, act)
		} else {
			err = f.AddRuleConditional(sc, act, conds)
		}
		if err != nil {
			return fmt.Errorf("rule for %s: %w", name, err)
		}
		return nil
	}
	for _, name := range allowedSyscalls() {
		if err := add(name, seccomp.ActAllow); err != nil {
			return nil, err
		}
	}
	for _, e := range errnoSyscalls() {
		if err := add(e.name, seccomp.ActErrno.SetReturnCode(int16(e.errno))); err != nil {
			return nil, err
		}
	}
	cond := func(arg uint, op seccomp.ScmpCompareOp, vals ...uint64) seccomp.ScmpCondition {
		c, cerr := seccomp.MakeCondition(arg, op, vals...)
		if cerr != nil && err == nil {
			err = cerr
		}
		return c
	}
	threadOnly := cond(0, seccomp.CompareMaskedEqual, unix.CLONE_THREAD, unix.CLONE_THREAD)
	notThread := cond(0, seccomp.CompareMaskedEqual, unix.CLONE_THREAD, 0)
	self := cond(0, seccomp.CompareEqual, uint64(pid))
	if err != nil {
		return nil, fmt.Errorf("condition: %w", err)
	}
	for _, r := range []struct {
		name string
		act  seccomp.ScmpAction
		c    seccomp.ScmpCondition
	}{
		{"clone", seccomp.ActAllow, threadOnly},
		{"clone", seccomp.ActErrno.SetReturnCode(int16(unix.EPERM)), notThread},
		{"kill", seccomp.ActAllow, self},
		{"tgkill", seccomp.ActAllow, self},
	} {
		if err := add(r.name, r.act, r.c); err != nil {
			return nil, err
		}
	}
	ok = true
	return f, nil
}

// exportBPF returns f compiled to BPF. (ExportBPFMem needs libseccomp 2.6;
// Debian 12 has 2.5, so the program goes through a memfd.)
func exportBPF(f *seccomp.ScmpFilter) ([]byte, error) {
	fd, err := unix.MemfdCreate("aivault-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	mf := os.NewFile(uintptr(fd), "aivault-bpf")
	defer mf.Close()
	if err := f.ExportBPF(mf); err != nil {
		return nil, err
	}
	if _, err := mf.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(mf, 4096*8+1))
}
