//go:build !cgo

package sandbox

// loaderPaths: a pure-Go build (the product) is static and needs no loader.
var loaderPaths []string
