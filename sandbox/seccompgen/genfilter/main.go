// Command genfilter writes the worker's compiled seccomp filter for the
// running architecture to seccomp_<GOARCH>.bpf in the current directory
// (run by `go generate ./sandbox`, which needs libseccomp-dev and cgo).
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/aivault/aivault/sandbox/seccompgen"
)

func main() {
	prog, err := seccompgen.Program(runtime.GOARCH)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genfilter:", err)
		os.Exit(1)
	}
	name := "seccomp_" + runtime.GOARCH + ".bpf"
	if err := os.WriteFile(name, prog, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "genfilter:", err)
		os.Exit(1)
	}
	fmt.Printf("genfilter: wrote %s (%d instructions)\n", name, len(prog)/8)
}
