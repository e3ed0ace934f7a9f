package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

//go:generate go run ./seccompgen/genfilter

// The worker's seccomp filter (its policy is in seccompgen: default
// KILL_PROCESS, other architectures killed, an allow-list of what the Go
// runtime and a TLS client over an already-connected socket need, errno
// for open/socket/exec/fork, clone only for threads, kill and tgkill only
// to the worker itself) is compiled with libseccomp at development time and
// embedded as raw BPF (seccomp_<arch>.bpf); a test keeps the two in sync.
// A worker puts its own pid into a copy (instantiateFilter) and loads it
// with one seccomp(2) call with TSYNC (loadFilterBPF). Building and
// compiling the filter in each single-use worker was a tenth of its CPU,
// and linking libseccomp made every process pay for cgo's start-up.

// FilterPIDPlaceholder stands for the worker's pid in the compiled filter.
// It is above the kernel's PID_MAX_LIMIT (2^22), so no pid equals it, and
// it is no syscall number, errno, flag or architecture the filter compares
// with.
const FilterPIDPlaceholder = 0x3fff_fff1

// bpfJeqK is the instruction libseccomp compiles an equality test of a
// syscall argument's low half into.
const bpfJeqK = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K

// maxFilterInsns bounds a filter program (the kernel's BPF_MAXINSNS).
const maxFilterInsns = 4096

// filterProgram returns the embedded program for this architecture after
// checking that it carries the pid placeholder (Support runs this once;
// a worker's loadSeccomp does the same check on its own copy).
func filterProgram() ([]byte, error) {
	_, err := filterFor(FilterPIDPlaceholder)
	if err != nil {
		return nil, err
	}
	return embeddedFilter, nil
}

// filterFor decodes the embedded program with pid in place of the
// placeholder. kill and tgkill compare their first argument with the pid
// (their identical tails share one comparison in the compiled program), so
// a program without the placeholder is refused.
func filterFor(pid int) ([]unix.SockFilter, error) {
	if len(embeddedFilter) == 0 {
		return nil, fmt.Errorf("no seccomp filter was built for %s", runtime.GOARCH)
	}
	insns, n, err := instantiateFilter(embeddedFilter, pid)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("the embedded seccomp filter never compares the pid")
	}
	return insns, nil
}

// instantiateFilter decodes prog and puts pid where the placeholder is; it
// reports how many comparisons it changed.
func instantiateFilter(prog []byte, pid int) ([]unix.SockFilter, int, error) {
	if len(prog) == 0 || len(prog)%8 != 0 || len(prog)/8 > maxFilterInsns {
		return nil, 0, fmt.Errorf("seccomp program of %d bytes is not a filter", len(prog))
	}
	if pid <= 0 || pid > FilterPIDPlaceholder {
		return nil, 0, fmt.Errorf("pid %d out of range", pid)
	}
	insns := make([]unix.SockFilter, len(prog)/8)
	n := 0
	for i := range insns {
		b := prog[i*8:]
		in := unix.SockFilter{Code: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])}
		if in.Code == bpfJeqK && in.K == FilterPIDPlaceholder {
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

// loadSeccomp loads the worker filter for this process on every thread.
func loadSeccomp() error {
	insns, err := filterFor(os.Getpid())
	if err != nil {
		return err
	}
	return loadFilterBPF(insns)
}
