package policy

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// NewState returns an empty, normalised broker state.
func NewState() *State {
	s := &State{Version: StateVersion}
	s.Normalize()
	return s
}

// Normalize replaces nil maps and slices with empty ones and sorts every list
// so that the encoded state is stable (and its MAC reproducible).
func (s *State) Normalize() {
	if s.Version == 0 {
		s.Version = StateVersion
	}
	if s.Credentials == nil {
		s.Credentials = []Credential{}
	}
	if s.Capabilities == nil {
		s.Capabilities = []Capability{}
	}
	if s.Policies == nil {
		s.Policies = map[string]CapPolicy{}
	}
	if s.Bindings == nil {
		s.Bindings = []Binding{}
	}
	if s.Grants == nil {
		s.Grants = []Grant{}
	}
	if s.Attachments == nil {
		s.Attachments = []Attachment{}
	}
	for i := range s.Credentials {
		if s.Credentials[i].Secrets == nil {
			s.Credentials[i].Secrets = map[string]string{}
		}
		if s.Credentials[i].Hosts == nil {
			s.Credentials[i].Hosts = []string{}
		}
	}
	slices.SortStableFunc(s.Credentials, func(a, b Credential) int { return strings.Compare(a.ID, b.ID) })
	slices.SortStableFunc(s.Capabilities, func(a, b Capability) int { return strings.Compare(a.ID, b.ID) })
	slices.SortStableFunc(s.Bindings, func(a, b Binding) int {
		return cmp.Or(
			strings.Compare(a.Capability, b.Capability),
			strings.Compare(a.Scope, b.Scope),
			strings.Compare(a.WorkspaceID, b.WorkspaceID),
			strings.Compare(a.GroupID, b.GroupID),
			strings.Compare(a.Consumer, b.Consumer),
			strings.Compare(a.SecretID, b.SecretID),
		)
	})
	slices.SortStableFunc(s.Grants, func(a, b Grant) int {
		return cmp.Or(
			cmp.Compare(a.UID, b.UID),
			strings.Compare(a.Capability, b.Capability),
			strings.Compare(a.User, b.User),
		)
	})
	slices.SortStableFunc(s.Attachments, func(a, b Attachment) int {
		return cmp.Or(
			strings.Compare(a.SecretID, b.SecretID),
			strings.Compare(a.WorkspaceID, b.WorkspaceID),
			strings.Compare(a.GroupID, b.GroupID),
		)
	})
}

// Credential returns the credential with this id (a pointer into s).
func (s *State) Credential(id string) (*Credential, bool) {
	for i := range s.Credentials {
		if s.Credentials[i].ID == id {
			return &s.Credentials[i], true
		}
	}
	return nil, false
}

// CustomCapability returns the operator-made capability with this id (a
// pointer into s).
func (s *State) CustomCapability(id string) (*Capability, bool) {
	for i := range s.Capabilities {
		if s.Capabilities[i].ID == id {
			return &s.Capabilities[i], true
		}
	}
	return nil, false
}

// ResolveCapability finds a capability by id: the registry first, then the
// operator's custom capabilities. It returns a copy and whether it is custom.
func ResolveCapability(reg *Registry, s *State, id string) (*Capability, bool, error) {
	if reg != nil {
		if c, ok := reg.Capability(id); ok {
			return c, false, nil
		}
	}
	if s != nil {
		if c, ok := s.CustomCapability(id); ok {
			cp := regCopyCapability(*c)
			return &cp, true, nil
		}
	}
	return nil, false, Errorf(ClassCapabilityNotFound, "no capability %q", id).
		WithHint("list the available capabilities with: aivault capability list")
}

// ---- scopes ----

// Scope levels, ordered by precedence.
const (
	stLevelNone = iota
	stLevelGlobal
	stLevelWorkspace
	stLevelGroup
)

// stValidContextID: [A-Za-z0-9][A-Za-z0-9._-]{0,63}.
func stValidContextID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || strings.IndexByte("._-", c) < 0) {
			return false
		}
	}
	return true
}

