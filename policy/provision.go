package policy

import (
	"cmp"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// ProvisionReport says what Provision did for one stored secret.
type ProvisionReport struct {
	// Provider is the registry provider the secret belongs to ("" when the
	// secret's name is not a registry name and nothing was provisioned).
	Provider string `json:"provider"`
	// Credential is the auto credential id for the secret's scope.
	Credential string `json:"credential,omitempty"`
	// Ready is true when the credential now exists and is usable.
	Ready bool `json:"ready"`
	// Missing lists canonical secret names still to be stored in the same
	// scope before the credential can be provisioned.
	Missing []string `json:"missing,omitempty"`
	// Capabilities is how many registry capabilities the credential serves.
	Capabilities int `json:"capabilities"`
	// Hint says what the operator should do next when not Ready.
	Hint string `json:"hint,omitempty"`
}

// PinFor returns the provider id a new secret with this name is pinned to
// (canonical names and aliases), or "" when the name is not a registry name.
func PinFor(reg *Registry, name string) string {
	if p, _, _, ok := reg.ProviderForSecret(name); ok {
		return p.Provider
	}
	return ""
}

// stAutoCredID is the id of the auto credential of provider in a scope:
// "<provider>", "<provider>@<workspace>" or "<provider>@<workspace>/<group>".
func stAutoCredID(provider, scope, ws, group string) string {
	switch scope {
	case ScopeWorkspace:
		return provider + "@" + ws
	case ScopeGroup:
		return provider + "@" + ws + "/" + group
	}
	return provider
}

func stConcreteHosts(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if !IsWildcardHost(h) {
			out = append(out, h)
		}
	}
	return out
}

// Provision (re)creates the auto credential of a registry provider after the
// secret changed was created or rotated. changed must carry a canonical name
// or alias; the credential lives in changed's exact scope and is created once
// every secret of the provider exists in that scope (otherwise the report
// lists what is missing). Per-tenant providers (only wildcard hosts) are never
// auto-provisioned: the operator binds a concrete host with a credential. An
// operator-made credential with the auto id is never overwritten (Conflict).
func Provision(reg *Registry, s *State, secrets []SecretInfo, changed SecretInfo) (*ProvisionReport, error) {
	p, _, _, ok := reg.ProviderForSecret(changed.Name)
	if !ok {
		return &ProvisionReport{}, nil
	}
	if changed.Pinned != "" && changed.Pinned != p.Provider {
		return nil, Errorf(ClassPolicyViolation, "secret %s is named for provider %s but pinned to %s", changed.ID, p.Provider, changed.Pinned)
	}
	scope, err := stNormScope(changed.Scope, changed.WorkspaceID, changed.GroupID)
	if err != nil {
		return nil, err
	}
	rep := &ProvisionReport{
		Provider:   p.Provider,
		Credential: stAutoCredID(p.Provider, scope, changed.WorkspaceID, changed.GroupID),
	}
	pool := secrets
	if _, ok := stFindSecret(secrets, changed.ID); !ok {
		pool = append(slices.Clone(secrets), changed)
	}
	chosen := make(map[string]string)
	for _, canon := range slices.Sorted(maps.Keys(p.VaultSecrets)) {
		var best *SecretInfo
		for i := range pool {
			sec := &pool[i]
			secScope, err := stNormScope(sec.Scope, sec.WorkspaceID, sec.GroupID)
			if err != nil || secScope != scope || sec.WorkspaceID != changed.WorkspaceID || sec.GroupID != changed.GroupID {
				continue
			}
			if sp, c, _, ok := reg.ProviderForSecret(sec.Name); !ok || sp.Provider != p.Provider || c != canon {
				continue
			}
			if stPin(reg, *sec) != p.Provider {
				continue
			}
			if best == nil || stProvisionPrefer(*sec, *best, changed.ID, canon) {
				best = sec
			}
		}
		if best == nil {
			rep.Missing = append(rep.Missing, canon)
			continue
		}
		chosen[p.VaultSecrets[canon]] = best.ID
	}
	if len(rep.Missing) > 0 {
		rep.Hint = "store " + strings.Join(rep.Missing, " and ") + " in the same scope to enable " + p.Provider
		return rep, nil
	}
	hosts := stConcreteHosts(p.Hosts)
	if len(hosts) == 0 {
		rep.Credential = ""
		rep.Hint = "provider " + p.Provider + " is per-tenant: create a credential bound to your host, e.g. --host <name>" +
			strings.TrimPrefix(p.Hosts[0], "*")
		return rep, nil
	}
	cred := Credential{
		ID:          rep.Credential,
		Provider:    p.Provider,
		Secrets:     chosen,
		Auth:        regCopyAuth(p.Auth),
		Hosts:       hosts,
		Scope:       scope,
		WorkspaceID: changed.WorkspaceID,
		GroupID:     changed.GroupID,
		Auto:        true,
	}
	if old, ok := s.Credential(cred.ID); ok {
		if !old.Auto {
			return rep, Errorf(ClassConflict, "credential %s already exists and was made by the operator; not replacing it", cred.ID).
				WithHint("delete or rename credential %s to let aivault manage it", cred.ID)
		}
		*old = cred
	} else {
		s.Credentials = append(s.Credentials, cred)
	}
	s.Normalize()
	rep.Ready = true
	for _, c := range p.Capabilities {
		if _, err := EffectiveHost(cred.Hosts, c.Allow.Hosts); err == nil {
			rep.Capabilities++
		}
	}
	return rep, nil
}

