package sandbox

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aivault/aivault/ipc"
)

// Defaults and bounds for one job.
const (
	// DefaultMaxResponseBytes applies when a job's MaxResponseBytes is 0.
	DefaultMaxResponseBytes = 32 << 20
	// DefaultTimeout applies when a job's TimeoutMs is 0.
	DefaultTimeout = 60 * time.Second
	// maxTimeout bounds any job.
	maxTimeout = 30 * time.Minute
	// maxHeaderBytes bounds the raw bytes read before the response head is
	// complete (status line and headers, including TLS overhead).
	maxHeaderBytes = 256 << 10
	// maxInterim bounds the 1xx responses skipped before the final one.
	maxInterim = 8
	// chunkSize is the largest data chunk sent in one result frame.
	chunkSize = 32 << 10
	// maxErrorLen bounds error messages sent to the monitor.
	maxErrorLen = 300
)

// runJob performs the job's request over sock and streams the sanitised
// response through emit. It returns the end frame (without Kind).
func runJob(job ipc.Job, sock *os.File, roots *rootSet, emit func(ipc.Result) error) ipc.Result {
	return runJobSigned(job, sock, roots, emit, nil)
}

// runJobSigned is runJob with a way to have the monitor sign for the job's
// client certificate (mTLS; nil: a job with a certificate fails).
func runJobSigned(job ipc.Job, sock *os.File, roots *rootSet, emit func(ipc.Result) error, sign signFunc) ipc.Result {
	sc := NewScrubber(Needles(job.Scrub, job.ResponseBlock))
	defer sc.Wipe()
	var cc *countingConn
	fail := func(e *Error) ipc.Result {
		r := ipc.Result{ErrorClass: e.Class, Error: sanitizeMessage(sc, e.Msg)}
		if cc != nil {
			r.BytesIn, r.BytesOut = cc.in.Load(), cc.out.Load()
		}
		return r
	}
	if sock == nil {
		return fail(errorf(ClassInvalidRequest, "the job came without an upstream socket"))
	}
	if roots == nil {
		// Never let crypto/tls fall back to the system's root files.
		_ = sock.Close()
		return fail(errorf(ClassUpstreamTLS, "the worker has no TLS roots"))
	}
	nc, err := net.FileConn(sock)
	_ = sock.Close()
	if err != nil {
		return fail(errorf(ClassInvalidRequest, "the upstream descriptor is not a socket"))
	}
	defer nc.Close()
	var clientCerts []tls.Certificate
	if len(job.ClientCertPEM) > 0 {
		cert, e := clientCertificate(job.ClientCertPEM, sign)
		if e != nil {
			return fail(e)
		}
		clientCerts = []tls.Certificate{cert}
	}
	if err := validateJob(&job); err != nil {
		return fail(err)
	}
	timeout := DefaultTimeout
	if job.TimeoutMs > 0 {
		timeout = min(time.Duration(job.TimeoutMs)*time.Millisecond, maxTimeout)
	}
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_ = nc.SetDeadline(deadline)

	cc = &countingConn{Conn: nc}
	cc.readLimit.Store(maxHeaderBytes)
	tcfg := &tls.Config{
		ServerName:   job.ServerName,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
		Certificates: clientCerts,
	}
	roots.configure(tcfg, job.ServerName, time.Now) // verification against the roots (roots.go)
	tc := tls.Client(cc, tcfg)
	defer tc.Close()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(classify(err, ClassUpstreamTLS, "TLS handshake with "+job.ServerName+" failed: "+err.Error()))
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
		return fail(errorf(ClassUpstreamProtocol, "upstream negotiated unsupported protocol %q", p))
	}

	reqBytes := buildRequest(&job)
	_, err = tc.Write(reqBytes)
	clear(reqBytes)
	if err != nil {
		return fail(classify(err, ClassUpstreamUnreachable, "sending the request failed"))
	}

	if e := relayResponse(bufio.NewReader(tc), &job, sc, emit, func() { cc.readLimit.Store(-1) }); e != nil {
		return fail(e)
	}
	return ipc.Result{BytesIn: cc.in.Load(), BytesOut: cc.out.Load()}
}

