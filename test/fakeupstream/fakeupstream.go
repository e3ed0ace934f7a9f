// Package fakeupstream is the HTTPS server the end-to-end tests point the
// aivault daemon at instead of real third-party APIs. It mints its own CA at
// start, serves a leaf certificate valid for a list of API host names (and
// localhost/127.0.0.1), records every request it receives — in memory and as
// one JSON line per request in a log file — and offers routes that exercise
// the proxy's limits: echo (deliberately reflecting secrets), redirects,
// large and gzip-bomb bodies, slow and streaming responses, cookies, an OAuth2
// token endpoint, and an /echo-auth route that reflects credentials in raw,
// URL-encoded and base64 forms so scrubbing can be tested.
//
// Routes (any host):
//
//	/echo…, anything else   200 JSON {method,target,host,sni,proto,headers,body}
//	/redirect?to=URL[&code=N]  30x with Location: URL (default 302)
//	/large?bytes=N[&chunked=1] N bytes of a repeating text pattern
//	/gzipbomb?bytes=N       gzip body inflating to N zero bytes, Content-Encoding: gzip
//	/slow?ms=N[&phase=body] sleeps N ms (before headers, or after the first body byte)
//	/sse?n=N&ms=M           text/event-stream, N events flushed M ms apart
//	/setcookie              Set-Cookie headers and a small JSON body
//	/status?code=N          status N (200–599) with a JSON body
//	/headers                many response headers (set-cookie, www-authenticate, …)
//	/token[?expires_in=N][&rotate=1][&fail=1]  OAuth2 token endpoint
//	/echo-auth              every request header value and the query, raw/URL-encoded/base64
package fakeupstream

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// File names written into Config.Dir.
const (
	CAFile    = "ca.pem"
	LogFile   = "log.jsonl"
	ReadyFile = "ready.json"
)

// MaxRecordedBody is how much of a request body is kept in a Request record;
// the rest is read, counted and discarded.
const MaxRecordedBody = 1 << 20

// maxQueryBytes caps the sizes /large and /gzipbomb accept (16 GiB).
const maxQueryBytes = 16 << 30

// DefaultNames returns the host names the leaf certificate covers when
// Config.Names is empty: the hosts of the built-in provider registry plus
// a few test names. "localhost", 127.0.0.1 and ::1 are always added.
func DefaultNames() []string {
	return []string{
		"*.myshopify.com", "agent.deepgram.com", "api-free.deepl.com", "api.airtable.com",
		"api.anthropic.com", "api.calendly.com", "api.deepgram.com", "api.elevenlabs.io",
		"api.firecrawl.dev", "api.github.com", "api.hubapi.com", "api.intercom.io",
		"api.linear.app", "api.mailgun.net", "api.netlify.com", "api.notion.com",
		"api.openai.com", "api.postmarkapp.com", "api.remove.bg", "api.replicate.com",
		"api.resend.com", "api.sendgrid.com", "api.spotify.com", "api.stripe.com",
		"api.telegram.org", "api.todoist.com", "api.trello.com", "api.tripo3d.ai",
		"api.twilio.com", "api.vercel.com", "api.x.com", "api.xero.com",
		"connect.squareup.com", "discord.com", "generativelanguage.googleapis.com",
		"gmail.googleapis.com", "oauth.reddit.com", "oauth2.googleapis.com", "openrouter.ai",
		"people.googleapis.com", "places.googleapis.com", "production.plaid.com",
		"queue.fal.run", "quickbooks.api.intuit.com", "slack.com", "uploads.linear.app",
		"www.googleapis.com", "*.googleapis.com",
		"upstream.test", "attacker.test", "example.com", "api.example.com",
	}
}