// stProvisionPrefer: the secret just changed wins, then one stored under the
// canonical name (over an alias), then the smallest id (deterministic).
func stProvisionPrefer(a, b SecretInfo, changedID, canon string) bool {
	if (a.ID == changedID) != (b.ID == changedID) {
		return a.ID == changedID
	}
	if (a.Name == canon) != (b.Name == canon) {
		return a.Name == canon
	}
	return a.ID < b.ID
}

// Unprovision drops every credential, binding and attachment that references
// the deleted secret. An auto credential that lost its secret is provisioned
// again when another secret (an alias) can take its place in the same scope.
// Custom capabilities are kept: they work again once their credential is
// recreated.
func Unprovision(reg *Registry, s *State, secrets []SecretInfo, deletedID string) {
	remaining := slices.DeleteFunc(slices.Clone(secrets), func(sec SecretInfo) bool { return sec.ID == deletedID })
	var reprovision []Credential
	s.Credentials = slices.DeleteFunc(s.Credentials, func(c Credential) bool {
		for _, id := range c.Secrets {
			if id == deletedID {
				if c.Auto {
					reprovision = append(reprovision, c)
				}
				return true
			}
		}
		return false
	})
	s.Bindings = slices.DeleteFunc(s.Bindings, func(b Binding) bool { return b.SecretID == deletedID })
	s.Attachments = slices.DeleteFunc(s.Attachments, func(a Attachment) bool { return a.SecretID == deletedID })
	for _, c := range reprovision {
		for _, sec := range remaining {
			secScope, err := stNormScope(sec.Scope, sec.WorkspaceID, sec.GroupID)
			if err != nil || secScope != c.Scope || sec.WorkspaceID != c.WorkspaceID || sec.GroupID != c.GroupID {
				continue
			}
			if PinFor(reg, sec.Name) != c.Provider {
				continue
			}
			if rep, err := Provision(reg, s, remaining, sec); err == nil && rep.Ready {
				break
			}
		}
	}
	s.Normalize()
}

// stValidCredentialID: operator credential ids are [a-z0-9][a-z0-9._-]{0,63};
// '@' and '/' are reserved for auto credentials.
func stValidCredentialID(id string) bool {
	if id == "" || len(id) > 64 || !regIsLowerAlnum(id[0]) {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !regIsLowerAlnum(id[i]) && strings.IndexByte("._-", id[i]) < 0 {
			return false
		}
	}
	return true
}