// relayResponse reads the upstream's response from br and streams the
// sanitised result through emit. bodyPhase is called once the head has been
// read (it lifts the raw header-size limit).
func relayResponse(br *bufio.Reader, job *ipc.Job, sc *Scrubber, emit func(ipc.Result) error, bodyPhase func()) *Error {
	req := &http.Request{Method: job.Method}
	var resp *http.Response
	for i := 0; ; i++ {
		var err error
		resp, err = http.ReadResponse(br, req)
		if err != nil {
			switch {
			case errors.Is(err, errHeaderTooLarge):
				return errorf(ClassUpstreamProtocol, "upstream response headers exceed %d bytes", maxHeaderBytes)
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				return classify(err, ClassUpstreamUnreachable, "upstream closed the connection before a complete response")
			default:
				return classify(err, ClassUpstreamProtocol, "malformed HTTP response from upstream")
			}
		}
		if resp.StatusCode < 100 {
			_ = resp.Body.Close()
			return errorf(ClassUpstreamProtocol, "invalid status code %d from upstream", resp.StatusCode)
		}
		if resp.StatusCode >= 200 {
			break
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusSwitchingProtocols || i >= maxInterim {
			return errorf(ClassUpstreamProtocol, "unexpected informational response %d from upstream", resp.StatusCode)
		}
	}
	defer resp.Body.Close()
	bodyPhase()

	limit := job.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	body, decoded, derr := decodedBody(resp)
	if derr != nil {
		return derr
	}
	st := &bodyState{sc: sc, limit: limit, emit: emit}
	if job.Stream {
		return st.stream(resp, body, decoded)
	}
	return st.buffered(resp, body, decoded)
}

// bodyState carries one response body through decoding, the size cap and
// the scrubber.
type bodyState struct {
	sc    *Scrubber
	limit int64
	emit  func(ipc.Result) error
	n     int64 // decoded bytes read
}

// read reads the next piece of the decoded body, enforcing the limit.
func (b *bodyState) read(body io.Reader, buf []byte) (int, *Error, bool) {
	// Never read past limit+1 decoded bytes.
	if room := b.limit + 1 - b.n; int64(len(buf)) > room {
		buf = buf[:room]
	}
	n, err := body.Read(buf)
	b.n += int64(n)
	if b.n > b.limit {
		return 0, errorf(ClassResponseTooLarge, "the response body exceeds the limit of %d bytes", b.limit), true
	}
	if err == io.EOF {
		return n, nil, true
	}
	if err != nil {
		return n, bodyError(err), true
	}
	return n, nil, false
}

// buffered reads the whole body (up to the limit), then sends head, chunks.
// Nothing is sent when the body fails, so the caller never sees a partial
// response in non-streaming mode.
func (b *bodyState) buffered(resp *http.Response, body io.Reader, decoded bool) *Error {
	var out bytes.Buffer
	buf := make([]byte, chunkSize)
	for {
		n, e, done := b.read(body, buf)
		if e != nil {
			return e
		}
		out.Write(b.sc.Write(buf[:n]))
		if done {
			break
		}
	}
	out.Write(b.sc.Flush())
	rewritten := decoded || b.sc.Redactions() > 0
	if err := b.emit(ipc.Result{Kind: ipc.ResultHead, Status: resp.StatusCode, Headers: responseHeaders(resp.Header, b.sc, rewritten)}); err != nil {
		return errorf(ClassWorkerFailed, "sending the response head failed")
	}
	data := out.Bytes()
	for len(data) > 0 {
		n := min(len(data), chunkSize)
		if err := b.emit(ipc.Result{Kind: ipc.ResultChunk, Data: data[:n]}); err != nil {
			return errorf(ClassWorkerFailed, "sending the response body failed")
		}
		data = data[n:]
	}
	return nil
}

// stream sends the head at once and forwards each piece as it arrives
// (server-sent events), holding back only what the scrubber must.
func (b *bodyState) stream(resp *http.Response, body io.Reader, decoded bool) *Error {
	// The length cannot be known in advance once a scrubber may rewrite.
	rewritten := decoded || !b.sc.Empty()
	if err := b.emit(ipc.Result{Kind: ipc.ResultHead, Status: resp.StatusCode, Headers: responseHeaders(resp.Header, b.sc, rewritten)}); err != nil {
		return errorf(ClassWorkerFailed, "sending the response head failed")
	}
	send := func(p []byte) *Error {
		for len(p) > 0 {
			n := min(len(p), chunkSize)
			if err := b.emit(ipc.Result{Kind: ipc.ResultChunk, Data: p[:n]}); err != nil {
				return errorf(ClassWorkerFailed, "sending the response body failed")
			}
			p = p[n:]
		}
		return nil
	}
	buf := make([]byte, chunkSize)
	for {
		n, e, done := b.read(body, buf)
		if e != nil {
			return e
		}
		if e := send(b.sc.Write(buf[:n])); e != nil {
			return e
		}
		if done {
			break
		}
	}
	return send(b.sc.Flush())
}

// decodedBody undoes the response's Content-Encoding. Only a single gzip,
// deflate (zlib or raw) or identity coding is accepted.
func decodedBody(resp *http.Response) (io.Reader, bool, *Error) {
	vals := resp.Header.Values("Content-Encoding")
	var codings []string
	for _, v := range vals {
		for _, c := range strings.Split(v, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	switch {
	case len(codings) == 0:
		return resp.Body, false, nil
	case len(codings) > 1:
		return nil, false, errorf(ClassUnsupportedEncoding, "stacked content codings are not supported")
	}
	switch codings[0] {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			if errors.Is(err, io.EOF) && resp.ContentLength <= 0 {
				return bytes.NewReader(nil), true, nil // empty body
			}
			return nil, false, errorf(ClassUpstreamProtocol, "corrupt gzip response body")
		}
		return zr, true, nil
	case "deflate":
		// "deflate" should be zlib (RFC 9110); some servers send raw DEFLATE.
		br := bufio.NewReader(resp.Body)
		hdr, err := br.Peek(2)
		if err != nil {
			if len(hdr) == 0 && errors.Is(err, io.EOF) {
				return bytes.NewReader(nil), true, nil
			}
			return nil, false, errorf(ClassUpstreamProtocol, "corrupt deflate response body")
		}
		if hdr[0]&0x0f == 8 && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return nil, false, errorf(ClassUpstreamProtocol, "corrupt deflate response body")
			}
			return zr, true, nil
		}
		return flate.NewReader(br), true, nil
	default:
		return nil, false, errorf(ClassUnsupportedEncoding, "unsupported content encoding %q", truncate(codings[0], 40))
	}
}

