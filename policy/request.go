package policy

import (
	"bytes"
	"fmt"
	"mime"
	"mime/multipart"
	"net/textproto"
	"net/url"
	"strings"
	"unicode/utf8"
)

// BodyMode says how a Request carries its body.
type BodyMode int

// Body modes. A Request uses exactly one.
const (
	BodyNone      BodyMode = iota // no body
	BodyBytes                     // Request.Body, sent as is
	BodyMultipart                 // Request.Multipart, encoded by EncodeMultipart
)

// Limits applied by CheckRequest.
const (
	// MaxPathBytes caps the path part of a request target.
	MaxPathBytes = 2048
	// MaxQueryBytes caps the query part of a request target.
	MaxQueryBytes = 16 << 10
	// MaxHeaderCount caps the number of caller headers.
	MaxHeaderCount = 64
	// MaxHeaderBytes caps the total size of caller header names and values.
	MaxHeaderBytes = 16 << 10
	// DefaultMaxRequestBodyBytes applies when CapPolicy.MaxRequestBodyBytes is 0.
	DefaultMaxRequestBodyBytes = 16 << 20
)

// Header is one HTTP header field.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// MultipartField is one plain form field of a multipart body.
type MultipartField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// MultipartFile is one file part of a multipart body. The client reads the
// file as the caller's own user; the monitor only ever sees these bytes.
type MultipartFile struct {
	Field       string `json:"field"`
	Filename    string `json:"filename"`
	ContentType string `json:"contentType,omitempty"`
	Data        []byte `json:"data"`
}

// Multipart is a multipart/form-data body before encoding.
type Multipart struct {
	Fields []MultipartField `json:"fields,omitempty"`
	Files  []MultipartFile  `json:"files,omitempty"`
}

// Request is what a caller asked for, already decoded from CLI flags or the
// JSON envelope. Everything in it is untrusted.
type Request struct {
	Method string
	// Path is the request target below the host; it may include "?query".
	Path      string
	Headers   []Header
	Body      []byte
	Multipart *Multipart
}

// Mode reports the body mode of r. A request with both a byte body and a
// multipart body reports BodyMultipart; CheckRequest refuses it.
func (r Request) Mode() BodyMode {
	switch {
	case r.Multipart != nil:
		return BodyMultipart
	case len(r.Body) > 0:
		return BodyBytes
	default:
		return BodyNone
	}
}

// Checked is a request that passed every validator, normalised: the method
// is upper case, Path is the path part only, Headers holds the caller headers
// that will be forwarded (hop-by-hop and proxy headers dropped, never a
// Content-Type: that travels in ContentType), Body is the exact encoded body.
type Checked struct {
	Method      string
	Path        string
	RawQuery    string
	Headers     []Header
	Body        []byte
	ContentType string
}

// Outgoing builds the upstream request for host from c: the checked headers
// plus a Content-Type header when c has one. The result shares no slices
// with c, so rendering auth into it leaves c unchanged.
func (c *Checked) Outgoing(host string) *Outgoing {
	hs := make([]Header, 0, len(c.Headers)+1)
	hs = append(hs, c.Headers...)
	if c.ContentType != "" {
		hs = append(hs, Header{Name: "Content-Type", Value: c.ContentType})
	}
	var body []byte
	if c.Body != nil {
		body = bytes.Clone(c.Body)
	}
	return &Outgoing{Method: c.Method, Path: c.Path, RawQuery: c.RawQuery, Headers: hs, Body: body, Host: host}
}

// CheckRequest runs every request validator in order and returns the
// normalised request. capAllow is the capability's allow list,
// injectedHeaders the (case-insensitive) header names the credential sets
// (InjectedHeaderNames), brokerQueryParams the query parameters it sets
// (BrokerQueryParams), pol the operator policy. Refusals are *Error with
// class PolicyViolation or InvalidRequest.
func CheckRequest(capAllow Allow, injectedHeaders []string, brokerQueryParams []string, pol CapPolicy, req Request) (*Checked, error) {
	st := &rqState{
		allow:        capAllow,
		injected:     map[string]bool{},
		brokerParams: brokerQueryParams,
		pol:          pol,
		req:          req,
	}
	for _, h := range injectedHeaders {
		if n := strings.ToLower(strings.TrimSpace(h)); n != "" {
			st.injected[n] = true
		}
	}
	for _, v := range rqValidators() {
		if err := v.validate(st); err != nil {
			return nil, err
		}
	}
	return &st.out, nil
}

