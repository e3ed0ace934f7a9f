//go:build !amd64

package sandbox

// embeddedFilter: no seccomp filter is generated for this architecture yet
// (seccompgen.Arches); Support reports it and the pool refuses to start.
var embeddedFilter []byte
