//go:build !devhooks

package devhooks

// Enabled is false in the release build: no test hook is honoured.
const Enabled = false

// BuildKind names the build for `aivault version`.
const BuildKind = "release"
