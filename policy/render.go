package policy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"hash"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Outgoing is the upstream request the worker will send, once auth is
// rendered into it. Path is the path part only; Host is the policy host.
type Outgoing struct {
	Method   string
	Path     string
	RawQuery string
	Headers  []Header
	Body     []byte
	Host     string
}

// Placeholder names with a fixed meaning in auth templates and secrets.
const (
	// PlaceholderSecret is the default placeholder; for JSON secrets it
	// holds the whole JSON object.
	PlaceholderSecret = "secret"
	// PlaceholderSignature is filled by the hmac strategy.
	PlaceholderSignature = "signature"
	// PlaceholderAccessToken carries an OAuth2 access token to RenderAuth.
	PlaceholderAccessToken = "access_token"
)

// RenderAuth injects the credential's auth a into out, using values
// (placeholder → secret bytes; for JSON secrets the "secret" placeholder
// holds the JSON, and template placeholders not in values are looked up as
// string fields of that object). It returns every injected value — fresh
// copies the caller should wipe — so the worker can scrub raw, URL-encoded
// and base64 forms from responses. Errors never contain a secret; on error
// out is left unchanged. now is the signing time for SigV4.
//
// For o_auth2, values["access_token"] must hold a current access token
// (fetching it is the caller's job); mtls injects nothing here.
func RenderAuth(a Auth, values map[string][]byte, out *Outgoing, now time.Time) (scrub [][]byte, err error) {
	if out == nil {
		return nil, Errorf(ClassInvalidRequest, "no request to render auth into")
	}
	rc := &rnCtx{values: values}
	defer rc.wipe()
	work := *out
	work.Headers = slices.Clone(out.Headers)
	switch a.Kind() {
	case AuthKindHeader:
		err = rc.header(&work, *a.Header)
	case AuthKindMultiHeader:
		err = rc.multiHeader(&work, a.MultiHeader)
	case AuthKindQuery:
		err = rc.query(&work, a.Query)
	case AuthKindMultiQuery:
		err = rc.multiQuery(&work, a.MultiQuery)
	case AuthKindPath:
		err = rc.path(&work, a.Path)
	case AuthKindBasic:
		err = rc.basic(&work, a.Basic)
	case AuthKindOAuth2:
		err = rc.oauth2(&work)
	case AuthKindAWSSigV4:
		err = rc.sigV4(&work, a.AWSSigV4, now)
	case AuthKindHMAC:
		err = rc.hmac(&work, a.HMAC)
	case AuthKindMTLS:
		// The client certificate is presented by the TLS layer.
	default:
		err = Errorf(ClassInvalidRequest, "credential auth must set exactly one strategy")
	}
	if err != nil {
		rnWipeAll(rc.scrub)
		return nil, err
	}
	*out = work
	return rc.scrub, nil
}

// rnCtx resolves placeholders and collects scrub values and temporaries.
type rnCtx struct {
	values   map[string][]byte
	fields   map[string][]byte // string fields of a JSON "secret", decoded lazily
	parsed   bool
	scrub    [][]byte
	tmp      [][]byte
	override map[string][]byte // computed placeholders (hmac signature)
}

func (rc *rnCtx) wipe() {
	rnWipeAll(rc.tmp)
	for _, v := range rc.fields {
		rnWipe(v)
	}
}

// addScrub records a copy of an injected value (empty values and
// duplicates are skipped).
func (rc *rnCtx) addScrub(v []byte) {
	if len(v) == 0 {
		return
	}
	for _, s := range rc.scrub {
		if bytes.Equal(s, v) {
			return
		}
	}
	rc.scrub = append(rc.scrub, bytes.Clone(v))
}

// jsonFields decodes values["secret"] as a JSON object of strings, once.
func (rc *rnCtx) jsonFields() map[string][]byte {
	if !rc.parsed {
		rc.parsed = true
		if s := rc.values[PlaceholderSecret]; len(bytes.TrimSpace(s)) > 0 && bytes.TrimSpace(s)[0] == '{' {
			rc.fields, _ = rnDecodeJSONStrings(s)
		}
	}
	return rc.fields
}