// bodyError classifies an error while reading the body.
func bodyError(err error) *Error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(ClassUpstreamTimeout, "the upstream did not finish the response in time")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(ClassUpstreamUnreachable, "the upstream closed the connection in the middle of the response")
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.Is(err, zlib.ErrChecksum), errors.Is(err, zlib.ErrHeader):
		return errorf(ClassUpstreamProtocol, "corrupt compressed response body")
	default:
		var ce flate.CorruptInputError
		if errors.As(err, &ce) {
			return errorf(ClassUpstreamProtocol, "corrupt compressed response body")
		}
		return errorf(ClassUpstreamUnreachable, "reading the response body failed")
	}
}

// classify maps a timeout to UpstreamTimeout, anything else to class.
func classify(err error, class, msg string) *Error {
	var ne net.Error
	if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return errorf(ClassUpstreamTimeout, "the upstream did not answer in time")
	}
	// A TLS alert from the upstream (with TLS 1.3 a refused client
	// certificate arrives only on the first read) is a TLS failure.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return &Error{Class: ClassUpstreamTLS, Msg: "the upstream ended the TLS session: " + op.Err.Error(), Err: err}
	}
	return &Error{Class: class, Msg: msg, Err: err}
}

// sanitizeMessage scrubs and bounds a message leaving the worker.
func sanitizeMessage(sc *Scrubber, msg string) string {
	return truncate(string(sc.Once([]byte(msg))), maxErrorLen)
}

func truncate(s string, n int) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// errHeaderTooLarge is returned by countingConn when the response head is
// larger than maxHeaderBytes.
var errHeaderTooLarge = errors.New("response head too large")

