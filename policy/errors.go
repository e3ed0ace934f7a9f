// Package policy holds aivault's pure decisions: the embedded provider
// registry, credentials, capabilities, scopes, grants, request validation,
// address classification, limits and auth rendering. It does no I/O beyond
// encoding its own state.
package policy

import "fmt"

// Stable error classes. The CLI prints "aivault: error: <Class>: <msg>" and
// maps them to exit codes; the daemon sends them over the wire unchanged.
const (
	ClassPolicyViolation     = "PolicyViolation"
	ClassCapabilityNotFound  = "CapabilityNotFound"
	ClassCredentialNotFound  = "CredentialNotFound"
	ClassSecretNotFound      = "SecretNotFound"
	ClassAccessDenied        = "AccessDenied"
	ClassVaultLocked         = "VaultLocked"
	ClassInvalidRequest      = "InvalidRequest"
	ClassUpstreamUnreachable = "UpstreamUnreachable"
	ClassRateLimited         = "RateLimited"
	ClassAmbiguous           = "Ambiguous"
	ClassConflict            = "Conflict"
)

// Error is a classed refusal. Msg and Hint must never contain a secret value.
type Error struct {
	Class string
	Msg   string
	Hint  string
}

func (e *Error) Error() string { return e.Class + ": " + e.Msg }

// Errorf builds a classed error.
func Errorf(class, format string, args ...any) *Error {
	return &Error{Class: class, Msg: fmt.Sprintf(format, args...)}
}

// WithHint returns e with a hint line added.
func (e *Error) WithHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}