// has reports whether lookup(name) would find a value (possibly empty).
func (rc *rnCtx) has(name string) bool {
	if _, ok := rc.values[name]; ok {
		return true
	}
	for k := range rc.jsonFields() {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// lookup returns the bytes for a placeholder: a computed value, a value
// given by the caller, or a string field of a JSON secret (exact name
// first, then case-insensitive). The result must not be modified.
func (rc *rnCtx) lookup(name string) ([]byte, error) {
	if v, ok := rc.override[name]; ok {
		return v, nil
	}
	if v, ok := rc.values[name]; ok {
		if len(v) == 0 {
			return nil, Errorf(ClassInvalidRequest, "the secret for placeholder %q is empty", name)
		}
		return v, nil
	}
	f := rc.jsonFields()
	v, ok := f[name]
	if !ok {
		for k, fv := range f {
			if strings.EqualFold(k, name) {
				v, ok = fv, true
				break
			}
		}
	}
	if ok {
		if len(v) == 0 {
			return nil, Errorf(ClassInvalidRequest, "field %q of the JSON secret is empty", name)
		}
		return v, nil
	}
	return nil, Errorf(ClassInvalidRequest, "auth template uses placeholder %q, which the credential does not provide", name).
		WithHint("bind a secret to placeholder %q (or store a JSON secret with a %q field)", name, name)
}

// render expands {{name}} placeholders in tmpl. Each value is recorded for
// scrubbing; escape, when set, is applied to each value (and the escaped
// form is scrubbed too). The result is a fresh buffer the caller wipes.
func (rc *rnCtx) render(tmpl string, escape func(string) string) ([]byte, error) {
	var out []byte
	rest := tmpl
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if strings.Contains(rest, "}}") {
				return nil, Errorf(ClassInvalidRequest, "auth template has an unmatched \"}}\"")
			}
			out = append(out, rest...)
			return out, nil
		}
		if strings.Contains(rest[:i], "}}") {
			rnWipe(out)
			return nil, Errorf(ClassInvalidRequest, "auth template has an unmatched \"}}\"")
		}
		out = append(out, rest[:i]...)
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			rnWipe(out)
			return nil, Errorf(ClassInvalidRequest, "auth template has an unterminated \"{{\"")
		}
		name := strings.TrimSpace(rest[i+2 : i+2+j])
		if !rnIsPlaceholderName(name) {
			rnWipe(out)
			return nil, Errorf(ClassInvalidRequest, "auth template has an invalid placeholder name %q", rqPrintable(name))
		}
		v, err := rc.lookup(name)
		if err != nil {
			rnWipe(out)
			return nil, err
		}
		rc.addScrub(v)
		if escape != nil {
			e := []byte(escape(string(v)))
			rc.addScrub(e)
			out = append(out, e...)
			rnWipe(e)
		} else {
			out = append(out, v...)
		}
		rest = rest[i+2+j+2:]
	}
}

// rnBlankPlaceholders replaces each {{…}} in tmpl with "x", for checking
// the literal text of a template.
func rnBlankPlaceholders(tmpl string) string {
	var b strings.Builder
	for {
		i := strings.Index(tmpl, "{{")
		if i < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		j := strings.Index(tmpl[i:], "}}")
		if j < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		b.WriteString(tmpl[:i])
		b.WriteByte('x')
		tmpl = tmpl[i+j+2:]
	}
}

func rnIsPlaceholderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// --- strategies ---

func (rc *rnCtx) header(out *Outgoing, h AuthHeader) error {
	v, err := rc.render(h.ValueTemplate, nil)
	if err != nil {
		return err
	}
	defer rnWipe(v)
	return rnSetHeader(out, h.HeaderName, v)
}

