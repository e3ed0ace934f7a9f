package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"unsafe"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

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

// The filter is compiled once per pool by the monitor (compileFilter) and
// handed to every worker as raw BPF in a sealed memfd; a worker only puts
// its own pid into the copy it loads (instantiateFilter) and loads it with
// one seccomp(2) call (loadFilterBPF). Building and compiling it with
// libseccomp in each single-use worker was a tenth of the worker's CPU.

// pidPlaceholder stands for the worker's pid in the compiled filter. It is
// above the kernel's PID_MAX_LIMIT (2^22), so no pid equals it, and it is
// no syscall number, errno, flag or architecture the filter compares with.
const pidPlaceholder = 0x3fff_fff1

// bpfJeqK is the instruction libseccomp compiles an equality test of a
// syscall argument's low half into.
const bpfJeqK = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K

// maxFilterInsns bounds a filter program (the kernel's BPF_MAXINSNS).
const maxFilterInsns = 4096

// compileFilter builds the filter for pidPlaceholder and returns its BPF
// program (native byte order, 8 bytes per instruction).
func compileFilter() ([]byte, error) {
	f, err := buildFilter(pidPlaceholder)
	if err != nil {
		return nil, err
	}
	defer f.Release()
	prog, err := exportBPF(f)
	if err != nil {
		return nil, fmt.Errorf("export filter: %w", err)
	}
	// kill and tgkill compare their first argument with the pid (their
	// identical tails share one comparison in the compiled program).
	if _, n, err := instantiateFilter(prog, pidPlaceholder); err != nil {
		return nil, err
	} else if n == 0 {
		return nil, errors.New("the compiled filter never compares the pid")
	}
	return prog, nil
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
	return io.ReadAll(io.LimitReader(mf, maxFilterInsns*8+1))
}

// instantiateFilter decodes prog and puts pid where the placeholder is; it
// reports how many comparisons it changed.
func instantiateFilter(prog []byte, pid int) ([]unix.SockFilter, int, error) {
	if len(prog) == 0 || len(prog)%8 != 0 || len(prog)/8 > maxFilterInsns {
		return nil, 0, fmt.Errorf("seccomp program of %d bytes is not a filter", len(prog))
	}
	if pid <= 0 || pid > pidPlaceholder {
		return nil, 0, fmt.Errorf("pid %d out of range", pid)
	}
	insns := make([]unix.SockFilter, len(prog)/8)
	n := 0
	for i := range insns {
		b := prog[i*8:]
		in := unix.SockFilter{Code: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])}
		if in.Code == bpfJeqK && in.K == pidPlaceholder {
			in.K = uint32(pid)
			n++
		}
		insns[i] = in
	}
	return insns, n, nil
}

// loadFilterBPF loads insns on every thread of the process (TSYNC). The
// caller has no_new_privs set.
func loadFilterBPF(insns []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(insns)
	if errno != 0 {
		return fmt.Errorf("seccomp(SET_MODE_FILTER, TSYNC): %w", errno)
	}
	if r != 0 {
		return fmt.Errorf("seccomp TSYNC: thread %d could not be synchronised", r)
	}
	return nil
}

// loadSeccomp loads the worker filter for this process, from the monitor's
// compiled program when there is one (prog), else compiled here.
func loadSeccomp(prog []byte) error {
	if prog == nil {
		var err error
		if prog, err = compileFilter(); err != nil {
			return err
		}
	}
	insns, n, err := instantiateFilter(prog, os.Getpid())
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("the seccomp program never compares the pid")
	}
	return loadFilterBPF(insns)
}
