package sandbox

import _ "embed"

// embeddedFilter is the worker's seccomp filter for amd64 (see filter.go),
// written by `go generate ./sandbox`.
//
//go:embed seccomp_amd64.bpf
var embeddedFilter []byte