func (rc *rnCtx) multiHeader(out *Outgoing, hs []AuthHeader) error {
	seen := map[string]bool{}
	for _, h := range hs {
		l := strings.ToLower(h.HeaderName)
		if seen[l] {
			return Errorf(ClassInvalidRequest, "multi_header sets header %s twice", rqPrintable(h.HeaderName))
		}
		seen[l] = true
		if err := rc.header(out, h); err != nil {
			return err
		}
	}
	return nil
}

func (rc *rnCtx) query(out *Outgoing, q *AuthQuery) error {
	return rc.multiQuery(out, []AuthQueryParam{{ParamName: q.ParamName, ValueTemplate: "{{" + PlaceholderSecret + "}}"}})
}

func (rc *rnCtx) multiQuery(out *Outgoing, ps []AuthQueryParam) error {
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		if p.ParamName == "" {
			return Errorf(ClassInvalidRequest, "auth query parameter has no name")
		}
		if slices.Contains(names, p.ParamName) {
			return Errorf(ClassInvalidRequest, "auth sets query parameter %q twice", rqPrintable(p.ParamName))
		}
		names = append(names, p.ParamName)
	}
	if name, ok := rqQueryHasParam(out.RawQuery, names); ok {
		return Errorf(ClassPolicyViolation, "query parameter %q is set by the credential; remove it from the request", name)
	}
	var q []byte
	q = append(q, out.RawQuery...)
	defer func() { rnWipe(q) }()
	for _, p := range ps {
		v, err := rc.render(p.ValueTemplate, nil)
		if err != nil {
			return err
		}
		e := []byte(url.QueryEscape(string(v)))
		rnWipe(v)
		rc.addScrub(e)
		if len(q) > 0 {
			q = append(q, '&')
		}
		q = append(q, url.QueryEscape(p.ParamName)...)
		q = append(q, '=')
		q = append(q, e...)
		rnWipe(e)
	}
	out.RawQuery = string(q)
	return nil
}

func (rc *rnCtx) path(out *Outgoing, p *AuthPath) error {
	// The template's literal text must be a clean path; the secret is
	// path-escaped, so it cannot add segments, only become one.
	if rqCheckPathSyntax(rnBlankPlaceholders(p.PrefixTemplate)) != nil || rqCheckDotSegments(p.PrefixTemplate) != nil {
		return Errorf(ClassInvalidRequest, "auth path prefix template %q is not a clean absolute path", rqPrintable(p.PrefixTemplate))
	}
	prefix, err := rc.render(p.PrefixTemplate, url.PathEscape)
	if err != nil {
		return err
	}
	defer rnWipe(prefix)
	ps := string(prefix)
	if rqCheckDotSegments(ps) != nil {
		// Generic message: the rendered prefix contains the secret.
		return Errorf(ClassInvalidRequest, "the rendered auth path prefix has a dot segment (check the secret)")
	}
	rest := out.Path
	if strings.HasSuffix(ps, "/") {
		rest = strings.TrimPrefix(rest, "/")
	}
	out.Path = ps + rest
	return nil
}

func (rc *rnCtx) basic(out *Outgoing, b *AuthBasic) error {
	var user []byte
	if b.Username != "" {
		user = []byte(b.Username)
	} else {
		u, err := rc.lookup("username")
		if err != nil {
			return err
		}
		rc.addScrub(u)
		user = u
	}
	pass, err := rc.lookup("password")
	if err != nil {
		sec, ok := rc.values[PlaceholderSecret]
		if b.Username == "" || !ok || len(sec) == 0 || rc.jsonFields() != nil {
			return err
		}
		pass = sec
	}
	rc.addScrub(pass)
	if bytes.IndexByte(user, ':') >= 0 {
		return Errorf(ClassInvalidRequest, "basic auth user name must not contain ':'")
	}
	cred := make([]byte, 0, len(user)+1+len(pass))
	cred = append(cred, user...)
	cred = append(cred, ':')
	cred = append(cred, pass...)
	tok := make([]byte, base64.StdEncoding.EncodedLen(len(cred)))
	base64.StdEncoding.Encode(tok, cred)
	rnWipe(cred)
	rc.addScrub(tok)
	v := append([]byte("Basic "), tok...)
	rnWipe(tok)
	defer rnWipe(v)
	return rnSetHeader(out, "Authorization", v)
}