// stNormScope validates a scope triple and returns it normalised ("" scope
// means global). A global scope names no workspace or group; a workspace
// scope names a workspace only; a group scope names both.
func stNormScope(scope, ws, group string) (string, error) {
	if scope == "" {
		scope = ScopeGlobal
	}
	bad := func(msg string) (string, error) {
		return "", Errorf(ClassInvalidRequest, "%s", msg)
	}
	switch scope {
	case ScopeGlobal:
		if ws != "" || group != "" {
			return bad("a global scope names no workspace or group")
		}
	case ScopeWorkspace:
		if !stValidContextID(ws) || group != "" {
			return bad("a workspace scope needs a valid workspace id and no group")
		}
	case ScopeGroup:
		if !stValidContextID(ws) || !stValidContextID(group) {
			return bad("a group scope needs valid workspace and group ids")
		}
	default:
		return bad("unknown scope " + strconv.Quote(scope) + " (want global, workspace or group)")
	}
	return scope, nil
}

// stAdmitLevel is the level at which an item of this scope is usable from
// ctx, or stLevelNone when it is not usable there at all. Malformed scopes are
// never usable.
func stAdmitLevel(scope, ws, group string, ctx Context) int {
	norm, err := stNormScope(scope, ws, group)
	if err != nil {
		return stLevelNone
	}
	switch norm {
	case ScopeGlobal:
		return stLevelGlobal
	case ScopeWorkspace:
		if ws == ctx.WorkspaceID {
			return stLevelWorkspace
		}
	case ScopeGroup:
		if ws == ctx.WorkspaceID && group == ctx.GroupID {
			return stLevelGroup
		}
	}
	return stLevelNone
}

// stSecLabel names a secret in messages: "NAME (id)" (names and ids are
// metadata, never values).
func stSecLabel(sec SecretInfo) string {
	if sec.Name == "" {
		return sec.ID
	}
	return sec.Name + " (" + sec.ID + ")"
}

// stScopeLabel describes a scope for hints: "global", "scoped to workspace
// W", "scoped to group W/G".
func stScopeLabel(scope, ws, group string) string {
	switch scope {
	case ScopeWorkspace:
		return "scoped to workspace " + ws
	case ScopeGroup:
		return "scoped to group " + ws + "/" + group
	}
	return "global"
}

func stFindSecret(secrets []SecretInfo, id string) (SecretInfo, bool) {
	for _, sec := range secrets {
		if sec.ID == id {
			return sec, true
		}
	}
	return SecretInfo{}, false
}

// stPin is the provider a secret is pinned to: its recorded pin, or, for a
// secret carrying a canonical registry name, that provider (fail closed even
// if the pin was never recorded).
func stPin(reg *Registry, sec SecretInfo) string {
	if sec.Pinned != "" {
		return sec.Pinned
	}
	return PinFor(reg, sec.Name)
}

// stAttachmentValid: an attachment only ever widens a secret within its own
// workspace (a global secret may be attached anywhere).
func stAttachmentValid(sec SecretInfo, a Attachment) bool {
	if a.SecretID != sec.ID || !stValidContextID(a.WorkspaceID) || !stValidContextID(a.GroupID) {
		return false
	}
	norm, err := stNormScope(sec.Scope, sec.WorkspaceID, sec.GroupID)
	if err != nil {
		return false
	}
	return norm == ScopeGlobal || sec.WorkspaceID == a.WorkspaceID
}

// stAttached reports whether sec is validly attached to ctx's group.
func stAttached(s *State, sec SecretInfo, ctx Context) bool {
	if ctx.WorkspaceID == "" || ctx.GroupID == "" {
		return false
	}
	for _, a := range s.Attachments {
		if a.SecretID == sec.ID && a.WorkspaceID == ctx.WorkspaceID && a.GroupID == ctx.GroupID && stAttachmentValid(sec, a) {
			return true
		}
	}
	return false
}

// stSecretAdmits reports whether sec may be used from ctx: by its own scope
// or by an attachment to ctx's group.
func stSecretAdmits(s *State, sec SecretInfo, ctx Context) bool {
	return stAdmitLevel(sec.Scope, sec.WorkspaceID, sec.GroupID, ctx) != stLevelNone || stAttached(s, sec, ctx)
}

// stSecretUsableByScope reports whether sec may back an item (credential or
// binding) of the given scope, i.e. sec is usable from every context that
// scope admits. A workspace- or group-scoped secret never reaches a wider or
// different scope.
func stSecretUsableByScope(s *State, sec SecretInfo, scope, ws, group string) bool {
	secScope, err := stNormScope(sec.Scope, sec.WorkspaceID, sec.GroupID)
	if err != nil {
		return false
	}
	switch secScope {
	case ScopeGlobal:
		return true
	case ScopeWorkspace:
		return (scope == ScopeWorkspace || scope == ScopeGroup) && ws == sec.WorkspaceID
	}
	// group-scoped secret: only its own group, or a group it is attached to.
	if scope != ScopeGroup {
		return false
	}
	if ws == sec.WorkspaceID && group == sec.GroupID {
		return true
	}
	return stAttached(s, sec, Context{WorkspaceID: ws, GroupID: group})
}