// rqState is the working state shared by the request validators: the
// inputs, and the Checked being built.
type rqState struct {
	allow        Allow
	injected     map[string]bool
	brokerParams []string
	pol          CapPolicy
	req          Request
	out          Checked
}

// rqValidator is one step of CheckRequest. Each step checks one thing and
// may fill in part of st.out.
type rqValidator interface {
	validate(st *rqState) error
}

// rqValidators is the ordered list CheckRequest runs. Target syntax first,
// then the policy decisions that rely on it.
func rqValidators() []rqValidator {
	return []rqValidator{
		rqMethodSyntax{},
		rqMethodAllowed{},
		rqTargetSplit{},
		rqPathSyntax{},
		rqPathTraversal{},
		rqPathAllowed{},
		rqQuerySyntax{},
		rqBrokerQuery{},
		rqHeaderLimits{},
		rqHeaderFields{},
		rqMethodOverride{},
		rqBodyMode{},
		rqBodyEncode{},
		rqBodySize{},
	}
}

// --- method ---

type rqMethodSyntax struct{}

func (rqMethodSyntax) validate(st *rqState) error {
	m := st.req.Method
	if m == "" {
		return Errorf(ClassInvalidRequest, "missing HTTP method")
	}
	if len(m) > 32 || !rqIsToken(m) {
		return Errorf(ClassInvalidRequest, "method %q is not a valid HTTP method token", rqPrintable(m))
	}
	st.out.Method = strings.ToUpper(m)
	return nil
}

type rqMethodAllowed struct{}

func (rqMethodAllowed) validate(st *rqState) error {
	for _, a := range st.allow.Methods {
		if strings.EqualFold(a, st.out.Method) {
			return nil
		}
	}
	return Errorf(ClassPolicyViolation, "method %s is not allowed by this capability (allowed: %s)",
		st.out.Method, strings.Join(st.allow.Methods, ", "))
}

// --- target ---

type rqTargetSplit struct{}

func (rqTargetSplit) validate(st *rqState) error {
	p, q, _ := strings.Cut(st.req.Path, "?")
	st.out.Path, st.out.RawQuery = p, q
	return nil
}

// rqPathSyntax checks the raw bytes of the path part.
type rqPathSyntax struct{}

func (rqPathSyntax) validate(st *rqState) error { return rqCheckPathSyntax(st.out.Path) }

