//go:build cgo

package seccompgen

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestEmbeddedFilterIsCurrent: the program the product embeds is exactly
// what the policy in this package compiles to. Fix a failure with
// `go generate ./sandbox`.
func TestEmbeddedFilterIsCurrent(t *testing.T) {
	if _, ok := Arches[runtime.GOARCH]; !ok {
		t.Skipf("no filter is generated for %s", runtime.GOARCH)
	}
	want, err := Program(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "seccomp_"+runtime.GOARCH+".bpf"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("sandbox/seccomp_%s.bpf (%d bytes) is not what the policy compiles to (%d bytes): run 'go generate ./sandbox'", runtime.GOARCH, len(got), len(want))
	}
}

// BenchmarkFilterCompile measures building and compiling the filter with
// libseccomp: what every worker did before the program was embedded.
func BenchmarkFilterCompile(b *testing.B) {
	for b.Loop() {
		if _, err := Program(runtime.GOARCH); err != nil {
			b.Fatal(err)
		}
	}
}