// ---- hosts ----

// EffectiveHost intersects a credential's hosts with a capability's hosts and
// returns the single concrete host the request goes to. A wildcard capability
// host ("*.myshopify.com") matches a concrete credential host at a dot
// boundary; wildcards never produce a host by themselves. No host or more than
// one is a PolicyViolation.
func EffectiveHost(credHosts, capHosts []string) (string, error) {
	var found []string
	for _, ch := range credHosts {
		if IsWildcardHost(ch) {
			continue
		}
		h, err := NormalizeHost(ch, false)
		if err != nil || h != ch {
			continue
		}
		for _, pat := range capHosts {
			if MatchHostPattern(pat, h) && !slices.Contains(found, h) {
				found = append(found, h)
			}
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		e := Errorf(ClassPolicyViolation, "the credential's hosts (%s) do not cover the capability's hosts (%s)",
			strings.Join(credHosts, ", "), strings.Join(capHosts, ", "))
		for _, pat := range capHosts {
			if IsWildcardHost(pat) {
				return "", e.WithHint("bind a concrete host to the credential, e.g. --host <name>%s", strings.TrimPrefix(pat, "*"))
			}
		}
		return "", e
	default:
		return "", Errorf(ClassPolicyViolation, "the capability matches several credential hosts (%s)", strings.Join(found, ", ")).
			WithHint("use a credential bound to one host")
	}
}

// ---- grants ----

// CapabilityPatternValid reports whether p is "*", "<provider>/*" or an
// exact capability id.
func CapabilityPatternValid(p string) bool {
	if p == "*" {
		return true
	}
	if prov, ok := strings.CutSuffix(p, "/*"); ok {
		return regValidProviderID(prov)
	}
	return regValidCapabilityID(p)
}

// stPatternRank: how specifically pattern p matches capID (0 = no match).
func stPatternRank(p, capID string) int {
	switch {
	case p == capID:
		return 3
	case p == "*":
		return 1
	}
	if prov, ok := strings.CutSuffix(p, "/*"); ok && strings.HasPrefix(capID, prov+"/") {
		return 2
	}
	return 0
}

func stValidUserName(u string) bool {
	if u == "" || len(u) > 64 {
		return false
	}
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] == 0x7f {
			return false
		}
	}
	return true
}

// AddGrant lets an agent user invoke capabilities matching g.Capability in
// g's context. A grant for the same uid and pattern is replaced.
func AddGrant(s *State, g Grant) error {
	if !stValidUserName(g.User) {
		return Errorf(ClassInvalidRequest, "invalid user name %q", g.User)
	}
	if g.UID < 0 {
		return Errorf(ClassInvalidRequest, "invalid uid %d", g.UID)
	}
	if !CapabilityPatternValid(g.Capability) {
		return Errorf(ClassInvalidRequest, "invalid capability pattern %q", g.Capability).
			WithHint("use \"*\", \"<provider>/*\" or an exact capability id")
	}
	if g.WorkspaceID != "" && !stValidContextID(g.WorkspaceID) {
		return Errorf(ClassInvalidRequest, "invalid workspace id %q", g.WorkspaceID)
	}
	if g.GroupID != "" && (g.WorkspaceID == "" || !stValidContextID(g.GroupID)) {
		return Errorf(ClassInvalidRequest, "a group grant needs a valid workspace and group id")
	}
	for i := range s.Grants {
		if s.Grants[i].UID == g.UID && s.Grants[i].Capability == g.Capability {
			s.Grants[i] = g
			return nil
		}
	}
	s.Grants = append(s.Grants, g)
	s.Normalize()
	return nil
}

// RevokeGrant removes the grants of user (a name or a decimal uid) whose
// pattern equals capPattern, or all of the user's grants when capPattern is
// empty. It returns how many were removed.
func RevokeGrant(s *State, user, capPattern string) (int, error) {
	if user == "" {
		return 0, Errorf(ClassInvalidRequest, "no user given")
	}
	if capPattern != "" && !CapabilityPatternValid(capPattern) {
		return 0, Errorf(ClassInvalidRequest, "invalid capability pattern %q", capPattern)
	}
	n := 0
	s.Grants = slices.DeleteFunc(s.Grants, func(g Grant) bool {
		match := (g.User == user || strconv.Itoa(g.UID) == user) && (capPattern == "" || g.Capability == capPattern)
		if match {
			n++
		}
		return match
	})
	return n, nil
}