func stAuthIsZero(a Auth) bool { return reflect.ValueOf(a).IsZero() }

// ValidateCredential checks an operator-made credential and fills in its
// defaults (global scope; for registry providers the registry's auth and, when
// no host is given, the registry's concrete hosts).
//
// Pinned secrets only ever reach their provider's registry hosts: a
// credential using a secret pinned to X must have Provider X and hosts within
// X's registry patterns, and registry-provider credentials take their auth
// from the registry (a different explicit auth is refused). Custom providers
// need an explicit auth and at least one host, and may not use pinned
// secrets. A per-tenant registry host ("*.myshopify.com") must be bound to a
// concrete host under it. Every secret must be usable from every context the
// credential's scope admits.
func ValidateCredential(reg *Registry, s *State, secrets []SecretInfo, c *Credential) error {
	if c == nil {
		return Errorf(ClassInvalidRequest, "nil credential")
	}
	if !stValidCredentialID(c.ID) {
		return Errorf(ClassInvalidRequest, "invalid credential id %q", c.ID).
			WithHint("credential ids are lower-case letters, digits, '.', '_' and '-'")
	}
	if !regValidProviderID(c.Provider) {
		return Errorf(ClassInvalidRequest, "invalid provider id %q", c.Provider)
	}
	scope, err := stNormScope(c.Scope, c.WorkspaceID, c.GroupID)
	if err != nil {
		return err
	}
	c.Scope = scope
	if len(c.Secrets) == 0 {
		return Errorf(ClassInvalidRequest, "credential %s names no secret", c.ID)
	}
	regNormalizeAuth(&c.Auth)
	hosts := make([]string, 0, len(c.Hosts))
	for _, h := range c.Hosts {
		n, err := NormalizeHost(h, false)
		if err != nil {
			return Errorf(ClassInvalidRequest, "credential host %q is not a plain DNS name (no scheme, port, path or wildcard)", h)
		}
		// Numeric addresses and local or metadata names can never be where
		// a secret goes: refused when named, not only at invoke time.
		if err := CheckHostName(n); err != nil {
			return err
		}
		if !slices.Contains(hosts, n) {
			hosts = append(hosts, n)
		}
	}
	secs := make(map[string]SecretInfo, len(c.Secrets))
	for ph, id := range c.Secrets {
		if !regValidPlaceholder(ph) {
			return Errorf(ClassInvalidRequest, "invalid placeholder %q", ph)
		}
		sec, ok := stFindSecret(secrets, id)
		if !ok {
			return Errorf(ClassSecretNotFound, "no secret %q", id).WithHint("list secrets with: aivault secrets list")
		}
		if !stSecretUsableByScope(s, sec, c.Scope, c.WorkspaceID, c.GroupID) {
			return Errorf(ClassPolicyViolation, "secret %s (%s scope) cannot back a %s-scoped credential", stSecLabel(sec), cmp.Or(sec.Scope, ScopeGlobal), c.Scope).
				WithHint("a workspace or group secret is only usable inside its own workspace or group")
		}
		secs[ph] = sec
	}

	p, isRegistry := reg.Provider(c.Provider)
	if !isRegistry {
		// Custom provider.
		for _, sec := range secs {
			if pin := stPin(reg, sec); pin != "" {
				return Errorf(ClassPolicyViolation, "secret %s is pinned to provider %s; it can only be sent to %s's registry hosts", stSecLabel(sec), pin, pin).
					WithHint("use --provider %s, or store the key under a non-registry name", pin)
			}
		}
		if c.Auth.Kind() == "" {
			return Errorf(ClassInvalidRequest, "custom provider %s needs exactly one explicit auth strategy", c.Provider)
		}
		if len(hosts) == 0 {
			return Errorf(ClassInvalidRequest, "custom provider %s needs at least one --host", c.Provider)
		}
		c.Hosts = hosts
		return regValidateAuth(c.Auth, stKeySet(c.Secrets), c.Hosts, true)
	}

	// Registry provider: auth and hosts come from the registry.
	if stAuthIsZero(c.Auth) {
		c.Auth = regCopyAuth(p.Auth)
	} else if !reflect.DeepEqual(c.Auth, p.Auth) {
		return Errorf(ClassPolicyViolation, "provider %s takes its auth from the registry; a different auth is refused", p.Provider).
			WithHint("omit the auth options, or use a custom provider name with an unpinned secret")
	}
	if len(hosts) == 0 {
		hosts = stConcreteHosts(p.Hosts)
		if len(hosts) == 0 {
			return Errorf(ClassInvalidRequest, "provider %s is per-tenant: give the host to bind", p.Provider).
				WithHint("e.g. --host <name>%s", strings.TrimPrefix(p.Hosts[0], "*"))
		}
	}
	for _, h := range hosts {
		if !regHostWithin(h, p.Hosts) {
			return Errorf(ClassPolicyViolation, "host %s is not one of provider %s's hosts (%s)", h, p.Provider, strings.Join(p.Hosts, ", ")).
				WithHint("a registry provider's key only goes to its registry hosts; for another API use your own provider name, --auth and a secret stored under a non-registry name")
		}
	}
	c.Hosts = hosts
	want := make(map[string]string) // placeholder -> canonical name
	for name, ph := range p.VaultSecrets {
		want[ph] = name
	}
	for ph := range c.Secrets {
		if _, ok := want[ph]; !ok {
			return Errorf(ClassInvalidRequest, "provider %s has no secret placeholder %q", p.Provider, ph)
		}
	}
	for ph, name := range want {
		if _, ok := c.Secrets[ph]; !ok {
			return Errorf(ClassInvalidRequest, "provider %s also needs a secret for %s (placeholder %q)", p.Provider, name, ph)
		}
	}
	for ph, sec := range secs {
		pin := stPin(reg, sec)
		if pin != "" && pin != p.Provider {
			return Errorf(ClassPolicyViolation, "secret %s is pinned to provider %s, not %s", stSecLabel(sec), pin, p.Provider).
				WithHint("store %s's key under its canonical name (%s)", p.Provider, strings.Join(slices.Sorted(maps.Keys(p.VaultSecrets)), ", "))
		}
		if sp, _, sph, ok := reg.ProviderForSecret(sec.Name); ok && sp.Provider == p.Provider && sph != ph {
			return Errorf(ClassInvalidRequest, "secret %s fills placeholder %q, not %q", sec.Name, sph, ph)
		}
	}
	return nil
}

