//go:build devhooks

package devhooks

// Enabled is true in the devhooks (test) build.
const Enabled = true

// BuildKind names the build for `aivault version`.
const BuildKind = "devhooks"