func (rc *rnCtx) oauth2(out *Outgoing) error {
	tok, ok := rc.values[PlaceholderAccessToken]
	if !ok || len(tok) == 0 {
		return Errorf(ClassInvalidRequest, "no OAuth2 access token to inject")
	}
	if !rnIsVisibleASCII(tok) {
		return Errorf(ClassInvalidRequest, "the OAuth2 access token contains characters not allowed in a header")
	}
	rc.addScrub(tok)
	v := append([]byte("Bearer "), tok...)
	defer rnWipe(v)
	return rnSetHeader(out, "Authorization", v)
}

// rnSigV4Headers are the headers SigV4 signing sets (canonical spelling).
func rnSigV4Headers() []string {
	return []string{"Authorization", "X-Amz-Date", "X-Amz-Content-Sha256", "X-Amz-Security-Token"}
}

func (rc *rnCtx) sigV4(out *Outgoing, s *AuthSigV4, now time.Time) error {
	if !rnIsAWSName(s.Service) || !rnIsAWSName(s.Region) {
		return Errorf(ClassInvalidRequest, "aws_sig_v4 needs a service and a region (lower-case letters, digits, '-')")
	}
	if out.Host == "" {
		return Errorf(ClassInvalidRequest, "aws_sig_v4 needs the upstream host")
	}
	if now.IsZero() {
		return Errorf(ClassInvalidRequest, "aws_sig_v4 needs a signing time")
	}
	akid, err := rc.lookup("accessKeyId")
	if err != nil {
		return err
	}
	secret, err := rc.lookup("secretAccessKey")
	if err != nil {
		return err
	}
	var token []byte
	if rc.has("sessionToken") {
		if token, err = rc.lookup("sessionToken"); err != nil {
			return err
		}
	}
	rc.addScrub(akid)
	rc.addScrub(secret)
	rc.addScrub(token)

	path := out.Path
	if path == "" {
		path = "/"
	}
	u, perr := url.Parse("https://" + out.Host + path)
	if perr != nil || u.Host != out.Host {
		return Errorf(ClassInvalidRequest, "cannot build the URL to sign")
	}
	// The signer re-encodes the query from its parsed form and that form is
	// what is sent; a pair the parser drops (a ';' separator) would vanish
	// from the request unnoticed, so refuse it instead.
	if _, qerr := url.ParseQuery(out.RawQuery); qerr != nil {
		return Errorf(ClassInvalidRequest, "aws_sig_v4 requests need a plain '&'-separated query; percent-encode ';' as %%3B")
	}
	u.RawQuery = out.RawQuery
	hdr := make(http.Header, len(out.Headers)+4)
	for _, h := range out.Headers {
		if rnIsSigV4Header(h.Name) {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(h.Name)
		hdr[k] = append(hdr[k], h.Value)
	}
	sum := sha256.Sum256(out.Body)
	payloadHash := hex.EncodeToString(sum[:])
	hdr.Set("X-Amz-Content-Sha256", payloadHash)
	req := &http.Request{Method: out.Method, URL: u, Host: out.Host, Header: hdr, ContentLength: 0}

	creds := aws.Credentials{AccessKeyID: string(akid), SecretAccessKey: string(secret), SessionToken: string(token)}
	signer := v4.NewSigner(func(o *v4.SignerOptions) {
		// S3 signs the path as sent; other services escape it once more.
		o.DisableURIPathEscaping = s.Service == "s3" || s.Service == "s3-object-lambda"
	})
	if serr := signer.SignHTTP(context.Background(), creds, req, payloadHash, s.Service, s.Region, now.UTC()); serr != nil {
		// The signer's errors do not carry credentials, but keep ours generic.
		return Errorf(ClassInvalidRequest, "aws_sig_v4 signing failed")
	}
	authz := req.Header.Get("Authorization")
	if _, sig, ok := strings.Cut(authz, "Signature="); ok {
		rc.addScrub([]byte(sig))
	}
	for _, name := range rnSigV4Headers() {
		if v := req.Header.Get(name); v != "" {
			if err := rnSetHeader(out, name, []byte(v)); err != nil {
				return err
			}
		}
	}
	// The signer canonicalises the query it signed; send exactly that.
	out.RawQuery = req.URL.RawQuery
	return nil
}

func rnIsSigV4Header(name string) bool {
	for _, h := range rnSigV4Headers() {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

func (rc *rnCtx) hmac(out *Outgoing, h *AuthHMAC) error {
	var newHash func() hash.Hash
	switch strings.TrimPrefix(strings.ToLower(h.Algorithm), "hmac-") {
	case "sha256":
		newHash = sha256.New
	case "sha512":
		newHash = sha512.New
	default:
		return Errorf(ClassInvalidRequest, "hmac algorithm %q is not supported (use sha256 or sha512)", rqPrintable(h.Algorithm))
	}
	if !strings.Contains(h.ValueTemplate, PlaceholderSignature) {
		return Errorf(ClassInvalidRequest, "hmac value template must contain {{signature}}")
	}
	key, err := rc.lookup(PlaceholderSecret)
	if err != nil {
		return err
	}
	rc.addScrub(key)
	m := hmac.New(newHash, key)
	m.Write(out.Body)
	sum := m.Sum(nil)
	sig := make([]byte, hex.EncodedLen(len(sum)))
	hex.Encode(sig, sum)
	rnWipe(sum)
	rc.tmp = append(rc.tmp, sig)
	rc.override = map[string][]byte{PlaceholderSignature: sig}
	defer func() { rc.override = nil }()
	return rc.header(out, AuthHeader{HeaderName: h.HeaderName, ValueTemplate: h.ValueTemplate})
}

// rnSetHeader replaces every header called name with one header whose
// value is v. The value must be free of CR, LF, NUL and other CTLs.
func rnSetHeader(out *Outgoing, name string, v []byte) error {
	if !rqIsToken(name) {
		return Errorf(ClassInvalidRequest, "auth header name %q is not a valid token", rqPrintable(name))
	}
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return Errorf(ClassPolicyViolation, "the rendered value for header %s contains a control character", name)
		}
	}
	out.Headers = slices.DeleteFunc(out.Headers, func(h Header) bool { return strings.EqualFold(h.Name, name) })
	out.Headers = append(out.Headers, Header{Name: name, Value: string(v)})
	return nil
}

// --- what a credential owns ---

// InjectedHeaderNames returns the lower-case names of the headers the
// credential sets; CheckRequest refuses caller copies of them.
func InjectedHeaderNames(a Auth) []string {
	switch a.Kind() {
	case AuthKindHeader:
		return []string{strings.ToLower(strings.TrimSpace(a.Header.HeaderName))}
	case AuthKindMultiHeader:
		var ns []string
		for _, h := range a.MultiHeader {
			ns = append(ns, strings.ToLower(strings.TrimSpace(h.HeaderName)))
		}
		return ns
	case AuthKindBasic, AuthKindOAuth2:
		return []string{"authorization"}
	case AuthKindAWSSigV4:
		return []string{"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"}
	case AuthKindHMAC:
		return []string{strings.ToLower(strings.TrimSpace(a.HMAC.HeaderName))}
	}
	return nil
}

// BrokerQueryParams returns the query parameters the credential sets;
// CheckRequest refuses caller copies of them. For SigV4 these are the
// presigning parameters, which would compete with the signed headers.
func BrokerQueryParams(a Auth) []string {
	switch a.Kind() {
	case AuthKindQuery:
		return []string{a.Query.ParamName}
	case AuthKindMultiQuery:
		var ns []string
		for _, p := range a.MultiQuery {
			ns = append(ns, p.ParamName)
		}
		return ns
	case AuthKindAWSSigV4:
		return []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Signature", "X-Amz-SignedHeaders"}
	}
	return nil
}

// RedactTarget returns path?rawQuery for audit records and messages, with
// each scrub value (raw, query-escaped and path-escaped forms) replaced by
// [REDACTED].
func RedactTarget(path, rawQuery string, scrub [][]byte) string {
	s := path
	if rawQuery != "" {
		s += "?" + rawQuery
	}
	var forms []string
	for _, v := range scrub {
		if len(v) == 0 {
			continue
		}
		raw := string(v)
		qe := url.QueryEscape(raw)
		forms = append(forms, raw, qe, strings.ReplaceAll(qe, "+", "%20"), url.PathEscape(raw))
	}
	// Longest first, so a value is not half-replaced through a shorter one.
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, "[REDACTED]")
	}
	return s
}