// Config configures a Server.
type Config struct {
	// Dir receives ca.pem, log.jsonl and ready.json (created 0755 if missing).
	Dir string
	// Names are the DNS names (wildcards allowed) of the leaf certificate;
	// empty means DefaultNames. localhost, 127.0.0.1 and ::1 are always added.
	Names []string
	// Listen is the TCP address to serve on; default "127.0.0.1:0".
	Listen string
	// ClientCAFile, if set, is a PEM CA bundle that presented client
	// certificates must chain to. Without it any client certificate is
	// accepted and only recorded.
	ClientCAFile string
	// RequireClientCert refuses handshakes without a (valid, when
	// ClientCAFile is set) client certificate.
	RequireClientCert bool
	// HTTP1Only disables HTTP/2 (ALPN offers only http/1.1).
	HTTP1Only bool
}

// Request is one recorded request. It is also the JSON schema of a log line.
type Request struct {
	// Seq numbers requests from 1 in arrival order.
	Seq int `json:"seq"`
	// Time is when the request headers were received.
	Time time.Time `json:"time"`
	// Method is the HTTP method.
	Method string `json:"method"`
	// Target is the raw request-target as received (r.RequestURI).
	Target string `json:"target"`
	// Host is the Host header (or :authority).
	Host string `json:"host"`
	// SNI is the TLS server name the client sent.
	SNI string `json:"sni"`
	// Proto is the protocol version, e.g. "HTTP/1.1".
	Proto string `json:"proto"`
	// ALPN is the negotiated application protocol, if any.
	ALPN string `json:"alpn,omitempty"`
	// Headers are all request headers (canonical names).
	Headers http.Header `json:"headers"`
	// Body is the request body when it is valid UTF-8 (up to MaxRecordedBody).
	Body string `json:"body"`
	// BodyBase64 holds the body instead when it is not valid UTF-8.
	BodyBase64 string `json:"body_b64,omitempty"`
	// BodyLen is the full body length, including any unrecorded tail.
	BodyLen int64 `json:"body_len"`
	// BodyTruncated is set when BodyLen exceeds MaxRecordedBody.
	BodyTruncated bool `json:"body_truncated,omitempty"`
	// ClientCertSubject is the subject of the client certificate, if one was presented.
	ClientCertSubject string `json:"client_cert_subject,omitempty"`
	// RemoteAddr is the client's address.
	RemoteAddr string `json:"remote_addr"`
}

// Ready is the content of ready.json, written once the server accepts connections.
type Ready struct {
	// Addr is the listening address (ip:port).
	Addr string `json:"addr"`
	// Port is the listening port.
	Port int `json:"port"`
	// CAPath is the CA certificate that signed the leaf.
	CAPath string `json:"caPath"`
	// LogPath is the JSON-lines request log.
	LogPath string `json:"logPath"`
	// PID is the serving process.
	PID int `json:"pid"`
	// Names are the leaf certificate's DNS names.
	Names []string `json:"names"`
}

// Server is a running fake upstream.
type Server struct {
	cfg     Config
	names   []string
	ln      net.Listener
	srv     *http.Server
	ca      *authority
	caPath  string
	logPath string
	done    chan struct{}
	serve   error

	mu     sync.Mutex
	reqs   []Request
	log    *os.File
	tokens int
	closed bool
}

