//go:build cgo

package sandbox

// loaderPaths: a cgo build (the test binaries) may be dynamically linked;
// the workers' Landlock domain then also lets the loader read its cache
// and the system libraries (spawnlandlock.go).
var loaderPaths = []string{"/etc/ld.so.cache", "/lib", "/lib64", "/usr/lib", "/usr/lib64"}