// --- OAuth2 ---

// OAuth2TokenRequest builds the application/x-www-form-urlencoded body for
// a token request from the stored JSON secret: for refresh_token the fields
// client_id, client_secret (when present) and refresh_token; for
// client_credentials client_id, client_secret and scope (a.Scopes joined by
// spaces). camelCase field names (clientId, …) are accepted too. The body
// holds secrets: wipe it after use.
func OAuth2TokenRequest(a *AuthOAuth2, secretJSON []byte) (body []byte, contentType string, err error) {
	if a == nil {
		return nil, "", Errorf(ClassInvalidRequest, "credential is not an OAuth2 credential")
	}
	fields, ok := rnDecodeJSONStrings(secretJSON)
	if !ok {
		return nil, "", Errorf(ClassInvalidRequest, "the OAuth2 secret is not a JSON object of strings").
			WithHint("store {\"client_id\":…,\"client_secret\":…,\"refresh_token\":…}")
	}
	defer func() {
		for _, v := range fields {
			rnWipe(v)
		}
	}()
	get := func(snake, camel string) []byte {
		if v, ok := fields[snake]; ok {
			return v
		}
		return fields[camel]
	}
	clientID := get("client_id", "clientId")
	clientSecret := get("client_secret", "clientSecret")
	var buf []byte
	add := func(k string, v []byte) {
		if len(buf) > 0 {
			buf = append(buf, '&')
		}
		buf = append(buf, k...)
		buf = append(buf, '=')
		e := []byte(url.QueryEscape(string(v)))
		buf = append(buf, e...)
		rnWipe(e)
	}
	if len(clientID) == 0 {
		return nil, "", Errorf(ClassInvalidRequest, "the OAuth2 secret has no client_id")
	}
	switch a.GrantType {
	case "refresh_token":
		refresh := get("refresh_token", "refreshToken")
		if len(refresh) == 0 {
			return nil, "", Errorf(ClassInvalidRequest, "the OAuth2 secret has no refresh_token")
		}
		add("grant_type", []byte("refresh_token"))
		add("refresh_token", refresh)
		add("client_id", clientID)
		if len(clientSecret) > 0 {
			add("client_secret", clientSecret)
		}
	case "client_credentials":
		if len(clientSecret) == 0 {
			return nil, "", Errorf(ClassInvalidRequest, "the OAuth2 secret has no client_secret")
		}
		add("grant_type", []byte("client_credentials"))
		add("client_id", clientID)
		add("client_secret", clientSecret)
		if len(a.Scopes) > 0 {
			add("scope", []byte(strings.Join(a.Scopes, " ")))
		}
	default:
		return nil, "", Errorf(ClassInvalidRequest, "OAuth2 grant type %q is not supported (use refresh_token or client_credentials)", rqPrintable(a.GrantType))
	}
	return buf, "application/x-www-form-urlencoded", nil
}