// Start generates the CA and leaf, writes ca.pem, listens, starts serving in
// the background and finally writes ready.json.
func Start(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("fakeupstream: Config.Dir is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	names := cfg.Names
	if len(names) == 0 {
		names = DefaultNames()
	}
	names = append(slices.Clone(names), "localhost")
	slices.Sort(names)
	names = slices.Compact(names)

	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("fakeupstream: %w", err)
	}
	ca, err := newAuthority("aivault fakeupstream CA")
	if err != nil {
		return nil, err
	}
	leaf, _, _, err := ca.issue("fakeupstream", names, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		names:   names,
		ca:      ca,
		caPath:  filepath.Join(cfg.Dir, CAFile),
		logPath: filepath.Join(cfg.Dir, LogFile),
		done:    make(chan struct{}),
	}
	if err := writeFileAtomic(s.caPath, ca.certPEM, 0o644); err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{leaf},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.RequestClientCert,
	}
	if cfg.RequireClientCert {
		tlsConf.ClientAuth = tls.RequireAnyClientCert
	}
	if cfg.ClientCAFile != "" {
		pemBytes, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("fakeupstream: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("fakeupstream: client CA %s: no certificates", cfg.ClientCAFile)
		}
		tlsConf.ClientCAs = pool
		tlsConf.ClientAuth = tls.VerifyClientCertIfGiven
		if cfg.RequireClientCert {
			tlsConf.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("fakeupstream: open log: %w", err)
	}
	s.log = logf
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("fakeupstream: listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.handle),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 30 * time.Second,
	}
	if cfg.HTTP1Only {
		s.srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	go func() {
		err := s.srv.ServeTLS(ln, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serve = err
		close(s.done)
	}()
	ready := Ready{Addr: s.Addr(), Port: s.Port(), CAPath: s.caPath, LogPath: s.logPath, PID: os.Getpid(), Names: names}
	data, err := json.MarshalIndent(ready, "", "  ")
	if err == nil {
		err = writeFileAtomic(filepath.Join(cfg.Dir, ReadyFile), append(data, '\n'), 0o644)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Addr is the listening address, ip:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the listening port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// CAPath is the path of the written CA certificate.
func (s *Server) CAPath() string { return s.caPath }

// LogPath is the path of the JSON-lines request log.
func (s *Server) LogPath() string { return s.logPath }

// CAPEM returns the CA certificate in PEM form.
func (s *Server) CAPEM() []byte { return slices.Clone(s.ca.certPEM) }

// Names returns the DNS names on the leaf certificate.
func (s *Server) Names() []string { return slices.Clone(s.names) }

// CertPool returns a pool trusting only this server's CA.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ca.cert)
	return p
}

// Client returns an HTTP client that trusts this server's CA and connects
// every request to it, whatever host the URL names (so
// https://api.openai.com/echo reaches the fake). It does not follow redirects
// and does not transparently decompress.
func (s *Server) Client() *http.Client {
	addr := s.Addr()
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.CertPool()},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			DisableCompression: true,
			ForceAttemptHTTP2:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Requests returns a copy of the requests recorded so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// Close stops the server at once, closing every connection (in-flight
// requests are cut off; their records are already logged), and closes the
// log file.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if cerr := s.log.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("fakeupstream: close log: %w", cerr)
	}
	if err == nil {
		err = s.serve
	}
	return err
}

// record reads the body, stores the request and appends its log line before
// any response is written, so a client that has its answer can rely on the
// log containing the request.
func (s *Server) record(r *http.Request) (Request, []byte) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, MaxRecordedBody))
	extra, _ := io.Copy(io.Discard, r.Body)
	rec := Request{
		Time:       time.Now().UTC(),
		Method:     r.Method,
		Target:     r.RequestURI,
		Host:       r.Host,
		Proto:      r.Proto,
		Headers:    r.Header.Clone(),
		BodyLen:    int64(len(body)) + extra,
		RemoteAddr: r.RemoteAddr,
	}
	if rec.Headers == nil {
		rec.Headers = http.Header{}
	}
	rec.BodyTruncated = extra > 0
	if utf8.Valid(body) {
		rec.Body = string(body)
	} else {
		rec.BodyBase64 = base64.StdEncoding.EncodeToString(body)
	}
	if r.TLS != nil {
		rec.SNI = r.TLS.ServerName
		rec.ALPN = r.TLS.NegotiatedProtocol
		if len(r.TLS.PeerCertificates) > 0 {
			rec.ClientCertSubject = r.TLS.PeerCertificates[0].Subject.String()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Seq = len(s.reqs) + 1
	s.reqs = append(s.reqs, rec)
	if !s.closed {
		line, err := json.Marshal(rec)
		if err == nil {
			// One write per line on an O_APPEND file: lines never interleave.
			_, _ = s.log.Write(append(line, '\n'))
		}
	}
	return rec, body
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	rec, body := s.record(r)
	q := r.URL.Query()
	w.Header().Set("Server", "fakeupstream")
	switch p := r.URL.Path; {
	case p == "/redirect":
		code := intParam(q, "code", http.StatusFound)
		if code < 300 || code > 399 {
			code = http.StatusFound
		}
		w.Header().Set("Location", q.Get("to"))
		w.WriteHeader(code)
	case p == "/large":
		n, ok := sizeParam(w, q)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		if q.Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		}
		_, _ = io.Copy(w, io.LimitReader(patternReader{}, n))
	case p == "/gzipbomb":
		n, ok := sizeParam(w, q)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		gz, _ := gzip.NewWriterLevel(w, gzip.BestCompression)
		_, err := io.Copy(gz, io.LimitReader(zeroReader{}, n))
		if err == nil {
			_ = gz.Close()
		}
	case p == "/slow":
		d := time.Duration(intParam(q, "ms", 1000)) * time.Millisecond
		if q.Get("phase") == "body" {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "first\n")
			flush(w)
		}
		if !sleepCtx(r.Context(), d) {
			return
		}
		if q.Get("phase") != "body" {
			writeJSON(w, http.StatusOK, map[string]any{"slept_ms": d.Milliseconds()})
			return
		}
		_, _ = io.WriteString(w, "done\n")
	case p == "/sse":
		n := intParam(q, "n", 3)
		d := time.Duration(intParam(q, "ms", 0)) * time.Millisecond
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		flush(w)
		for i := 1; i <= n; i++ {
			if i > 1 && !sleepCtx(r.Context(), d) {
				return
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: message\ndata: {\"i\":%d}\n\n", i, i); err != nil {
				return
			}
			flush(w)
		}
	case p == "/setcookie":
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "fake-session-cookie", Path: "/", HttpOnly: true, Secure: true})
		http.SetCookie(w, &http.Cookie{Name: "tracking", Value: "fake-tracking", Path: "/"})
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "cookies": 2})
	case p == "/status":
		code := intParam(q, "code", http.StatusOK)
		if code < 200 || code > 599 {
			code = http.StatusBadRequest
		}
		writeJSON(w, code, map[string]any{"status": code})
	case p == "/headers":
		h := w.Header()
		h.Add("Set-Cookie", "session=fake-session-cookie; Path=/; HttpOnly")
		h.Add("Set-Cookie", "other=fake-other; Path=/")
		h.Set("WWW-Authenticate", `Bearer realm="fakeupstream", error="invalid_token"`)
		h.Set("Proxy-Authenticate", `Basic realm="fakeupstream"`)
		h.Set("X-Request-Id", fmt.Sprintf("req-%d", rec.Seq))
		h.Set("X-RateLimit-Limit", "100")
		h.Set("X-RateLimit-Remaining", "42")
		h.Set("X-RateLimit-Reset", "1700000000")
		h.Set("Retry-After", "7")
		h.Set("ETag", `"fake-etag"`)
		h.Set("Cache-Control", "no-store")
		h.Set("Link", `<https://`+r.Host+`/headers?page=2>; rel="next"`)
		h.Set("Strict-Transport-Security", "max-age=63072000")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Alt-Svc", `h3=":443"; ma=86400`)
		h.Set("X-Powered-By", "fakeupstream")
		h.Set("X-Internal-Debug", "upstream-internal-detail")
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	case p == "/token":
		s.token(w, r, q, body)
	case p == "/token/rotate" || p == "/token/fail":
		// The same switches as path segments, for clients (aivault) whose
		// token endpoint URL may not carry a query.
		q.Set(strings.TrimPrefix(p, "/token/"), "1")
		s.token(w, r, q, body)
	case p == "/echo-auth":
		echoAuth(w, r)
	default:
		out := map[string]any{
			"method":  rec.Method,
			"target":  rec.Target,
			"host":    rec.Host,
			"sni":     rec.SNI,
			"proto":   rec.Proto,
			"headers": rec.Headers,
			"body":    rec.Body,
			"seq":     rec.Seq,
		}
		if rec.BodyBase64 != "" {
			out["body_b64"] = rec.BodyBase64
		}
		if rec.ClientCertSubject != "" {
			out["client_cert_subject"] = rec.ClientCertSubject
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// token implements a minimal OAuth2 token endpoint.
func (s *Server) token(w http.ResponseWriter, r *http.Request, q url.Values, body []byte) {
	var form url.Values
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
			return
		}
		form = url.Values{}
		for k, v := range m {
			form.Set(k, fmt.Sprint(v))
		}
	} else {
		var err error
		if form, err = url.ParseQuery(string(body)); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
			return
		}
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "invalid_request"})
		return
	}
	grant := form.Get("grant_type")
	if grant != "refresh_token" && grant != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	if q.Get("fail") != "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant"})
		return
	}
	s.mu.Lock()
	s.tokens++
	n := s.tokens
	s.mu.Unlock()
	out := map[string]any{
		"access_token": fmt.Sprintf("at-%d", n),
		"expires_in":   intParam(q, "expires_in", 3600),
		"token_type":   "Bearer",
	}
	if q.Get("rotate") != "" && grant == "refresh_token" {
		out["refresh_token"] = fmt.Sprintf("rt-%d", n)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// forms is one value reflected three ways.
type forms struct {
	Raw        string `json:"raw"`
	URLEncoded string `json:"urlencoded"`
	Base64     string `json:"base64"`
}

func threeForms(v string) forms {
	return forms{Raw: v, URLEncoded: url.QueryEscape(v), Base64: base64.StdEncoding.EncodeToString([]byte(v))}
}

// echoAuth reflects every credential-looking input back, the way careless
// APIs echo URLs and headers in bodies and headers.
func echoAuth(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	out := map[string]any{
		"authorization": threeForms(auth),
		"query":         threeForms(r.URL.RawQuery),
	}
	if _, cred, ok := strings.Cut(auth, " "); ok {
		out["credential"] = threeForms(cred)
		if dec, err := base64.StdEncoding.DecodeString(cred); err == nil && utf8.Valid(dec) {
			out["credential_decoded"] = threeForms(string(dec))
		}
	}
	hv := map[string]forms{}
	for k, vs := range r.Header {
		hv[k] = threeForms(strings.Join(vs, ", "))
	}
	out["headers"] = hv
	qv := map[string]forms{}
	for k, vs := range r.URL.Query() {
		qv[k] = threeForms(strings.Join(vs, ","))
	}
	out["query_values"] = qv
	w.Header().Set("X-Echo-Authorization", auth)
	w.Header().Set("X-Echo-Query", r.URL.RawQuery)
	w.Header().Set("Link", "<https://"+r.Host+r.URL.Path+"?"+r.URL.RawQuery+">; rel=\"self\"")
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, "encode", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func intParam(q url.Values, name string, def int) int {
	n, err := strconv.Atoi(q.Get(name))
	if err != nil || n < 0 {
		return def
	}
	return n
}

func sizeParam(w http.ResponseWriter, q url.Values) (int64, bool) {
	n, err := strconv.ParseInt(q.Get("bytes"), 10, 64)
	if err != nil || n < 0 || n > maxQueryBytes {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bytes must be 0..16GiB"})
		return 0, false
	}
	return n, true
}

func flush(w http.ResponseWriter) {
	_ = http.NewResponseController(w).Flush()
}

// sleepCtx waits d or until ctx ends; it reports whether the full wait happened.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// patternLine is repeated to form /large bodies.
const patternLine = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"

type patternReader struct{}

func (patternReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = patternLine[i%len(patternLine)]
	}
	// Always return whole multiples of the line so the pattern stays aligned.
	n := len(p) - len(p)%len(patternLine)
	if n == 0 {
		n = len(p)
	}
	return n, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