func stKeySet(m map[string]string) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// AddCredential validates an operator-made credential and inserts it
// (Conflict if the id exists).
func AddCredential(reg *Registry, s *State, secrets []SecretInfo, c Credential) error {
	c.Secrets = maps.Clone(c.Secrets)
	c.Hosts = slices.Clone(c.Hosts)
	c.Auth = regCopyAuth(c.Auth)
	c.Auto = false
	if err := ValidateCredential(reg, s, secrets, &c); err != nil {
		return err
	}
	if _, ok := s.Credential(c.ID); ok {
		return Errorf(ClassConflict, "credential %s already exists", c.ID).
			WithHint("delete it first: aivault credential delete %s", c.ID)
	}
	s.Credentials = append(s.Credentials, c)
	s.Normalize()
	return nil
}

// DeleteCredential removes a credential. It refuses while custom
// capabilities use it, naming them.
func DeleteCredential(s *State, id string) error {
	if _, ok := s.Credential(id); !ok {
		return Errorf(ClassCredentialNotFound, "no credential %q", id).WithHint("list credentials with: aivault credential list")
	}
	var users []string
	for _, c := range s.Capabilities {
		if c.Credential == id {
			users = append(users, c.ID)
		}
	}
	if len(users) > 0 {
		return Errorf(ClassConflict, "credential %s is used by custom capabilities %s", id, strings.Join(users, ", ")).
			WithHint("delete those capabilities first: aivault capability delete <id>")
	}
	s.Credentials = slices.DeleteFunc(s.Credentials, func(c Credential) bool { return c.ID == id })
	return nil
}