// ParseOAuth2TokenResponse reads a token endpoint's JSON answer. It returns
// the access token, the new refresh token if one was issued, and
// expires_in (0 when absent). An error answer becomes an AccessDenied
// error naming only the OAuth2 error code.
func ParseOAuth2TokenResponse(b []byte) (access, refresh []byte, expiresIn int64, err error) {
	var r struct {
		AccessToken  json.RawMessage `json:"access_token"`
		RefreshToken json.RawMessage `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		TokenType    json.RawMessage `json:"token_type"`
		Error        json.RawMessage `json:"error"`
	}
	// json errors can quote bytes of the input: never wrap them.
	if json.Unmarshal(b, &r) != nil {
		return nil, nil, 0, Errorf(ClassUpstreamUnreachable, "the OAuth2 token endpoint did not answer with a JSON object")
	}
	if len(r.Error) > 0 && string(r.Error) != "null" {
		code := "unknown_error"
		var s string
		if json.Unmarshal(r.Error, &s) == nil && rnIsOAuthErrorCode(s) {
			code = s
		}
		return nil, nil, 0, Errorf(ClassAccessDenied, "the OAuth2 token endpoint refused the stored grant (%s)", code).
			WithHint("re-authorise the credential and store the new secret")
	}
	if tt := rnJSONString(r.TokenType); tt != nil {
		ok := strings.EqualFold(string(tt), "bearer")
		rnWipe(tt)
		if !ok {
			return nil, nil, 0, Errorf(ClassUpstreamUnreachable, "the OAuth2 token endpoint issued a token type other than bearer")
		}
	}
	access = rnJSONString(r.AccessToken)
	if len(access) == 0 || !rnIsVisibleASCII(access) {
		rnWipe(access)
		return nil, nil, 0, Errorf(ClassUpstreamUnreachable, "the OAuth2 token endpoint returned no usable access_token")
	}
	refresh = rnJSONString(r.RefreshToken)
	if len(refresh) == 0 {
		refresh = nil
	}
	if len(r.ExpiresIn) > 0 && string(r.ExpiresIn) != "null" {
		raw := strings.Trim(string(r.ExpiresIn), "\"")
		n, perr := strconv.ParseFloat(raw, 64)
		if perr != nil {
			rnWipe(access)
			rnWipe(refresh)
			return nil, nil, 0, Errorf(ClassUpstreamUnreachable, "the OAuth2 token endpoint returned an invalid expires_in")
		}
		if n > 0 && n < 1<<40 {
			expiresIn = int64(n)
		}
	}
	return access, refresh, expiresIn, nil
}

func rnIsOAuthErrorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// --- byte helpers ---

// rnDecodeJSONStrings decodes a JSON object and returns its string fields
// as fresh byte slices (other field types are ignored). ok is false when b
// is not a JSON object.
func rnDecodeJSONStrings(b []byte) (map[string][]byte, bool) {
	var raw map[string]json.RawMessage
	if json.Unmarshal(b, &raw) != nil || raw == nil {
		return nil, false
	}
	out := make(map[string][]byte, len(raw))
	for k, v := range raw {
		if s := rnJSONString(v); s != nil {
			out[k] = s
		}
	}
	return out, true
}

// rnJSONString decodes a JSON string into a fresh byte slice (nil when raw
// is not a string). Strings without escapes are copied without passing
// through a Go string.
func rnJSONString(raw json.RawMessage) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return append([]byte{}, inner...)
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil
	}
	return []byte(s)
}

func rnIsVisibleASCII(b []byte) bool {
	for _, c := range b {
		if c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

func rnIsAWSName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// rnWipe zeroes b.
func rnWipe(b []byte) { clear(b) }

func rnWipeAll(bs [][]byte) {
	for _, b := range bs {
		clear(b)
	}
}
