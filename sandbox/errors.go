package sandbox

import "fmt"

// Stable error classes produced by this package, both in end frames (a
// worker's ipc.Result.ErrorClass) and in *Error values returned by the pool.
const (
	// ClassWorkerFailed: the worker crashed, was killed, broke the frame
	// protocol or could not be started.
	ClassWorkerFailed = "WorkerFailed"
	// ClassSandboxUnavailable: the kernel lacks a required sandbox feature,
	// or a worker failed the monitor's lockdown check (TracerPid, NoNewPrivs,
	// Seccomp). Fail closed.
	ClassSandboxUnavailable = "SandboxUnavailable"
	// ClassUpstreamTimeout: the job's deadline passed.
	ClassUpstreamTimeout = "UpstreamTimeout"
	// ClassUpstreamUnreachable: the connection failed or closed before a
	// complete response.
	ClassUpstreamUnreachable = "UpstreamUnreachable"
	// ClassUpstreamTLS: the TLS handshake or certificate verification failed.
	ClassUpstreamTLS = "UpstreamTLS"
	// ClassUpstreamProtocol: the upstream sent a malformed HTTP response.
	ClassUpstreamProtocol = "UpstreamProtocol"
	// ClassResponseTooLarge: the (decompressed) body exceeded the job's limit.
	ClassResponseTooLarge = "ResponseTooLarge"
	// ClassUnsupportedEncoding: a Content-Encoding other than gzip, deflate
	// or identity.
	ClassUnsupportedEncoding = "UnsupportedEncoding"
	// ClassInvalidRequest: the job itself is malformed (bad method, target,
	// header, missing socket).
	ClassInvalidRequest = "InvalidRequest"
	// ClassNotImplemented: a requested feature is not implemented (mTLS).
	ClassNotImplemented = "NotImplemented"
	// ClassProbeBlocked / ClassProbeNotBlocked: the outcome of a doctor
	// probe, carried in the end frame's ErrorClass.
	ClassProbeBlocked    = "ProbeBlocked"
	ClassProbeNotBlocked = "ProbeNotBlocked"
)

// knownClass reports whether a worker may report class in an end frame.
func knownClass(class string) bool {
	switch class {
	case ClassWorkerFailed, ClassSandboxUnavailable, ClassUpstreamTimeout,
		ClassUpstreamUnreachable, ClassUpstreamTLS, ClassUpstreamProtocol,
		ClassResponseTooLarge, ClassUnsupportedEncoding, ClassInvalidRequest,
		ClassNotImplemented, ClassProbeBlocked, ClassProbeNotBlocked:
		return true
	}
	return false
}

// Error is a classed failure. Msg never contains a secret value: messages
// that could echo upstream bytes are scrubbed before they leave the worker.
type Error struct {
	Class string
	Msg   string
	Err   error // optional cause, for errors.Is/As; its text is not shown
}

func (e *Error) Error() string { return e.Class + ": " + e.Msg }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func errorf(class, format string, args ...any) *Error {
	return &Error{Class: class, Msg: fmt.Sprintf(format, args...)}
}