func rqCheckPathSyntax(p string) error {
	if p == "" {
		return Errorf(ClassInvalidRequest, "missing request path").WithHint("give a path starting with \"/\", e.g. /v1/models")
	}
	if len(p) > MaxPathBytes {
		return Errorf(ClassPolicyViolation, "path is %d bytes; at most %d are allowed", len(p), MaxPathBytes)
	}
	if p[0] != '/' {
		return Errorf(ClassInvalidRequest, "path must start with \"/\"")
	}
	if strings.HasPrefix(p, "//") {
		return Errorf(ClassPolicyViolation, "path must not start with \"//\"")
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			return Errorf(ClassPolicyViolation, "path traversal is not allowed (backslash in path)")
		case c == '#':
			return Errorf(ClassPolicyViolation, "fragment ('#') is not allowed in a path")
		case c < 0x20 || c == 0x7f:
			return Errorf(ClassPolicyViolation, "control character 0x%02x is not allowed in a path", c)
		case c == ' ':
			return Errorf(ClassInvalidRequest, "space is not allowed in a path; percent-encode it as %%20")
		case c >= 0x80:
			return Errorf(ClassInvalidRequest, "non-ASCII byte 0x%02x in path; percent-encode it", c)
		case c == '%':
			if i+2 >= len(p) || !rqIsHex(p[i+1]) || !rqIsHex(p[i+2]) {
				return Errorf(ClassInvalidRequest, "invalid percent escape in path")
			}
			switch v := rqUnhex(p[i+1])<<4 | rqUnhex(p[i+2]); {
			case v == '.' || v == '/' || v == '\\':
				return Errorf(ClassPolicyViolation, "path traversal is not allowed (encoded %q in path)", rune(v))
			case v == '%':
				return Errorf(ClassPolicyViolation, "double percent-encoding (%%25) is not allowed in a path")
			case v < 0x20 || v == 0x7f:
				return Errorf(ClassPolicyViolation, "encoded control character 0x%02x is not allowed in a path", v)
			}
			i += 2
		case !rqIsPathChar(c):
			return Errorf(ClassInvalidRequest, "character %q is not allowed in a path; percent-encode it", rune(c))
		}
	}
	// Escaped bytes must decode to valid UTF-8: an overlong form such as
	// %c0%ae or %e0%80%ae (a '.' to a lax decoder) or %c0%af ('/') would
	// otherwise pass the checks above and become traversal upstream.
	if dec, err := url.PathUnescape(p); err == nil && !utf8.ValidString(dec) {
		return Errorf(ClassPolicyViolation, "path traversal is not allowed (escaped bytes that are not valid UTF-8, e.g. an overlong encoding)")
	}
	return nil
}

// rqPathTraversal refuses dot segments. Encoded dots are refused by
// rqPathSyntax, so a raw '.' is the only spelling left; a ";param" suffix
// is stripped first because some servers ignore it ("/..;/").
type rqPathTraversal struct{}

func (rqPathTraversal) validate(st *rqState) error { return rqCheckDotSegments(st.out.Path) }

func rqCheckDotSegments(p string) error {
	for seg := range strings.SplitSeq(p, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return Errorf(ClassPolicyViolation, "path traversal is not allowed (%q segment)", seg)
		}
	}
	return nil
}

// rqPathAllowed matches the raw path against the capability's prefixes at
// segment boundaries.
type rqPathAllowed struct{}

func (rqPathAllowed) validate(st *rqState) error {
	for _, pre := range st.allow.PathPrefixes {
		if rqPathHasPrefix(st.out.Path, pre) {
			return nil
		}
	}
	return Errorf(ClassPolicyViolation, "path %s is not allowed by this capability", st.out.Path).
		WithHint("allowed path prefixes: %s", strings.Join(st.allow.PathPrefixes, " "))
}

// rqPathHasPrefix reports whether p lies under prefix: equal to it, or
// continuing with "/" after it; a prefix ending in "/" or "." admits anything
// that starts with it (Slack's method families: "/api/chat." admits
// "/api/chat.postMessage"; dot segments are refused separately). Matching is
// case-sensitive on the raw (still percent-encoded) path. An empty or
// relative prefix matches nothing.
func rqPathHasPrefix(p, prefix string) bool {
	if prefix == "" || prefix[0] != '/' || !strings.HasPrefix(p, prefix) {
		return false
	}
	if strings.HasSuffix(prefix, "/") || strings.HasSuffix(prefix, ".") || len(p) == len(prefix) {
		return true
	}
	return p[len(prefix)] == '/'
}

// rqQuerySyntax checks the query part: no control characters, spaces, '#'
// or raw non-ASCII bytes, and only valid percent escapes.
type rqQuerySyntax struct{}

func (rqQuerySyntax) validate(st *rqState) error { return rqCheckQuerySyntax(st.out.RawQuery) }

