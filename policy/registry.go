package policy

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
)

// The provider registry: one JSON file per provider, embedded in the binary.
// Nothing is parsed at init time; Builtin parses and validates the files on
// first use.
//
//go:embed registry/*.json
var regFiles embed.FS

// regSecretPlaceholder is the default placeholder (a JSON secret's whole
// object when its fields are referenced).
const regSecretPlaceholder = "secret"

// regMaxFileBytes bounds one registry file (the largest real one is a few KiB).
const regMaxFileBytes = 1 << 20

// Registry is a validated, immutable set of providers and their capabilities.
// Every accessor returns copies, so callers cannot alter the shared builtin
// registry. A nil *Registry behaves as an empty registry.
type Registry struct {
	providers map[string]*Provider
	caps      map[string]*Capability
	// secrets maps canonical names and aliases to their provider.
	secrets map[string]regSecretRef
}

type regSecretRef struct {
	provider    string
	canonical   string
	placeholder string
}

// regBuiltin is the lazily built embedded registry (a sync.Once cache, the
// only package-level state).
var regBuiltin = sync.OnceValues(func() (*Registry, error) {
	return regLoadFS(regFiles, "registry")
})

// Builtin returns the embedded registry, parsing and validating every file on
// the first call. Later calls are cheap and return the same value.
func Builtin() (*Registry, error) {
	return regBuiltin()
}

func regLoadFS(fsys fs.FS, dir string) (*Registry, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("policy: reading embedded registry: %w", err)
	}
	var ps []*Provider
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("policy: reading registry file %s: %w", e.Name(), err)
		}
		p, err := ParseProvider(data)
		if err != nil {
			return nil, fmt.Errorf("policy: registry file %s: %w", e.Name(), err)
		}
		if want := strings.TrimSuffix(e.Name(), ".json"); p.Provider != want {
			return nil, fmt.Errorf("policy: registry file %s declares provider %q", e.Name(), p.Provider)
		}
		ps = append(ps, p)
	}
	return NewRegistry(ps)
}