// countingConn counts raw bytes in and out and, while readLimit ≥ 0,
// refuses to read more than readLimit bytes in total.
type countingConn struct {
	net.Conn
	in, out   atomic.Int64
	readLimit atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	if lim := c.readLimit.Load(); lim >= 0 {
		left := lim - c.in.Load()
		if left <= 0 {
			return 0, errHeaderTooLarge
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// validateJob checks the request parts the worker writes verbatim, so that
// a malformed job can never smuggle a second request or header.
func validateJob(j *ipc.Job) *Error {
	if j.V != 0 && j.V != ipc.ProtocolVersion {
		return errorf(ClassInvalidRequest, "job protocol version %d, worker speaks %d", j.V, ipc.ProtocolVersion)
	}
	if !validHost(j.ServerName) {
		return errorf(ClassInvalidRequest, "invalid server name")
	}
	if !isToken(j.Method) {
		return errorf(ClassInvalidRequest, "invalid request method")
	}
	if len(j.Target) == 0 || j.Target[0] != '/' {
		return errorf(ClassInvalidRequest, "the request target must start with /")
	}
	for i := 0; i < len(j.Target); i++ {
		c := j.Target[i]
		if c <= 0x20 || c >= 0x7f || c == '#' {
			return errorf(ClassInvalidRequest, "the request target contains a forbidden byte")
		}
		if c == '%' && (i+2 >= len(j.Target) || !isHex(j.Target[i+1]) || !isHex(j.Target[i+2])) {
			return errorf(ClassInvalidRequest, "the request target contains a malformed %%-escape")
		}
	}
	for _, h := range j.Headers {
		if !isToken(h.Name) {
			return errorf(ClassInvalidRequest, "invalid request header name")
		}
		for i := 0; i < len(h.Value); i++ {
			if c := h.Value[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				return errorf(ClassInvalidRequest, "request header %s has a forbidden byte in its value", truncate(h.Name, 64))
			}
		}
	}
	return nil
}

// workerSetHeader reports whether the worker writes this header itself; a
// job's own copy is dropped (framing and hop-by-hop headers must not be
// caller-chosen).
func workerSetHeader(name string) bool {
	switch strings.ToLower(name) {
	case "host", "content-length", "transfer-encoding", "connection", "accept-encoding",
		"keep-alive", "te", "trailer", "upgrade", "proxy-connection", "expect":
		return true
	}
	return false
}

// buildRequest writes the HTTP/1.1 request by hand.
func buildRequest(j *ipc.Job) []byte {
	var b bytes.Buffer
	b.WriteString(j.Method)
	b.WriteByte(' ')
	b.WriteString(j.Target)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(j.ServerName)
	b.WriteString("\r\n")
	for _, h := range j.Headers {
		if workerSetHeader(h.Name) {
			continue
		}
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	if len(j.Body) > 0 || methodHasBody(j.Method) {
		b.WriteString("Content-Length: ")
		b.WriteString(strconv.Itoa(len(j.Body)))
		b.WriteString("\r\n")
	}
	b.WriteString("Accept-Encoding: gzip, deflate\r\nConnection: close\r\n\r\n")
	b.Write(j.Body)
	return b.Bytes()
}

func methodHasBody(m string) bool {
	switch m {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHost accepts a DNS name or an IP literal without port.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// allowedResponseHeader reports whether a response header may go back to
// the caller: content type and length, Retry-After and rate-limit
// information. Never cookies, authentication challenges, request ids,
// locations or anything else.
func allowedResponseHeader(name string) bool {
	n := strings.ToLower(name)
	switch n {
	case "content-type", "content-length", "retry-after", "ratelimit", "ratelimit-policy":
		return true
	}
	for _, p := range []string{"x-ratelimit-", "ratelimit-", "anthropic-ratelimit-"} {
		if strings.HasPrefix(n, p) && len(n) > len(p) {
			return true
		}
	}
	return false
}

// Bounds on the headers that go back.
const (
	maxRespHeaders     = 64
	maxRespHeaderValue = 4 << 10
)

// responseHeaders filters h to the allow-list and scrubs the values.
// Content-Length is dropped when the body was rewritten (decoded or
// redacted). The result is sorted by name for determinism.
func responseHeaders(h http.Header, sc *Scrubber, rewritten bool) []ipc.Header {
	var out []ipc.Header
	for name, vals := range h {
		if !allowedResponseHeader(name) {
			continue
		}
		if strings.EqualFold(name, "content-length") && rewritten {
			continue
		}
		for _, v := range vals {
			if len(out) >= maxRespHeaders {
				break
			}
			out = append(out, ipc.Header{Name: strings.ToLower(name), Value: truncate(string(sc.Once([]byte(v))), maxRespHeaderValue)})
		}
	}
	sortHeaders(out)
	return out
}

func sortHeaders(hs []ipc.Header) {
	slices.SortStableFunc(hs, func(a, b ipc.Header) int { return strings.Compare(a.Name, b.Name) })
}