func rqCheckQuerySyntax(q string) error {
	if len(q) > MaxQueryBytes {
		return Errorf(ClassPolicyViolation, "query is %d bytes; at most %d are allowed", len(q), MaxQueryBytes)
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return Errorf(ClassPolicyViolation, "control character 0x%02x is not allowed in a query", c)
		case c == ' ':
			return Errorf(ClassInvalidRequest, "space is not allowed in a query; encode it as %%20 or +")
		case c == '#':
			return Errorf(ClassPolicyViolation, "fragment ('#') is not allowed in a query")
		case c >= 0x80:
			return Errorf(ClassInvalidRequest, "non-ASCII byte 0x%02x in query; percent-encode it", c)
		case c == '%':
			if i+2 >= len(q) || !rqIsHex(q[i+1]) || !rqIsHex(q[i+2]) {
				return Errorf(ClassInvalidRequest, "invalid percent escape in query")
			}
			i += 2
		}
	}
	return nil
}

// rqBrokerQuery refuses caller copies of query parameters the credential
// sets. Both '&' and ';' count as separators (some servers split on ';').
type rqBrokerQuery struct{}

func (rqBrokerQuery) validate(st *rqState) error {
	if name, ok := rqQueryHasParam(st.out.RawQuery, st.brokerParams); ok {
		return Errorf(ClassPolicyViolation, "query parameter %q is set by the credential; remove it from the request", name)
	}
	return nil
}

// rqQueryHasParam reports the first of names present as a parameter key in
// rawQuery ('&' and ';' separated, keys URL-decoded, compared exactly,
// case-insensitively and after trimming spaces).
func rqQueryHasParam(rawQuery string, names []string) (string, bool) {
	if rawQuery == "" {
		return "", false
	}
	for pair := range strings.FieldsFuncSeq(rawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		rawKey, _, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			key = rawKey
		}
		tk := strings.TrimSpace(key)
		for _, n := range names {
			if n != "" && (key == n || strings.EqualFold(key, n) || strings.EqualFold(tk, n)) {
				return n, true
			}
		}
	}
	return "", false
}

// --- headers ---

// rqHeaderLimits caps the number and total size of caller headers.
type rqHeaderLimits struct{}

func (rqHeaderLimits) validate(st *rqState) error {
	hs := st.req.Headers
	if len(hs) > MaxHeaderCount {
		return Errorf(ClassPolicyViolation, "%d headers given; at most %d are allowed", len(hs), MaxHeaderCount)
	}
	total := 0
	for _, h := range hs {
		total += len(h.Name) + len(h.Value)
	}
	if total > MaxHeaderBytes {
		return Errorf(ClassPolicyViolation, "headers total %d bytes; at most %d are allowed", total, MaxHeaderBytes)
	}
	return nil
}

// rqHeaderFields validates each header, refuses credential and duplicate
// headers, and silently drops hop-by-hop, framing and proxy headers.
type rqHeaderFields struct{}

func (rqHeaderFields) validate(st *rqState) error {
	seen := make(map[string]bool, len(st.req.Headers))
	var kept []Header
	for _, h := range st.req.Headers {
		name := h.Name
		if name == "" || !rqIsToken(name) {
			return Errorf(ClassPolicyViolation, "header name %q is not a valid token", rqPrintable(name))
		}
		if err := rqCheckHeaderValue(h.Value); err != nil {
			return Errorf(ClassPolicyViolation, "header %s: %s", name, err.Msg)
		}
		lower := strings.ToLower(name)
		if seen[lower] {
			return Errorf(ClassPolicyViolation, "header %s is given more than once", name)
		}
		seen[lower] = true
		if rqRefusedHeader(lower) || st.injected[lower] {
			return Errorf(ClassPolicyViolation, "header %s is not allowed: the vault sets credentials itself", name).
				WithHint("drop the %s header; the capability's credential is injected by aivault", name)
		}
		if rqDroppedHeader(lower) {
			continue
		}
		value := strings.Trim(h.Value, " \t")
		if lower == "content-type" {
			st.out.ContentType = value
			continue
		}
		kept = append(kept, Header{Name: textproto.CanonicalMIMEHeaderKey(name), Value: value})
	}
	st.out.Headers = kept
	return nil
}

// rqMethodOverride refuses method-override headers (honoured by Google
// APIs and many frameworks) that name a method the capability does not
// allow: "POST" plus "X-HTTP-Method-Override: DELETE" is a DELETE.
type rqMethodOverride struct{}