// AddCustomCapability adds an operator-made capability. It names an existing
// credential and exactly one host within that credential's hosts; its id is
// "<credential's provider>/<name>" and must not collide with a registry or
// custom capability; methods and path prefixes are validated like the
// registry's.
func AddCustomCapability(reg *Registry, s *State, c Capability) error {
	c = regCopyCapability(c)
	if !regValidCapabilityID(c.ID) {
		return Errorf(ClassInvalidRequest, "invalid capability id %q", c.ID).WithHint("capability ids are <provider>/<name>")
	}
	if _, ok := reg.Capability(c.ID); ok {
		return Errorf(ClassConflict, "capability %s is a registry capability", c.ID)
	}
	if _, ok := s.CustomCapability(c.ID); ok {
		return Errorf(ClassConflict, "capability %s already exists", c.ID)
	}
	if c.Credential == "" {
		return Errorf(ClassInvalidRequest, "a custom capability needs a credential")
	}
	cred, ok := s.Credential(c.Credential)
	if !ok {
		return Errorf(ClassCredentialNotFound, "no credential %q", c.Credential).WithHint("list credentials with: aivault credential list")
	}
	if c.Provider == "" {
		c.Provider = cred.Provider
	}
	if c.Provider != cred.Provider {
		return Errorf(ClassInvalidRequest, "capability provider %s differs from credential %s's provider %s", c.Provider, cred.ID, cred.Provider)
	}
	if prov, _, _ := strings.Cut(c.ID, "/"); prov != c.Provider {
		return Errorf(ClassInvalidRequest, "capability id %s must start with %s/", c.ID, c.Provider)
	}
	if len(c.Allow.Hosts) != 1 {
		return Errorf(ClassInvalidRequest, "a custom capability names exactly one host")
	}
	if n, err := NormalizeHost(c.Allow.Hosts[0], false); err == nil {
		c.Allow.Hosts[0] = n
		if err := CheckHostName(n); err != nil {
			return err
		}
	}
	if err := regValidateAllow(c.Allow, false); err != nil {
		return err
	}
	if !regHostWithin(c.Allow.Hosts[0], cred.Hosts) {
		return Errorf(ClassPolicyViolation, "host %s is not one of credential %s's hosts (%s)", c.Allow.Hosts[0], cred.ID, strings.Join(cred.Hosts, ", ")).
			WithHint("a custom capability names one of its credential's hosts; the credential decides where its secrets may go")
	}
	s.Capabilities = append(s.Capabilities, c)
	s.Normalize()
	return nil
}

// DeleteCustomCapability removes an operator-made capability with its policy
// and bindings.
func DeleteCustomCapability(s *State, id string) error {
	if _, ok := s.CustomCapability(id); !ok {
		return Errorf(ClassCapabilityNotFound, "no custom capability %q", id).
			WithHint("registry capabilities cannot be deleted; list custom ones with: aivault capability list")
	}
	s.Capabilities = slices.DeleteFunc(s.Capabilities, func(c Capability) bool { return c.ID == id })
	delete(s.Policies, id)
	s.Bindings = slices.DeleteFunc(s.Bindings, func(b Binding) bool { return b.Capability == id })
	return nil
}