// ParseProvider decodes one registry file strictly (unknown fields and
// trailing data are refused) and validates it with ValidateProvider. Empty
// optional lists and maps are normalised to nil.
func ParseProvider(data []byte) (*Provider, error) {
	if len(data) > regMaxFileBytes {
		return nil, Errorf(ClassInvalidRequest, "provider file larger than %d bytes", regMaxFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Provider
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %w", Errorf(ClassInvalidRequest, "malformed provider JSON"), err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, Errorf(ClassInvalidRequest, "trailing data after provider JSON")
	}
	regNormalizeProvider(&p)
	if err := ValidateProvider(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

func regNormalizeProvider(p *Provider) {
	if len(p.SecretAliases) == 0 {
		p.SecretAliases = nil
	}
	if len(p.VaultSecrets) == 0 {
		p.VaultSecrets = nil
	}
	regNormalizeAuth(&p.Auth)
}

func regNormalizeAuth(a *Auth) {
	if len(a.MultiHeader) == 0 {
		a.MultiHeader = nil
	}
	if len(a.MultiQuery) == 0 {
		a.MultiQuery = nil
	}
	if a.OAuth2 != nil && len(a.OAuth2.Scopes) == 0 {
		a.OAuth2.Scopes = nil
	}
}

// ValidateProvider checks one provider: its id, secret names and
// placeholders, auth (exactly one known kind, templates referencing only
// defined placeholders, every secret used), hosts (plain DNS names or a
// leading "*." wildcard), and every capability (id "provider/name", non-empty
// hosts within the provider's hosts, known methods, safe path prefixes).
func ValidateProvider(p *Provider) error {
	if p == nil {
		return Errorf(ClassInvalidRequest, "nil provider")
	}
	if !regValidProviderID(p.Provider) {
		return Errorf(ClassInvalidRequest, "invalid provider id %q", p.Provider).
			WithHint("provider ids are lower-case letters, digits and '-'")
	}
	if len(p.VaultSecrets) == 0 {
		return Errorf(ClassInvalidRequest, "provider %s: vaultSecrets is empty", p.Provider)
	}
	placeholders := make(map[string]bool)
	for name, ph := range p.VaultSecrets {
		if !regValidSecretName(name) {
			return Errorf(ClassInvalidRequest, "provider %s: invalid secret name %q", p.Provider, name)
		}
		if !regValidPlaceholder(ph) {
			return Errorf(ClassInvalidRequest, "provider %s: invalid placeholder %q for %s", p.Provider, ph, name)
		}
		if placeholders[ph] {
			return Errorf(ClassInvalidRequest, "provider %s: placeholder %q filled by two secrets", p.Provider, ph)
		}
		placeholders[ph] = true
	}
	for alias, canon := range p.SecretAliases {
		if !regValidSecretName(alias) {
			return Errorf(ClassInvalidRequest, "provider %s: invalid secret alias %q", p.Provider, alias)
		}
		if _, ok := p.VaultSecrets[alias]; ok {
			return Errorf(ClassInvalidRequest, "provider %s: alias %s is also a canonical secret name", p.Provider, alias)
		}
		if _, ok := p.VaultSecrets[canon]; !ok {
			return Errorf(ClassInvalidRequest, "provider %s: alias %s points to unknown secret %q", p.Provider, alias, canon)
		}
	}
	if len(p.Hosts) == 0 {
		return Errorf(ClassInvalidRequest, "provider %s: hosts is empty", p.Provider)
	}
	seenHost := make(map[string]bool)
	for _, h := range p.Hosts {
		if err := regCheckHostPattern(h, true); err != nil {
			return fmt.Errorf("provider %s: %w", p.Provider, err)
		}
		if seenHost[h] {
			return Errorf(ClassInvalidRequest, "provider %s: duplicate host %s", p.Provider, h)
		}
		seenHost[h] = true
	}
	if err := regValidateAuth(p.Auth, placeholders, p.Hosts, false); err != nil {
		return fmt.Errorf("provider %s: %w", p.Provider, err)
	}
	if len(p.Capabilities) == 0 {
		return Errorf(ClassInvalidRequest, "provider %s: no capabilities", p.Provider)
	}
	seenCap := make(map[string]bool)
	for i := range p.Capabilities {
		c := &p.Capabilities[i]
		prov, _, ok := strings.Cut(c.ID, "/")
		if !regValidCapabilityID(c.ID) || !ok || prov != p.Provider {
			return Errorf(ClassInvalidRequest, "provider %s: capability id %q is not %s/<name>", p.Provider, c.ID, p.Provider)
		}
		if c.Provider != p.Provider {
			return Errorf(ClassInvalidRequest, "capability %s: provider %q, want %q", c.ID, c.Provider, p.Provider)
		}
		if c.Credential != "" {
			return Errorf(ClassInvalidRequest, "capability %s: registry capabilities name no credential", c.ID)
		}
		if seenCap[c.ID] {
			return Errorf(ClassInvalidRequest, "provider %s: duplicate capability %s", p.Provider, c.ID)
		}
		seenCap[c.ID] = true
		if err := regValidateAllow(c.Allow, true); err != nil {
			return fmt.Errorf("capability %s: %w", c.ID, err)
		}
		for _, h := range c.Allow.Hosts {
			if !regHostWithin(h, p.Hosts) {
				return Errorf(ClassInvalidRequest, "capability %s: host %s is not one of the provider's hosts", c.ID, h)
			}
		}
	}
	return nil
}

// NewRegistry builds a registry from validated providers, refusing duplicate
// provider ids, duplicate capability ids, and any secret name (canonical or
// alias) claimed by two providers.
func NewRegistry(ps []*Provider) (*Registry, error) {
	r := &Registry{
		providers: make(map[string]*Provider, len(ps)),
		caps:      make(map[string]*Capability),
		secrets:   make(map[string]regSecretRef),
	}
	for _, p := range ps {
		if err := ValidateProvider(p); err != nil {
			return nil, err
		}
		if _, dup := r.providers[p.Provider]; dup {
			return nil, Errorf(ClassInvalidRequest, "provider %s defined twice", p.Provider)
		}
		cp := regCopyProvider(p)
		r.providers[cp.Provider] = cp
		for i := range cp.Capabilities {
			c := &cp.Capabilities[i]
			if _, dup := r.caps[c.ID]; dup {
				return nil, Errorf(ClassInvalidRequest, "capability %s defined twice", c.ID)
			}
			r.caps[c.ID] = c
		}
		claim := func(name, canonical string) error {
			if prev, dup := r.secrets[name]; dup {
				return Errorf(ClassInvalidRequest, "secret name %s claimed by providers %s and %s", name, prev.provider, cp.Provider)
			}
			r.secrets[name] = regSecretRef{provider: cp.Provider, canonical: canonical, placeholder: cp.VaultSecrets[canonical]}
			return nil
		}
		for name := range cp.VaultSecrets {
			if err := claim(name, name); err != nil {
				return nil, err
			}
		}
		for alias, canon := range cp.SecretAliases {
			if err := claim(alias, canon); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Provider returns a copy of the provider with this id.
func (r *Registry) Provider(id string) (*Provider, bool) {
	if r == nil {
		return nil, false
	}
	p, ok := r.providers[id]
	if !ok {
		return nil, false
	}
	return regCopyProvider(p), true
}

// Providers returns copies of all providers, sorted by id.
func (r *Registry) Providers() []*Provider {
	if r == nil {
		return nil
	}
	out := make([]*Provider, 0, len(r.providers))
	for _, p := range r.providers {
		out = append(out, regCopyProvider(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Provider < out[j].Provider })
	return out
}

// ProviderForSecret finds the provider that claims a secret name (canonical
// or alias) and returns the canonical name and the placeholder it fills.
func (r *Registry) ProviderForSecret(name string) (p *Provider, canonical, placeholder string, ok bool) {
	if r == nil {
		return nil, "", "", false
	}
	ref, ok := r.secrets[name]
	if !ok {
		return nil, "", "", false
	}
	return regCopyProvider(r.providers[ref.provider]), ref.canonical, ref.placeholder, true
}

// Capability returns a copy of the registry capability with this id.
func (r *Registry) Capability(id string) (*Capability, bool) {
	if r == nil {
		return nil, false
	}
	c, ok := r.caps[id]
	if !ok {
		return nil, false
	}
	cp := regCopyCapability(*c)
	return &cp, true
}

// Capabilities returns copies of all registry capabilities, sorted by id.
func (r *Registry) Capabilities() []Capability {
	if r == nil {
		return nil
	}
	out := make([]Capability, 0, len(r.caps))
	for _, c := range r.caps {
		out = append(out, regCopyCapability(*c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ---- copying ----

func regCopyProvider(p *Provider) *Provider {
	cp := *p
	cp.VaultSecrets = regCopyMap(p.VaultSecrets)
	cp.SecretAliases = regCopyMap(p.SecretAliases)
	cp.Auth = regCopyAuth(p.Auth)
	cp.Hosts = slices.Clone(p.Hosts)
	if p.Capabilities != nil {
		cp.Capabilities = make([]Capability, len(p.Capabilities))
		for i, c := range p.Capabilities {
			cp.Capabilities[i] = regCopyCapability(c)
		}
	}
	return &cp
}

func regCopyCapability(c Capability) Capability {
	c.Allow.Hosts = slices.Clone(c.Allow.Hosts)
	c.Allow.Methods = slices.Clone(c.Allow.Methods)
	c.Allow.PathPrefixes = slices.Clone(c.Allow.PathPrefixes)
	return c
}

func regCopyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func regCopyAuth(a Auth) Auth {
	cp := a
	if a.Header != nil {
		h := *a.Header
		cp.Header = &h
	}
	if a.Query != nil {
		q := *a.Query
		cp.Query = &q
	}
	if a.Path != nil {
		pp := *a.Path
		cp.Path = &pp
	}
	if a.Basic != nil {
		b := *a.Basic
		cp.Basic = &b
	}
	cp.MultiHeader = slices.Clone(a.MultiHeader)
	cp.MultiQuery = slices.Clone(a.MultiQuery)
	if a.OAuth2 != nil {
		o := *a.OAuth2
		o.Scopes = slices.Clone(a.OAuth2.Scopes)
		cp.OAuth2 = &o
	}
	if a.AWSSigV4 != nil {
		s := *a.AWSSigV4
		cp.AWSSigV4 = &s
	}
	if a.HMAC != nil {
		h := *a.HMAC
		cp.HMAC = &h
	}
	if a.MTLS != nil {
		m := *a.MTLS
		cp.MTLS = &m
	}
	return cp
}

// ---- validation helpers (shared with state.go) ----

// regAllowedMethods are the only methods a capability may allow.
var regAllowedMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func regIsLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// regValidProviderID: [a-z0-9][a-z0-9-]{0,63}, no trailing '-'.
func regValidProviderID(s string) bool {
	if s == "" || len(s) > 64 || !regIsLowerAlnum(s[0]) || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !regIsLowerAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// regValidCapName: [a-z0-9][a-z0-9_.-]{0,63}.
func regValidCapName(s string) bool {
	if s == "" || len(s) > 64 || !regIsLowerAlnum(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !regIsLowerAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// regValidCapabilityID: "<provider>/<name>".
func regValidCapabilityID(id string) bool {
	prov, name, ok := strings.Cut(id, "/")
	return ok && regValidProviderID(prov) && regValidCapName(name)
}

// regValidSecretName: [A-Z][A-Z0-9_]{0,127}.
func regValidSecretName(s string) bool {
	if s == "" || len(s) > 128 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// regValidPlaceholder: [a-z][a-z0-9_]{0,63}.
func regValidPlaceholder(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !regIsLowerAlnum(c) && c != '_' {
			return false
		}
	}
	return true
}

// regCheckHostPattern requires h to be already in normal form (so that
// comparisons are exact); wildcards only as a leading "*." when allowed.
func regCheckHostPattern(h string, allowWildcard bool) error {
	n, err := NormalizeHost(h, allowWildcard)
	if err != nil {
		return fmt.Errorf("host %q: %w", h, err)
	}
	if n != h {
		return Errorf(ClassInvalidRequest, "host %q is not in normal form (want %q)", h, n)
	}
	return nil
}

// regHostWithin reports whether host (a concrete name or a pattern) lies
// within one of patterns: exact pattern equality, or a concrete host matched
// by a wildcard pattern.
func regHostWithin(host string, patterns []string) bool {
	for _, p := range patterns {
		if p == host {
			return true
		}
		if !IsWildcardHost(host) && MatchHostPattern(p, host) {
			return true
		}
	}
	return false
}

// regValidateAllow checks a capability's allow lists: non-empty, hosts in
// normal form, methods from the fixed set, safe path prefixes, no duplicates.
func regValidateAllow(a Allow, allowWildcard bool) error {
	if len(a.Hosts) == 0 {
		return Errorf(ClassInvalidRequest, "allow.hosts is empty (an empty list never means all hosts)")
	}
	if len(a.Methods) == 0 {
		return Errorf(ClassInvalidRequest, "allow.methods is empty (an empty list never means all methods)")
	}
	if len(a.PathPrefixes) == 0 {
		return Errorf(ClassInvalidRequest, "allow.pathPrefixes is empty (use [\"/\"] to allow every path)")
	}
	for i, h := range a.Hosts {
		if err := regCheckHostPattern(h, allowWildcard); err != nil {
			return err
		}
		if slices.Contains(a.Hosts[:i], h) {
			return Errorf(ClassInvalidRequest, "duplicate host %s", h)
		}
	}
	for i, m := range a.Methods {
		if !slices.Contains(regAllowedMethods, m) {
			return Errorf(ClassInvalidRequest, "method %q is not one of %s", m, strings.Join(regAllowedMethods, " "))
		}
		if slices.Contains(a.Methods[:i], m) {
			return Errorf(ClassInvalidRequest, "duplicate method %s", m)
		}
	}
	for i, p := range a.PathPrefixes {
		if err := regCheckPathPrefix(p); err != nil {
			return err
		}
		if slices.Contains(a.PathPrefixes[:i], p) {
			return Errorf(ClassInvalidRequest, "duplicate path prefix %s", p)
		}
	}
	return nil
}

// regCheckPathPrefix: starts with "/", at most 1024 bytes, printable ASCII,
// and none of "..", "//", "%", "\\", "?", "#".
func regCheckPathPrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return Errorf(ClassInvalidRequest, "path prefix %q does not start with /", p)
	}
	if len(p) > 1024 {
		return Errorf(ClassInvalidRequest, "path prefix longer than 1024 bytes")
	}
	return regCheckPathChars(p, "path prefix")
}

func regCheckPathChars(p, what string) error {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= ' ' || c >= 0x7f {
			return Errorf(ClassInvalidRequest, "%s %q contains whitespace, control or non-ASCII characters", what, p)
		}
		if strings.IndexByte("%\\?#", c) >= 0 {
			return Errorf(ClassInvalidRequest, "%s %q contains %q", what, p, c)
		}
	}
	if strings.Contains(p, "..") || strings.Contains(p, "//") {
		return Errorf(ClassInvalidRequest, "%s %q contains \"..\" or \"//\"", what, p)
	}
	return nil
}

// regTemplateRefs returns the placeholders a template references. A template
// is literal text with {{name}} references; stray "{{" or "}}" and control
// characters (CR/LF would allow header injection) are refused.
func regTemplateRefs(t string) ([]string, error) {
	return regTemplateRefsNames(t, regValidPlaceholder)
}

// regValidJSONField: a field name of a JSON secret, [A-Za-z0-9_.-]{1,64}.
func regValidJSONField(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(regIsLowerAlnum(c) || c >= 'A' && c <= 'Z' || strings.IndexByte("_.-", c) >= 0) {
			return false
		}
	}
	return true
}

func regTemplateRefsNames(t string, valid func(string) bool) ([]string, error) {
	var refs []string
	for i := 0; i < len(t); i++ {
		if t[i] < ' ' || t[i] == 0x7f {
			return nil, Errorf(ClassInvalidRequest, "template contains a control character")
		}
	}
	rest := t
	for {
		open := strings.Index(rest, "{{")
		closing := strings.Index(rest, "}}")
		if open < 0 {
			if closing >= 0 {
				return nil, Errorf(ClassInvalidRequest, "template has \"}}\" without \"{{\"")
			}
			return refs, nil
		}
		if closing >= 0 && closing < open {
			return nil, Errorf(ClassInvalidRequest, "template has \"}}\" without \"{{\"")
		}
		rest = rest[open+2:]
		end := strings.Index(rest, "}}")
		if end < 0 {
			return nil, Errorf(ClassInvalidRequest, "template has \"{{\" without \"}}\"")
		}
		name := rest[:end]
		if !valid(name) {
			return nil, Errorf(ClassInvalidRequest, "template references invalid placeholder %q", name)
		}
		refs = append(refs, name)
		rest = rest[end+2:]
	}
}

// regForbiddenHeaders may not be set by auth: they frame the request or are
// hop-by-hop, so injecting them could smuggle or redirect requests.
var regForbiddenHeaders = []string{
	"host", "content-length", "transfer-encoding", "connection", "keep-alive",
	"te", "trailer", "upgrade", "proxy-authorization", "proxy-connection", "expect",
	"cookie", "content-type",
}

func regValidHeaderName(h string) bool {
	if h == "" || len(h) > 128 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(regIsLowerAlnum(c) || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return !slices.Contains(regForbiddenHeaders, strings.ToLower(h))
}

func regValidParamName(q string) bool {
	if q == "" || len(q) > 128 {
		return false
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		if !(regIsLowerAlnum(c) || c >= 'A' && c <= 'Z' || strings.IndexByte("-._~", c) >= 0) {
			return false
		}
	}
	return true
}

// regValidateAuth checks an auth strategy against the placeholders its
// secrets define and the hosts it may talk to. Every defined placeholder must
// be used and every referenced one defined. Kinds without templates (query,
// o_auth2, aws_sig_v4, hmac, mtls) take one secret in the "secret"
// placeholder; basic takes {{username}}+{{password}}, {{password}} alone with
// a fixed username, or one JSON "secret".
//
// With jsonFields (operator credentials), templates may also reference
// fields of a JSON secret held in the "secret" placeholder ({{api_key}},
// {{apiKey}}), as the renderer resolves them; registry files may not.
func regValidateAuth(a Auth, defined map[string]bool, hosts []string, jsonFields bool) error {
	jsonFields = jsonFields && defined[regSecretPlaceholder]
	validName := regValidPlaceholder
	if jsonFields {
		validName = regValidJSONField
	}
	kind := a.Kind()
	if kind == "" {
		return Errorf(ClassInvalidRequest, "auth must set exactly one known kind")
	}
	used := make(map[string]bool)
	useTemplate := func(what, t string) error {
		refs, err := regTemplateRefsNames(t, validName)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, r := range refs {
			used[r] = true
		}
		return nil
	}
	switch kind {
	case AuthKindHeader:
		if !regValidHeaderName(a.Header.HeaderName) {
			return Errorf(ClassInvalidRequest, "auth header name %q is not allowed", a.Header.HeaderName)
		}
		if a.Header.ValueTemplate == "" {
			return Errorf(ClassInvalidRequest, "auth header value_template is empty")
		}
		if err := useTemplate("auth header", a.Header.ValueTemplate); err != nil {
			return err
		}
	case AuthKindMultiHeader:
		for i, h := range a.MultiHeader {
			if !regValidHeaderName(h.HeaderName) {
				return Errorf(ClassInvalidRequest, "auth header name %q is not allowed", h.HeaderName)
			}
			for _, prev := range a.MultiHeader[:i] {
				if strings.EqualFold(prev.HeaderName, h.HeaderName) {
					return Errorf(ClassInvalidRequest, "auth header %s given twice", h.HeaderName)
				}
			}
			if h.ValueTemplate == "" {
				return Errorf(ClassInvalidRequest, "auth header %s: value_template is empty", h.HeaderName)
			}
			if err := useTemplate("auth header "+h.HeaderName, h.ValueTemplate); err != nil {
				return err
			}
		}
	case AuthKindQuery:
		if !regValidParamName(a.Query.ParamName) {
			return Errorf(ClassInvalidRequest, "auth query param_name %q is not allowed", a.Query.ParamName)
		}
		used[regSecretPlaceholder] = true
	case AuthKindMultiQuery:
		for i, q := range a.MultiQuery {
			if !regValidParamName(q.ParamName) {
				return Errorf(ClassInvalidRequest, "auth query param_name %q is not allowed", q.ParamName)
			}
			for _, prev := range a.MultiQuery[:i] {
				if prev.ParamName == q.ParamName {
					return Errorf(ClassInvalidRequest, "auth query parameter %s given twice", q.ParamName)
				}
			}
			if q.ValueTemplate == "" {
				return Errorf(ClassInvalidRequest, "auth query parameter %s: value_template is empty", q.ParamName)
			}
			if err := useTemplate("auth query "+q.ParamName, q.ValueTemplate); err != nil {
				return err
			}
		}
	case AuthKindPath:
		t := a.Path.PrefixTemplate
		if !strings.HasPrefix(t, "/") {
			return Errorf(ClassInvalidRequest, "auth path prefix_template must start with /")
		}
		if err := useTemplate("auth path", t); err != nil {
			return err
		}
		refs, _ := regTemplateRefsNames(t, validName)
		if len(refs) == 0 {
			return Errorf(ClassInvalidRequest, "auth path prefix_template references no placeholder")
		}
		literal := t
		for _, r := range refs {
			literal = strings.Replace(literal, "{{"+r+"}}", "x", 1)
		}
		if err := regCheckPathChars(literal, "auth path prefix_template"); err != nil {
			return err
		}
	case AuthKindBasic:
		switch {
		case defined[regSecretPlaceholder] && len(defined) == 1:
			used[regSecretPlaceholder] = true
		case a.Basic.Username != "":
			if !regValidBasicUser(a.Basic.Username) {
				return Errorf(ClassInvalidRequest, "basic auth username contains ':' or control characters")
			}
			used["password"] = true
		default:
			used["username"] = true
			used["password"] = true
		}
	case AuthKindOAuth2:
		o := a.OAuth2
		if o.GrantType != "refresh_token" && o.GrantType != "client_credentials" {
			return Errorf(ClassInvalidRequest, "o_auth2 grant_type %q is not refresh_token or client_credentials", o.GrantType)
		}
		if err := regCheckTokenEndpoint(o.TokenEndpoint, hosts); err != nil {
			return err
		}
		for _, s := range o.Scopes {
			if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				return Errorf(ClassInvalidRequest, "o_auth2 scope %q is empty or contains whitespace", s)
			}
		}
		used[regSecretPlaceholder] = true
	case AuthKindAWSSigV4:
		if !regValidProviderID(a.AWSSigV4.Service) || !regValidProviderID(a.AWSSigV4.Region) {
			return Errorf(ClassInvalidRequest, "aws_sig_v4 service and region must be lower-case names")
		}
		used[regSecretPlaceholder] = true
	case AuthKindHMAC:
		h := a.HMAC
		if h.Algorithm != "sha256" && h.Algorithm != "sha512" {
			return Errorf(ClassInvalidRequest, "hmac algorithm %q is not sha256 or sha512", h.Algorithm)
		}
		if !regValidHeaderName(h.HeaderName) {
			return Errorf(ClassInvalidRequest, "hmac header name %q is not allowed", h.HeaderName)
		}
		refs, err := regTemplateRefs(h.ValueTemplate)
		if err != nil {
			return fmt.Errorf("hmac: %w", err)
		}
		if !slices.Contains(refs, "signature") {
			return Errorf(ClassInvalidRequest, "hmac value_template must contain {{signature}}")
		}
		for _, r := range refs {
			if r != "signature" {
				return Errorf(ClassInvalidRequest, "hmac value_template may reference only {{signature}}")
			}
		}
		used[regSecretPlaceholder] = true
	case AuthKindMTLS:
		used[regSecretPlaceholder] = true
	}
	jsonUsed := false
	for r := range used {
		if defined[r] {
			continue
		}
		if jsonFields {
			jsonUsed = true // a field of the JSON secret
			continue
		}
		return Errorf(ClassInvalidRequest, "auth (%s) uses placeholder %q that no secret fills", kind, r)
	}
	if jsonUsed {
		used[regSecretPlaceholder] = true
	}
	for d := range defined {
		if !used[d] {
			return Errorf(ClassInvalidRequest, "secret placeholder %q is not used by the auth (%s)", d, kind)
		}
	}
	return nil
}

func regValidBasicUser(u string) bool {
	for i := 0; i < len(u); i++ {
		if u[i] < ' ' || u[i] == 0x7f || u[i] == ':' {
			return false
		}
	}
	return true
}

// regCheckTokenEndpoint: an absolute https URL, no userinfo, port or
// fragment, whose host lies within hosts.
func regCheckTokenEndpoint(raw string, hosts []string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return Errorf(ClassInvalidRequest, "o_auth2 token_endpoint is not a URL")
	}
	if u.Scheme != "https" || u.User != nil || u.Port() != "" || u.Fragment != "" || u.RawQuery != "" || u.Opaque != "" {
		return Errorf(ClassInvalidRequest, "o_auth2 token_endpoint must be a plain https URL without userinfo, port, query or fragment")
	}
	h, err := NormalizeHost(u.Host, false)
	if err != nil || h != u.Host {
		return Errorf(ClassInvalidRequest, "o_auth2 token_endpoint host %q is not a normalised DNS name", u.Host)
	}
	if !regHostWithin(h, hosts) {
		return Errorf(ClassInvalidRequest, "o_auth2 token_endpoint host %s is not one of the hosts", h)
	}
	if u.Path != "" {
		if err := regCheckPathChars(u.EscapedPath(), "o_auth2 token_endpoint path"); err != nil {
			return err
		}
	}
	return nil
}