func (rqMethodOverride) validate(st *rqState) error {
	for _, h := range st.out.Headers {
		switch strings.ToLower(h.Name) {
		case "x-http-method-override", "x-http-method", "x-method-override":
			ok := false
			for _, a := range st.allow.Methods {
				ok = ok || strings.EqualFold(a, h.Value)
			}
			if !ok {
				return Errorf(ClassPolicyViolation, "header %s names a method this capability does not allow", h.Name)
			}
		}
	}
	return nil
}

// rqCheckHeaderValue refuses CTLs other than HTAB (CR, LF, NUL, …).
func rqCheckHeaderValue(v string) *Error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return Errorf(ClassPolicyViolation, "control character 0x%02x is not allowed in a header value", c)
		}
	}
	return nil
}

// rqRefusedHeader lists caller headers that would carry or override a
// credential.
func rqRefusedHeader(lower string) bool {
	switch lower {
	case "authorization", "proxy-authorization", "cookie":
		return true
	}
	return false
}

// rqDroppedHeader lists headers the transport owns (hop-by-hop, framing,
// proxy and forwarding headers); they are dropped without an error.
func rqDroppedHeader(lower string) bool {
	switch lower {
	case "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
		"content-length", "host", "expect", "forwarded", "x-real-ip", "accept-encoding", "range":
		return true
	}
	return strings.HasPrefix(lower, "sec-websocket-") ||
		strings.HasPrefix(lower, "proxy-") ||
		strings.HasPrefix(lower, "x-forwarded-")
}

// --- body ---

// rqBodyMode enforces one body mode, and no body with GET or HEAD.
type rqBodyMode struct{}

func (rqBodyMode) validate(st *rqState) error {
	r := st.req
	if r.Multipart != nil && len(r.Body) > 0 {
		return Errorf(ClassInvalidRequest, "give either a body or multipart fields, not both")
	}
	if (st.out.Method == "GET" || st.out.Method == "HEAD") && r.Mode() != BodyNone {
		return Errorf(ClassInvalidRequest, "a %s request cannot have a body", st.out.Method)
	}
	if r.Multipart != nil && st.out.ContentType != "" {
		return Errorf(ClassInvalidRequest, "a multipart request sets its own Content-Type; drop the Content-Type header")
	}
	return nil
}

// rqBodyEncode produces the exact body bytes (and content type for
// multipart).
type rqBodyEncode struct{}

func (rqBodyEncode) validate(st *rqState) error {
	limit := rqBodyLimit(st.pol)
	switch st.req.Mode() {
	case BodyMultipart:
		if n := rqMultipartRawSize(st.req.Multipart); n > limit {
			return rqBodyTooLarge(n, limit)
		}
		body, ct, err := EncodeMultipart(st.req.Multipart)
		if err != nil {
			return err
		}
		st.out.Body, st.out.ContentType = body, ct
	case BodyBytes:
		st.out.Body = st.req.Body
	}
	return nil
}

// rqBodySize applies the policy's body limit to the encoded body.
type rqBodySize struct{}

func (rqBodySize) validate(st *rqState) error {
	if limit := rqBodyLimit(st.pol); int64(len(st.out.Body)) > limit {
		return rqBodyTooLarge(int64(len(st.out.Body)), limit)
	}
	return nil
}

func rqBodyLimit(pol CapPolicy) int64 {
	if pol.MaxRequestBodyBytes > 0 {
		return pol.MaxRequestBodyBytes
	}
	return DefaultMaxRequestBodyBytes
}

func rqBodyTooLarge(n, limit int64) *Error {
	return Errorf(ClassPolicyViolation, "request body is %d bytes; this capability allows at most %d", n, limit)
}

func rqMultipartRawSize(m *Multipart) int64 {
	var n int64
	for _, f := range m.Fields {
		n += int64(len(f.Name) + len(f.Value))
	}
	for _, f := range m.Files {
		n += int64(len(f.Field) + len(f.Filename) + len(f.Data))
	}
	return n
}

