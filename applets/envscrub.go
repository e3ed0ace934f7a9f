package applets

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"
)

// scrubEnv removes name from the environment and overwrites every copy of
// its value the process holds: the Go runtime's heap copy of the environment
// (the strings os.Environ returns) and the block the kernel placed at the top
// of the stack at exec (what /proc/PID/environ shows). os.Unsetenv alone
// leaves both behind — for an env-provider KEK that is the key in plain text.
// mem is /proc/self/mem opened read-write BEFORE the process made itself
// non-dumpable (afterwards the open is refused); nil skips the stack block.
func scrubEnv(name string, mem *os.File) error {
	prefix := name + "="
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, prefix) && len(kv) > len(prefix) {
			// The runtime copied the environment into (writable) heap
			// strings at start; nothing else may keep this value.
			b := unsafe.Slice(unsafe.StringData(kv), len(kv))
			clear(b[len(prefix):])
		}
	}
	if err := os.Unsetenv(name); err != nil {
		return err
	}
	if mem == nil {
		return fmt.Errorf("/proc/self/mem is not open; the exec-time copy of %s stays in memory", name)
	}
	return scrubInitialEnv(mem, prefix)
}

// scrubInitialEnv zeroes the value of the entry starting with prefix in the
// exec-time environment block (env_start..env_end of /proc/self/stat),
// writing through /proc/self/mem.
func scrubInitialEnv(mem *os.File, prefix string) error {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return err
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return fmt.Errorf("unexpected /proc/self/stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// Fields after the command start at field 3; env_start is field 50.
	if len(f) < 49 {
		return fmt.Errorf("/proc/self/stat has no env_start/env_end")
	}
	start, err1 := strconv.ParseUint(f[47], 10, 64)
	end, err2 := strconv.ParseUint(f[48], 10, 64)
	if err1 != nil || err2 != nil || end <= start || end-start > 1<<24 {
		return fmt.Errorf("/proc/self/stat: bad env_start/env_end")
	}
	block := make([]byte, end-start)
	defer clear(block)
	n, err := mem.ReadAt(block, int64(start))
	if err != nil && n == 0 {
		return err
	}
	block = block[:n]
	for off := 0; off < len(block); {
		e := bytes.IndexByte(block[off:], 0)
		if e < 0 {
			e = len(block) - off
		}
		entry := block[off : off+e]
		if bytes.HasPrefix(entry, []byte(prefix)) && len(entry) > len(prefix) {
			zeros := make([]byte, len(entry)-len(prefix))
			if _, err := mem.WriteAt(zeros, int64(start)+int64(off+len(prefix))); err != nil {
				return err
			}
			clear(entry)
		}
		off += e + 1
	}
	return nil
}