// GrantFor returns the grant that lets uid invoke capID: the most specific
// matching pattern wins (exact id > "provider/*" > "*").
func GrantFor(s *State, uid int, capID string) (*Grant, bool) {
	var best *Grant
	bestRank := 0
	for i := range s.Grants {
		g := &s.Grants[i]
		if g.UID != uid {
			continue
		}
		if r := stPatternRank(g.Capability, capID); r > bestRank {
			best, bestRank = g, r
		}
	}
	if best == nil {
		return nil, false
	}
	cp := *best
	return &cp, true
}

// ---- policies ----

// stMaxResponseBlock bounds a policy's responseBlock list.
const stMaxResponseBlock = 256

// SetPolicy sets the operator policy of one capability; the zero policy
// removes it. Limits must be non-negative (0 = the default).
func SetPolicy(s *State, capID string, p CapPolicy) error {
	if !regValidCapabilityID(capID) {
		return Errorf(ClassInvalidRequest, "invalid capability id %q", capID)
	}
	if p.RateLimitPerMinute < 0 || p.MaxRequestBodyBytes < 0 || p.MaxResponseBodyBytes < 0 {
		return Errorf(ClassInvalidRequest, "policy limits must not be negative")
	}
	if len(p.ResponseBlock) > stMaxResponseBlock {
		return Errorf(ClassInvalidRequest, "at most %d responseBlock entries", stMaxResponseBlock)
	}
	for _, b := range p.ResponseBlock {
		if b == "" || len(b) > 1024 || strings.ContainsFunc(b, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return Errorf(ClassInvalidRequest, "responseBlock entries must be non-empty printable text")
		}
	}
	if s.Policies == nil {
		s.Policies = map[string]CapPolicy{}
	}
	if p.RateLimitPerMinute == 0 && p.MaxRequestBodyBytes == 0 && p.MaxResponseBodyBytes == 0 && len(p.ResponseBlock) == 0 {
		delete(s.Policies, capID)
		return nil
	}
	p.ResponseBlock = slices.Clone(p.ResponseBlock)
	s.Policies[capID] = p
	return nil
}

// ---- bindings and attachments ----

// stBindingPlaceholder decides which placeholder of cred a bound secret
// fills: the registry placeholder of its canonical name, or the only
// placeholder of a single-secret credential.
func stBindingPlaceholder(reg *Registry, cred *Credential, sec SecretInfo) (string, error) {
	if reg != nil {
		if p, _, ph, ok := reg.ProviderForSecret(sec.Name); ok && p.Provider == cred.Provider {
			if _, has := cred.Secrets[ph]; has {
				return ph, nil
			}
		}
	}
	if len(cred.Secrets) == 1 {
		for ph := range cred.Secrets {
			return ph, nil
		}
	}
	return "", Errorf(ClassInvalidRequest, "cannot tell which of credential %s's secrets secret %s replaces", cred.ID, sec.ID)
}

// stCheckBindingSecret checks that sec may be bound to capability c: pinned
// to the capability's registry provider, or unpinned for custom providers.
func stCheckBindingSecret(reg *Registry, sec SecretInfo, c *Capability) error {
	pin := stPin(reg, sec)
	_, registryProvider := reg.Provider(c.Provider)
	switch {
	case registryProvider && pin != c.Provider:
		if pin == "" {
			return Errorf(ClassPolicyViolation, "secret %s is not pinned to provider %s", stSecLabel(sec), c.Provider).
				WithHint("store the key under one of %s's canonical secret names", c.Provider)
		}
		return Errorf(ClassPolicyViolation, "secret %s is pinned to provider %s, not %s", stSecLabel(sec), pin, c.Provider).
			WithHint("bind a secret stored under one of %s's canonical names", c.Provider)
	case !registryProvider && pin != "":
		return Errorf(ClassPolicyViolation, "secret %s is pinned to provider %s and cannot back custom provider %s", stSecLabel(sec), pin, c.Provider).
			WithHint("a registry key only goes to its provider's hosts; bind a secret stored under a non-registry name")
	}
	return nil
}

