package ipc

// Header is one HTTP header line.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Job is what the monitor hands a worker, together with one connected TCP
// socket (SCM_RIGHTS). Everything in it has already been decided by policy:
// the worker does TLS to ServerName over the given socket, writes exactly this
// request, and streams back a sanitised response. The only secret material in
// a Job is what this one request injects (in Headers/Target), repeated in
// Scrub so the worker can remove echoes of it from the response.
type Job struct {
	V          int      `json:"v"`
	ServerName string   `json:"serverName"` // SNI and certificate name (policy host)
	Method     string   `json:"method"`
	Target     string   `json:"target"` // request-target: validated path and optional ?query
	Headers    []Header `json:"headers,omitempty"`
	Body       []byte   `json:"body,omitempty"`
	// Scrub lists injected values; the worker removes their raw, URL-encoded
	// and base64 forms from the response body and allowed headers.
	Scrub [][]byte `json:"scrub,omitempty"`
	// ResponseBlock lists operator-configured strings redacted as [REDACTED].
	ResponseBlock    []string `json:"responseBlock,omitempty"`
	MaxResponseBytes int64    `json:"maxResponseBytes"`
	Stream           bool     `json:"stream,omitempty"`
	TimeoutMs        int64    `json:"timeoutMs"`
	// Probe, in a job sent by `aivault doctor --sandbox`, asks the worker to
	// attempt one forbidden action ("open", "socket", "exec", "syscall") and
	// report what happened instead of making a request.
	Probe string `json:"probe,omitempty"`
	// ClientCertPEM is the mTLS certificate chain (public part only); the
	// private-key operation is requested from the monitor with a SignRequest.
	ClientCertPEM []byte `json:"clientCertPem,omitempty"`
}

// Result frame kinds, in the order a worker sends them: one head, any number
// of chunks, one end. A "sign" frame (worker→monitor) asks for an mTLS
// signature and is answered with a "signed" frame.
const (
	ResultHead   = "head"
	ResultChunk  = "chunk"
	ResultEnd    = "end"
	ResultReady  = "ready"
	ResultSign   = "sign"
	ResultSigned = "signed"
)

// Result is one frame of a worker's answer.
type Result struct {
	Kind    string   `json:"kind"`
	Status  int      `json:"status,omitempty"`
	Headers []Header `json:"headers,omitempty"`
	Data    []byte   `json:"data,omitempty"`
	// End: Error is empty on success; ErrorClass is a stable class such as
	// UpstreamUnreachable, ResponseTooLarge, UpstreamTimeout.
	ErrorClass string `json:"errorClass,omitempty"`
	Error      string `json:"error,omitempty"`
	Hint       string `json:"hint,omitempty"`
	BytesIn    int64  `json:"bytesIn,omitempty"`
	BytesOut   int64  `json:"bytesOut,omitempty"`
	// Sign/Signed: digest to sign and hash name, or the signature.
	Digest []byte `json:"digest,omitempty"`
	Hash   string `json:"hash,omitempty"`
	// Ready: what the worker measured about its own lockdown.
	LandlockABI int  `json:"landlockAbi,omitempty"`
	Seccomp     bool `json:"seccomp,omitempty"`
}