// SelectCredential picks the credential an invocation of cap from ctx uses,
// and the final placeholder → secret id map.
//
// Candidates are the credentials of the capability's provider (a custom
// capability: exactly its credential; explicit: exactly that one) whose scope
// admits ctx. The most specific level wins: group-scoped for ctx's group (or
// using a secret attached to that group) > workspace-scoped for ctx's
// workspace > global. Several candidates at that level are Ambiguous.
// Bindings for the capability (most specific scope admitting ctx) then
// replace the secret of one placeholder. Every final secret must exist, be
// usable from ctx, and respect its pin; registry-provider credentials get the
// registry's current auth and must stay within its hosts. Bindings naming a
// Consumer are ignored here: Context carries no consumer.
func SelectCredential(reg *Registry, s *State, secrets []SecretInfo, cap *Capability, ctx Context, explicit string) (*Credential, map[string]string, error) {
	if cap == nil {
		return nil, nil, Errorf(ClassCapabilityNotFound, "no capability")
	}
	if ctx.GroupID != "" && ctx.WorkspaceID == "" {
		return nil, nil, Errorf(ClassInvalidRequest, "a group context needs a workspace")
	}
	var cands []*Credential
	switch {
	case cap.Credential != "":
		if explicit != "" && explicit != cap.Credential {
			return nil, nil, Errorf(ClassPolicyViolation, "capability %s always uses credential %s", cap.ID, cap.Credential)
		}
		c, ok := s.Credential(cap.Credential)
		if !ok {
			return nil, nil, Errorf(ClassCredentialNotFound, "capability %s uses missing credential %s", cap.ID, cap.Credential).
				WithHint("recreate credential %s, or delete the capability", cap.Credential)
		}
		if c.Provider != cap.Provider {
			return nil, nil, Errorf(ClassPolicyViolation, "capability %s (provider %s) names credential %s of provider %s", cap.ID, cap.Provider, c.ID, c.Provider)
		}
		cands = []*Credential{c}
	case explicit != "":
		c, ok := s.Credential(explicit)
		if !ok {
			return nil, nil, Errorf(ClassCredentialNotFound, "no credential %q", explicit).WithHint("list credentials with: aivault credential list")
		}
		if c.Provider != cap.Provider {
			return nil, nil, Errorf(ClassPolicyViolation, "credential %s is for provider %s, not %s", c.ID, c.Provider, cap.Provider)
		}
		cands = []*Credential{c}
	default:
		for i := range s.Credentials {
			if s.Credentials[i].Provider == cap.Provider {
				cands = append(cands, &s.Credentials[i])
			}
		}
	}
	bestLevel := stLevelNone
	var best []*Credential
	for _, c := range cands {
		lvl := stCredLevel(s, secrets, c, ctx)
		switch {
		case lvl == stLevelNone:
		case lvl > bestLevel:
			bestLevel, best = lvl, []*Credential{c}
		case lvl == bestLevel:
			best = append(best, c)
		}
	}
	switch {
	case len(best) == 0 && (cap.Credential != "" || explicit != ""):
		return nil, nil, Errorf(ClassCredentialNotFound, "credential %s is not usable from this workspace/group", cands[0].ID).
			WithHint("credential %s is %s", cands[0].ID, stScopeLabel(cands[0].Scope, cands[0].WorkspaceID, cands[0].GroupID))
	case len(best) == 0:
		e := Errorf(ClassCredentialNotFound, "no credential for provider %s is usable here", cap.Provider)
		if p, ok := reg.Provider(cap.Provider); ok {
			return nil, nil, e.WithHint("store %s (aivault secrets create %s) in this scope, or create a credential",
				strings.Join(slices.Sorted(maps.Keys(p.VaultSecrets)), " and "), slices.Sorted(maps.Keys(p.VaultSecrets))[0])
		}
		return nil, nil, e
	case len(best) > 1:
		ids := make([]string, len(best))
		for i, c := range best {
			ids[i] = c.ID
		}
		slices.Sort(ids)
		return nil, nil, Errorf(ClassAmbiguous, "several credentials fit capability %s here: %s", cap.ID, strings.Join(ids, ", ")).
			WithHint("pass --credential <id>, or delete the ones you do not need")
	}
	cred := *best[0]
	cred.Secrets = maps.Clone(cred.Secrets)
	cred.Hosts = slices.Clone(cred.Hosts)
	cred.Auth = regCopyAuth(cred.Auth)
	final := maps.Clone(cred.Secrets)

	// Bindings.
	bLevel := stLevelNone
	var bound []Binding
	for _, b := range s.Bindings {
		if b.Capability != cap.ID || b.Consumer != "" {
			continue
		}
		lvl := stAdmitLevel(b.Scope, b.WorkspaceID, b.GroupID, ctx)
		switch {
		case lvl == stLevelNone:
		case lvl > bLevel:
			bLevel, bound = lvl, []Binding{b}
		case lvl == bLevel:
			bound = append(bound, b)
		}
	}
	if len(bound) > 1 {
		return nil, nil, Errorf(ClassAmbiguous, "several bindings of capability %s apply here", cap.ID).
			WithHint("remove one with: aivault capability unbind")
	}
	if len(bound) == 1 {
		sec, ok := stFindSecret(secrets, bound[0].SecretID)
		if !ok {
			return nil, nil, Errorf(ClassSecretNotFound, "capability %s is bound to missing secret %s", cap.ID, bound[0].SecretID)
		}
		if err := stCheckBindingSecret(reg, sec, cap); err != nil {
			return nil, nil, err
		}
		ph, err := stBindingPlaceholder(reg, &cred, sec)
		if err != nil {
			return nil, nil, err
		}
		final[ph] = sec.ID
	}

	// Defence in depth: re-check every secret against pin and scope, and
	// registry credentials against the current registry.
	p, isRegistry := reg.Provider(cred.Provider)
	for _, id := range final {
		sec, ok := stFindSecret(secrets, id)
		if !ok {
			return nil, nil, Errorf(ClassSecretNotFound, "credential %s uses missing secret %s", cred.ID, id).
				WithHint("store the secret again, or delete the credential")
		}
		if !stSecretAdmits(s, sec, ctx) {
			return nil, nil, Errorf(ClassPolicyViolation, "secret %s is not usable from this workspace/group", sec.ID)
		}
		if pin := stPin(reg, sec); pin != "" && (pin != cred.Provider || !isRegistry) {
			return nil, nil, Errorf(ClassPolicyViolation, "secret %s is pinned to provider %s and cannot be used by credential %s", sec.ID, pin, cred.ID)
		}
	}
	if isRegistry {
		cred.Auth = regCopyAuth(p.Auth)
		for _, h := range cred.Hosts {
			if IsWildcardHost(h) || !regHostWithin(h, p.Hosts) {
				return nil, nil, Errorf(ClassPolicyViolation, "credential %s host %s is not one of provider %s's hosts", cred.ID, h, p.Provider)
			}
		}
	} else if cred.Auth.Kind() == "" {
		return nil, nil, Errorf(ClassPolicyViolation, "credential %s has no valid auth", cred.ID)
	}
	cred.Secrets = final
	return &cred, maps.Clone(final), nil
}

// stCredLevel is the precedence level of credential c for ctx (stLevelNone
// when c's scope does not admit ctx). A credential admitted from ctx that
// uses a secret attached to ctx's group ranks as group level.
//
// An auto credential (scoped exactly like its secrets) whose every secret is
// attached to ctx's group is usable there too, at group level: attach-group
// is how the operator shares a group's key with another group of the same
// workspace. Operator-made credentials keep the scope they were given.
func stCredLevel(s *State, secrets []SecretInfo, c *Credential, ctx Context) int {
	lvl := stAdmitLevel(c.Scope, c.WorkspaceID, c.GroupID, ctx)
	if lvl == stLevelNone && c.Auto && len(c.Secrets) > 0 {
		for _, id := range c.Secrets {
			sec, ok := stFindSecret(secrets, id)
			if !ok || !stAttached(s, sec, ctx) {
				return stLevelNone
			}
		}
		return stLevelGroup
	}
	if lvl == stLevelNone || lvl == stLevelGroup {
		return lvl
	}
	for _, id := range c.Secrets {
		if sec, ok := stFindSecret(secrets, id); ok && stAttached(s, sec, ctx) {
			return stLevelGroup
		}
	}
	return lvl
}
