package sandbox

import (
	"encoding/binary"
	"testing"
)

// TestFilterProgram: the compiled program carries the pid placeholder only
// in equality tests, and instantiating it changes exactly those.
func TestFilterProgram(t *testing.T) {
	prog, err := filterProgram()
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) == 0 || len(prog)%8 != 0 {
		t.Fatalf("program of %d bytes", len(prog))
	}
	const pid = 4_194_304 // PID_MAX_LIMIT: the largest pid there can be
	insns, n, err := instantiateFilter(prog, pid)
	if err != nil || n == 0 {
		t.Fatalf("instantiate: n=%d err=%v", n, err)
	}
	changed := 0
	for i, in := range insns {
		b := prog[i*8:]
		orig := binary.NativeEndian.Uint32(b[4:])
		if in.Code != binary.NativeEndian.Uint16(b) || in.Jt != b[2] || in.Jf != b[3] {
			t.Fatalf("instruction %d: code or jumps changed", i)
		}
		switch {
		case in.K == orig:
		case orig == FilterPIDPlaceholder && in.K == pid && in.Code == bpfJeqK:
			changed++
		default:
			t.Fatalf("instruction %d: k %#x became %#x", i, orig, in.K)
		}
		if in.K == FilterPIDPlaceholder {
			t.Fatalf("instruction %d still holds the placeholder", i)
		}
	}
	if changed != n {
		t.Fatalf("changed %d instructions, reported %d", changed, n)
	}
	for _, bad := range [][]byte{nil, prog[:len(prog)-1], make([]byte, (maxFilterInsns+1)*8)} {
		if _, _, err := instantiateFilter(bad, pid); err == nil {
			t.Errorf("a %d-byte program was accepted", len(bad))
		}
	}
	for _, bad := range []int{0, -1, FilterPIDPlaceholder + 1} {
		if _, _, err := instantiateFilter(prog, bad); err == nil {
			t.Errorf("pid %d was accepted", bad)
		}
	}
}

// BenchmarkFilterInstantiate: what a worker now does instead of building
// and compiling the filter (seccompgen's BenchmarkFilterCompile).
func BenchmarkFilterInstantiate(b *testing.B) {
	prog, err := filterProgram()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := instantiateFilter(prog, 4242); err != nil {
			b.Fatal(err)
		}
	}
}