// Bind makes capability b.Capability use secret b.SecretID in b's scope
// instead of its credential's own secret. An existing binding for the same
// capability, scope and consumer is replaced.
func Bind(reg *Registry, s *State, secrets []SecretInfo, b Binding) error {
	c, _, err := ResolveCapability(reg, s, b.Capability)
	if err != nil {
		return err
	}
	scope, err := stNormScope(b.Scope, b.WorkspaceID, b.GroupID)
	if err != nil {
		return err
	}
	b.Scope = scope
	if b.Consumer != "" && !stValidUserName(b.Consumer) {
		return Errorf(ClassInvalidRequest, "invalid consumer %q", b.Consumer)
	}
	sec, ok := stFindSecret(secrets, b.SecretID)
	if !ok {
		return Errorf(ClassSecretNotFound, "no secret %q", b.SecretID).WithHint("list secrets with: aivault secrets list")
	}
	if err := stCheckBindingSecret(reg, sec, c); err != nil {
		return err
	}
	if !stSecretUsableByScope(s, sec, b.Scope, b.WorkspaceID, b.GroupID) {
		return Errorf(ClassPolicyViolation, "secret %s (%s scope) cannot be used from a %s binding's scope", stSecLabel(sec), cmp.Or(sec.Scope, ScopeGlobal), b.Scope)
	}
	if c.Credential != "" {
		cred, ok := s.Credential(c.Credential)
		if !ok {
			return Errorf(ClassCredentialNotFound, "capability %s uses missing credential %s", c.ID, c.Credential)
		}
		if _, err := stBindingPlaceholder(reg, cred, sec); err != nil {
			return err
		}
	} else if p, ok := reg.Provider(c.Provider); ok && len(p.VaultSecrets) > 1 {
		if pp, _, _, ok := reg.ProviderForSecret(sec.Name); !ok || pp.Provider != p.Provider {
			return Errorf(ClassInvalidRequest, "provider %s has several secrets; bind a secret stored under one of its canonical names", p.Provider)
		}
	}
	for i := range s.Bindings {
		o := &s.Bindings[i]
		if o.Capability == b.Capability && o.Scope == b.Scope && o.WorkspaceID == b.WorkspaceID && o.GroupID == b.GroupID && o.Consumer == b.Consumer {
			*o = b
			return nil
		}
	}
	s.Bindings = append(s.Bindings, b)
	s.Normalize()
	return nil
}

// Unbind removes the bindings of b.Capability in b's scope and consumer (and,
// when b.SecretID is set, only those naming that secret). It returns how many
// were removed.
func Unbind(s *State, b Binding) (int, error) {
	scope, err := stNormScope(b.Scope, b.WorkspaceID, b.GroupID)
	if err != nil {
		return 0, err
	}
	n := 0
	s.Bindings = slices.DeleteFunc(s.Bindings, func(o Binding) bool {
		oScope := cmp.Or(o.Scope, ScopeGlobal)
		match := o.Capability == b.Capability && oScope == scope && o.WorkspaceID == b.WorkspaceID &&
			o.GroupID == b.GroupID && o.Consumer == b.Consumer && (b.SecretID == "" || o.SecretID == b.SecretID)
		if match {
			n++
		}
		return match
	})
	return n, nil
}

// AttachSecret makes a secret usable from one group (and preferred there).
// A secret is only ever attached within its own workspace; a global secret
// may be attached to any group.
func AttachSecret(s *State, secrets []SecretInfo, a Attachment) error {
	sec, ok := stFindSecret(secrets, a.SecretID)
	if !ok {
		return Errorf(ClassSecretNotFound, "no secret %q", a.SecretID)
	}
	if !stValidContextID(a.WorkspaceID) || !stValidContextID(a.GroupID) {
		return Errorf(ClassInvalidRequest, "attach-group needs valid workspace and group ids")
	}
	if !stAttachmentValid(sec, a) {
		return Errorf(ClassPolicyViolation, "secret %s belongs to another workspace and cannot be attached to %s/%s", stSecLabel(sec), a.WorkspaceID, a.GroupID).
			WithHint("a secret is only shared within its own workspace (it is %s); store a separate one for %s", stScopeLabel(sec.Scope, sec.WorkspaceID, sec.GroupID), a.WorkspaceID)
	}
	if slices.Contains(s.Attachments, a) {
		return nil
	}
	s.Attachments = append(s.Attachments, a)
	s.Normalize()
	return nil
}

// DetachSecret removes an attachment and reports whether one was removed.
func DetachSecret(s *State, a Attachment) bool {
	n := len(s.Attachments)
	s.Attachments = slices.DeleteFunc(s.Attachments, func(o Attachment) bool { return o == a })
	return len(s.Attachments) != n
}