// EncodeMultipart encodes m as multipart/form-data with a random boundary.
// Field names, file names and content types must be free of control
// characters; a file without a content type is application/octet-stream.
func EncodeMultipart(m *Multipart) (body []byte, contentType string, err error) {
	if m == nil || len(m.Fields)+len(m.Files) == 0 {
		return nil, "", Errorf(ClassInvalidRequest, "multipart body has no fields or files")
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range m.Fields {
		if err := rqCheckPartName("field name", f.Name, false); err != nil {
			return nil, "", err
		}
		if err := w.WriteField(f.Name, f.Value); err != nil {
			return nil, "", fmt.Errorf("encode multipart field: %w", err)
		}
	}
	for _, f := range m.Files {
		if err := rqCheckPartName("file field name", f.Field, false); err != nil {
			return nil, "", err
		}
		if err := rqCheckPartName("file name", f.Filename, true); err != nil {
			return nil, "", err
		}
		ct := f.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		} else if _, _, perr := mime.ParseMediaType(ct); perr != nil || rqHasCTL(ct) {
			return nil, "", Errorf(ClassInvalidRequest, "file %q has an invalid content type", rqPrintable(f.Filename))
		}
		h := make(textproto.MIMEHeader)
		// The form multipart.Writer.CreateFormFile uses (and browsers send):
		// name first, both quoted. mime.FormatMediaType would sort the
		// parameters, leave tokens unquoted and switch to RFC 2231
		// filename*= for non-ASCII names, which RFC 7578 forbids and many
		// servers do not parse. Control characters were refused above.
		h.Set("Content-Disposition", `form-data; name="`+rqQuoteEscaper.Replace(f.Field)+`"; filename="`+rqQuoteEscaper.Replace(f.Filename)+`"`)
		h.Set("Content-Type", ct)
		pw, err := w.CreatePart(h)
		if err != nil {
			return nil, "", fmt.Errorf("encode multipart file: %w", err)
		}
		if _, err := pw.Write(f.Data); err != nil {
			return nil, "", fmt.Errorf("encode multipart file: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", fmt.Errorf("encode multipart body: %w", err)
	}
	return buf.Bytes(), w.FormDataContentType(), nil
}

var rqQuoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"")

func rqCheckPartName(what, s string, allowEmpty bool) *Error {
	if s == "" && !allowEmpty {
		return Errorf(ClassInvalidRequest, "multipart %s is empty", what)
	}
	if rqHasCTL(s) {
		return Errorf(ClassInvalidRequest, "multipart %s contains a control character", what)
	}
	return nil
}

// --- defaults ---

// DefaultMethodPath returns the method the capability allows when it allows
// exactly one, and the path when it allows exactly one prefix that is a
// full path (not ending in "/"); otherwise the empty string for each.
func DefaultMethodPath(a Allow) (method, path string) {
	var ms []string
	for _, m := range a.Methods {
		u := strings.ToUpper(m)
		dup := false
		for _, x := range ms {
			dup = dup || x == u
		}
		if !dup {
			ms = append(ms, u)
		}
	}
	if len(ms) == 1 && rqIsToken(ms[0]) {
		method = ms[0]
	}
	if len(a.PathPrefixes) == 1 {
		p := a.PathPrefixes[0]
		if !strings.HasSuffix(p, "/") && !strings.Contains(p, "?") &&
			rqCheckPathSyntax(p) == nil && rqCheckDotSegments(p) == nil {
			path = p
		}
	}
	return method, path
}

// --- character classes ---

func rqIsTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// rqIsToken reports whether s is an RFC 9110 token.
func rqIsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !rqIsTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// rqIsPathChar reports whether c may appear raw in a path: RFC 3986 pchar
// (unreserved, sub-delims, ':' and '@') or '/'. '%' is handled separately.
func rqIsPathChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0
}

func rqIsHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func rqUnhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func rqHasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// rqPrintable makes a caller string safe to quote in a one-line message:
// bounded length, control and non-ASCII bytes escaped by %q.
func rqPrintable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}
