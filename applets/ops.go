package applets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aivault/aivault/audit"
	"github.com/aivault/aivault/crypt"
	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
)

var (
	opTableOnce sync.Once
	opTableMap  map[string]opFunc
)

func opTable() map[string]opFunc {
	opTableOnce.Do(func() {
		opTableMap = map[string]opFunc{
			"health":              opHealth,
			"status":              opStatus,
			"secrets.create":      opSecretsCreate,
			"secrets.list":        opSecretsList,
			"secrets.update":      opSecretsUpdate,
			"secrets.rotate":      opSecretsRotate,
			"secrets.delete":      opSecretsDelete,
			"secrets.import":      opSecretsImport,
			"secrets.attach":      opSecretsAttach,
			"secrets.detach":      opSecretsDetach,
			"credential.create":   opCredentialCreate,
			"credential.list":     opCredentialList,
			"credential.delete":   opCredentialDelete,
			"capability.list":     opCapabilityList,
			"capability.describe": opCapabilityDescribe,
			"capability.create":   opCapabilityCreate,
			"capability.delete":   opCapabilityDelete,
			"policy.set":          opPolicySet,
			"policy.show":         opPolicyShow,
			"bind":                opBind,
			"unbind":              opUnbind,
			"bindings":            opBindings,
			"access.grant":        opAccessGrant,
			"access.revoke":       opAccessRevoke,
			"access.list":         opAccessList,
			"audit.query":         opAuditQuery,
			"audit.verify":        opAuditVerify,
			"audit.prune":         opAuditPrune,
			"rotate-master":       opRotateMaster,
			"doctor":              opDoctor,
			"unlock":              opUnlock,
			"lock":                opLock,
			"shutdown":            opShutdown,
		}
	})
	return opTableMap
}

func opHealth(_ context.Context, e *engine, p *peer, _ json.RawMessage) (any, error) {
	return map[string]any{"ok": true, "role": p.Role, "version": Version}, nil
}

// ---- secrets ----

type secretRef struct {
	ID          string `json:"id,omitempty"`
	Name        string `json:"name,omitempty"`
	Scope       string `json:"scope,omitempty"`
	WorkspaceID string `json:"workspaceId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`
}

func (e *engine) findSecret(r secretRef) (crypt.SecretMeta, error) {
	key := r.ID
	if key == "" {
		key = r.Name
	}
	if key == "" {
		return crypt.SecretMeta{}, policy.Errorf(policy.ClassInvalidRequest, "name a secret with --id or --name")
	}
	m, err := e.vault.FindSecret(key, r.Scope, r.WorkspaceID, r.GroupID)
	if err == nil && isInternalSecret(m.Name) {
		return crypt.SecretMeta{}, policy.Errorf(policy.ClassSecretNotFound, "no secret %q", key)
	}
	return m, mapCryptErr(err)
}

type secretsCreateArgs struct {
	Name        string   `json:"name"`
	Value       []byte   `json:"value"`
	Scope       string   `json:"scope,omitempty"`
	WorkspaceID string   `json:"workspaceId,omitempty"`
	GroupID     string   `json:"groupId,omitempty"`
	Aliases     []string `json:"aliases,omitempty"`
}

type secretsCreateResult struct {
	Secret    crypt.SecretMeta        `json:"secret"`
	Provision *policy.ProvisionReport `json:"provision,omitempty"`
}

func normScope(scope, ws, grp string) (string, error) {
	if scope == "" {
		switch {
		case grp != "":
			scope = policy.ScopeGroup
		case ws != "":
			scope = policy.ScopeWorkspace
		default:
			scope = policy.ScopeGlobal
		}
	}
	switch scope {
	case policy.ScopeGlobal:
		if ws != "" || grp != "" {
			return "", policy.Errorf(policy.ClassInvalidRequest, "a global secret takes no --workspace-id or --group-id")
		}
	case policy.ScopeWorkspace:
		if ws == "" || grp != "" {
			return "", policy.Errorf(policy.ClassInvalidRequest, "--scope workspace needs --workspace-id (and no --group-id)")
		}
	case policy.ScopeGroup:
		if ws == "" || grp == "" {
			return "", policy.Errorf(policy.ClassInvalidRequest, "--scope group needs --workspace-id and --group-id")
		}
	default:
		return "", policy.Errorf(policy.ClassInvalidRequest, "unknown scope %q (global, workspace or group)", scope)
	}
	return scope, nil
}

func (e *engine) createSecret(p *peer, a secretsCreateArgs, kind string) (*secretsCreateResult, error) {
	defer clear(a.Value)
	if len(a.Value) == 0 {
		return nil, policy.Errorf(policy.ClassInvalidRequest, "the secret value is empty").WithHint("give the value at the prompt, with --value-file, or on stdin")
	}
	if isInternalSecret(a.Name) {
		return nil, policy.Errorf(policy.ClassInvalidRequest, "names starting with %q are reserved for aivault itself", internalPrefix)
	}
	scope, err := normScope(a.Scope, a.WorkspaceID, a.GroupID)
	if err != nil {
		return nil, err
	}
	k, err := e.getKey()
	if err != nil {
		return nil, err
	}
	meta := crypt.SecretMeta{Name: a.Name, Aliases: a.Aliases, Scope: scope, WorkspaceID: a.WorkspaceID, GroupID: a.GroupID, Pinned: policy.PinFor(e.reg, a.Name)}
	created, err := e.vault.CreateSecret(k, meta, a.Value)
	if err != nil {
		return nil, mapCryptErr(err)
	}
	res := &secretsCreateResult{Secret: created}
	e.record(p, audit.Event{Kind: kind, Decision: "allow", SecretID: created.ID, SecretName: created.Name, Detail: map[string]string{"scope": scope, "pinned": created.Pinned}})
	if created.Pinned != "" {
		err = e.mutateState(func(st *policy.State, infos []policy.SecretInfo) error {
			rep, err := policy.Provision(e.reg, st, infos, secretInfo(created))
			res.Provision = rep
			return err
		})
		if err != nil {
			return res, err
		}
		if res.Provision != nil && res.Provision.Ready {
			e.record(p, audit.Event{Kind: "provision", Decision: "allow", Credential: res.Provision.Credential, SecretID: created.ID, Detail: map[string]string{"provider": res.Provision.Provider}})
		}
	}
	return res, nil
}

func opSecretsCreate(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a secretsCreateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	return e.createSecret(p, a, "secret.create")
}

type secretsImportArgs struct {
	Entries     []secretsCreateArgs `json:"entries"`
	Scope       string              `json:"scope,omitempty"`
	WorkspaceID string              `json:"workspaceId,omitempty"`
	GroupID     string              `json:"groupId,omitempty"`
}

func opSecretsImport(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a secretsImportArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	defer func() {
		for _, en := range a.Entries {
			clear(en.Value)
		}
	}()
	var out []*secretsCreateResult
	for _, en := range a.Entries {
		en.Scope, en.WorkspaceID, en.GroupID = a.Scope, a.WorkspaceID, a.GroupID
		r, err := e.createSecret(p, en, "secret.import")
		if err != nil {
			return out, fmt.Errorf("importing %s: %w", en.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

type secretsListArgs struct {
	Scope       string `json:"scope,omitempty"`
	WorkspaceID string `json:"workspaceId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`
}

func opSecretsList(_ context.Context, e *engine, _ *peer, raw json.RawMessage) (any, error) {
	var a secretsListArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	metas, err := e.vault.ListSecrets()
	if err != nil {
		return nil, mapCryptErr(err)
	}
	out := []crypt.SecretMeta{}
	for _, m := range metas {
		if isInternalSecret(m.Name) {
			continue
		}
		if a.Scope != "" && m.Scope != a.Scope || a.WorkspaceID != "" && m.WorkspaceID != a.WorkspaceID || a.GroupID != "" && m.GroupID != a.GroupID {
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].ID < out[j].ID
	})
	return out, nil
}

type secretsUpdateArgs struct {
	secretRef
	NewName      string   `json:"newName,omitempty"`
	Aliases      []string `json:"aliases,omitempty"`
	ClearAliases bool     `json:"clearAliases,omitempty"`
}

func opSecretsUpdate(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a secretsUpdateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	m, err := e.findSecret(a.secretRef)
	if err != nil {
		return nil, err
	}
	var nn *string
	if a.NewName != "" {
		if m.Pinned != "" && policy.PinFor(e.reg, a.NewName) != m.Pinned {
			return nil, policy.Errorf(policy.ClassPolicyViolation, "secret %s is pinned to provider %s; renaming it to %s would break that binding", m.Name, m.Pinned, a.NewName).WithHint("delete it and create a new secret instead")
		}
		if isInternalSecret(a.NewName) {
			return nil, policy.Errorf(policy.ClassInvalidRequest, "names starting with %q are reserved for aivault itself", internalPrefix)
		}
		nn = &a.NewName
	}
	out, err := e.vault.UpdateSecret(m.ID, nn, a.Aliases, a.ClearAliases)
	if err != nil {
		return nil, mapCryptErr(err)
	}
	e.record(p, audit.Event{Kind: "secret.update", Decision: "allow", SecretID: m.ID, SecretName: out.Name})
	return out, nil
}

type secretsRotateArgs struct {
	secretRef
	Value []byte `json:"value"`
}

func opSecretsRotate(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a secretsRotateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	defer clear(a.Value)
	if len(a.Value) == 0 {
		return nil, policy.Errorf(policy.ClassInvalidRequest, "the new secret value is empty")
	}
	m, err := e.findSecret(a.secretRef)
	if err != nil {
		return nil, err
	}
	k, err := e.getKey()
	if err != nil {
		return nil, err
	}
	out, err := e.vault.RotateSecret(k, m.ID, a.Value)
	if err != nil {
		return nil, mapCryptErr(err)
	}
	e.oauthMu.Lock()
	for id, t := range e.oauth {
		if strings.Contains(id, m.ID) {
			clear(t.access)
			delete(e.oauth, id)
		}
	}
	e.oauthMu.Unlock()
	e.record(p, audit.Event{Kind: "secret.rotate", Decision: "allow", SecretID: m.ID, SecretName: m.Name})
	if err := e.reprovision(p, out); err != nil {
		return out, err
	}
	return out, nil
}

// credentialUses reports whether any credential refers to secret id.
func credentialUses(st *policy.State, id string) bool {
	for _, c := range st.Credentials {
		for _, sid := range c.Secrets {
			if sid == id {
				return true
			}
		}
	}
	return false
}

// unprovisioned reports whether pinned secret m has no credential although
// provisioning would make one ready: a create interrupted between writing
// its record and broker.json.
func (e *engine) unprovisioned(m crypt.SecretMeta, st *policy.State, infos []policy.SecretInfo) bool {
	if m.Pinned == "" || isInternalSecret(m.Name) || credentialUses(st, m.ID) {
		return false
	}
	rep, err := policy.Provision(e.reg, st, infos, secretInfo(m))
	return err == nil && rep != nil && rep.Ready
}

// cloneState deep-copies st (for dry runs of provisioning).
func cloneState(st *policy.State) *policy.State {
	out := policy.NewState()
	if b, err := json.Marshal(st); err == nil && json.Unmarshal(b, out) == nil {
		return out
	}
	return policy.NewState()
}

// reprovision provisions a pinned secret that no credential uses (see
// unprovisioned); rotating the secret is the documented repair.
func (e *engine) reprovision(p *peer, m crypt.SecretMeta) error {
	if m.Pinned == "" {
		return nil
	}
	st, err := e.loadState()
	if err != nil {
		return err
	}
	if credentialUses(st, m.ID) {
		return nil
	}
	var rep *policy.ProvisionReport
	err = e.mutateState(func(st *policy.State, infos []policy.SecretInfo) error {
		if !e.unprovisioned(m, cloneState(st), infos) {
			return nil
		}
		var err error
		rep, err = policy.Provision(e.reg, st, infos, secretInfo(m))
		return err
	})
	if err == nil && rep != nil && rep.Ready {
		e.record(p, audit.Event{Kind: "provision", Decision: "allow", Credential: rep.Credential, SecretID: m.ID, Detail: map[string]string{"provider": rep.Provider}})
	}
	return err
}

func opSecretsDelete(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a secretRef
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	m, err := e.findSecret(a)
	if err != nil {
		return nil, err
	}
	if err := e.vault.DeleteSecret(m.ID); err != nil {
		return nil, mapCryptErr(err)
	}
	err = e.mutateState(func(st *policy.State, infos []policy.SecretInfo) error {
		policy.Unprovision(e.reg, st, infos, m.ID)
		return nil
	})
	e.record(p, audit.Event{Kind: "secret.delete", Decision: "allow", SecretID: m.ID, SecretName: m.Name})
	return map[string]any{"deleted": m.ID, "name": m.Name}, err
}

type attachArgs struct {
	secretRef
	AttachWorkspace string `json:"attachWorkspaceId"`
	AttachGroup     string `json:"attachGroupId"`
}

func opSecretsAttach(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	return e.attach(p, raw, true)
}

func opSecretsDetach(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	return e.attach(p, raw, false)
}

func (e *engine) attach(p *peer, raw json.RawMessage, add bool) (any, error) {
	var a attachArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if a.AttachWorkspace == "" || a.AttachGroup == "" {
		return nil, policy.Errorf(policy.ClassInvalidRequest, "--workspace-id and --group-id name the group to attach to")
	}
	m, err := e.findSecret(a.secretRef)
	if err != nil {
		return nil, err
	}
	att := policy.Attachment{SecretID: m.ID, WorkspaceID: a.AttachWorkspace, GroupID: a.AttachGroup}
	err = e.mutateState(func(st *policy.State, infos []policy.SecretInfo) error {
		if add {
			return policy.AttachSecret(st, infos, att)
		}
		if !policy.DetachSecret(st, att) {
			return policy.Errorf(policy.ClassInvalidRequest, "secret %s is not attached to %s/%s", m.Name, att.WorkspaceID, att.GroupID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	kind := "secret.attach"
	if !add {
		kind = "secret.detach"
	}
	e.record(p, audit.Event{Kind: kind, Decision: "allow", SecretID: m.ID, Detail: map[string]string{"workspace": att.WorkspaceID, "group": att.GroupID}})
	return att, nil
}

// ---- credentials, capabilities, policies, bindings, grants ----

type credentialCreateArgs struct {
	Credential policy.Credential `json:"credential"`
	SecretRefs map[string]string `json:"secretRefs"` // placeholder → "vault:secret:<id>" or name
}

// resolveSecretRef turns "vault:secret:<id|name|alias>" into a secret id. A
// name stored in several scopes is narrowed to the one in exactly the given
// scope (the credential's or binding's own) before it counts as ambiguous.
func (e *engine) resolveSecretRef(ref, scope, ws, grp string) (string, error) {
	ref = strings.TrimSpace(ref)
	key := strings.TrimPrefix(ref, "vault:secret:")
	if key == "" {
		return "", policy.Errorf(policy.ClassInvalidRequest, "empty secret reference %q", ref).
			WithHint("use vault:secret:<id> (ids are in 'aivault secrets list'), or the secret's name")
	}
	m, err := e.findSecret(secretRef{ID: key})
	var pe *policy.Error
	if err != nil && errors.As(err, &pe) && pe.Class == policy.ClassAmbiguous {
		if scope == "" {
			scope = policy.ScopeGlobal
		}
		if m2, err2 := e.findSecret(secretRef{ID: key, Scope: scope, WorkspaceID: ws, GroupID: grp}); err2 == nil &&
			m2.Scope == scope && m2.WorkspaceID == ws && m2.GroupID == grp {
			return m2.ID, nil
		}
		return "", policy.Errorf(policy.ClassAmbiguous, "%s", pe.Msg).
			WithHint("use --secret-ref vault:secret:<id> with one of those ids")
	}
	if err != nil {
		return "", err
	}
	return m.ID, nil
}

func opCredentialCreate(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a credentialCreateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	c := a.Credential
	if c.Secrets == nil {
		c.Secrets = map[string]string{}
	}
	scope, err := normScope(c.Scope, c.WorkspaceID, c.GroupID)
	if err != nil {
		return nil, err
	}
	c.Scope = scope
	for ph, ref := range a.SecretRefs {
		id, err := e.resolveSecretRef(ref, c.Scope, c.WorkspaceID, c.GroupID)
		if err != nil {
			return nil, err
		}
		c.Secrets[ph] = id
	}
	err = e.mutateState(func(st *policy.State, infos []policy.SecretInfo) error {
		return policy.AddCredential(e.reg, st, infos, c)
	})
	if err != nil {
		e.record(p, audit.Event{Kind: "credential.create", Decision: "deny", Credential: c.ID, Reason: errClassMsg(err)})
		return nil, err
	}
	e.record(p, audit.Event{Kind: "credential.create", Decision: "allow", Credential: c.ID, Detail: map[string]string{"provider": c.Provider, "hosts": strings.Join(c.Hosts, " ")}})
	st, err := e.loadState()
	if err != nil {
		return nil, err
	}
	out, _ := st.Credential(c.ID)
	return out, nil
}

func opCredentialList(_ context.Context, e *engine, _ *peer, _ json.RawMessage) (any, error) {
	st, err := e.loadState()
	if err != nil {
		return nil, err
	}
	return st.Credentials, nil
}

type idArgs struct {
	ID string `json:"id"`
}

func opCredentialDelete(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a idArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	err := e.mutateState(func(st *policy.State, _ []policy.SecretInfo) error { return policy.DeleteCredential(st, a.ID) })
	if err != nil {
		return nil, err
	}
	e.record(p, audit.Event{Kind: "credential.delete", Decision: "allow", Credential: a.ID})
	return map[string]string{"deleted": a.ID}, nil
}

// capabilityView is what list/describe show.
type capabilityView struct {
	ID            string            `json:"id"`
	Provider      string            `json:"provider"`
	Status        string            `json:"status"` // ready | available
	Custom        bool              `json:"custom,omitempty"`
	Hosts         []string          `json:"hosts"`
	Methods       []string          `json:"methods"`
	PathPrefixes  []string          `json:"pathPrefixes"`
	AuthKind      string            `json:"authKind,omitempty"`
	Secrets       []string          `json:"secrets,omitempty"`
	Credential    string            `json:"credential,omitempty"`
	Policy        *policy.CapPolicy `json:"policy,omitempty"`
	Example       string            `json:"example,omitempty"`
	RateLimitNote string            `json:"rateLimitNote,omitempty"`
	// Problem says why a capability that has credentials is still not
	// ready here (e.g. several credentials fit), so list/describe do not
	// just say "available".
	Problem string `json:"problem,omitempty"`
}

func (e *engine) agentContext(p *peer, capID string, st *policy.State, ctx policy.Context) (policy.Context, error) {
	if p.Role == ipc.RoleOperator {
		return ctx, nil
	}
	// Agents: context from the grant, never from flags.
	hasGrants := len(st.Grants) > 0
	if !hasGrants {
		return policy.Context{}, nil
	}
	g, ok := policy.GrantFor(st, p.UID, capID)
	if !ok {
		return policy.Context{}, policy.Errorf(policy.ClassAccessDenied, "no grant lets uid %d use %s", p.UID, capID).WithHint("the operator can run 'aivault access grant --user <you> --capability %s'", capID)
	}
	return policy.Context{WorkspaceID: g.WorkspaceID, GroupID: g.GroupID}, nil
}

type capListArgs struct {
	WorkspaceID string `json:"workspaceId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`
}

func (e *engine) capabilityViews(p *peer, ctx policy.Context) ([]capabilityView, error) {
	st, err := e.loadState()
	if err != nil {
		return nil, err
	}
	infos, err := e.secretInfos()
	if err != nil {
		return nil, err
	}
	all := e.reg.Capabilities()
	all = append(all, st.Capabilities...)
	out := make([]capabilityView, 0, len(all))
	for i := range all {
		c := all[i]
		cctx, err := e.agentContext(p, c.ID, st, ctx)
		if err != nil {
			continue // not granted: agents do not see it
		}
		v := e.describeCap(&c, st, infos, cctx)
		if p.Role != ipc.RoleOperator && v.Status != "ready" {
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

func (e *engine) describeCap(c *policy.Capability, st *policy.State, infos []policy.SecretInfo, ctx policy.Context) capabilityView {
	v := capabilityView{ID: c.ID, Provider: c.Provider, Status: "available", Custom: c.Credential != "",
		Hosts: c.Allow.Hosts, Methods: c.Allow.Methods, PathPrefixes: c.Allow.PathPrefixes}
	if prov, ok := e.reg.Provider(c.Provider); ok {
		v.AuthKind = prov.Auth.Kind()
		v.Secrets = sortedKeys(prov.VaultSecrets)
	}
	if cred, _, err := policy.SelectCredential(e.reg, st, infos, c, ctx, ""); err == nil {
		v.Status = "ready"
		v.Credential = cred.ID
		v.AuthKind = cred.Auth.Kind()
		if h, err := policy.EffectiveHost(cred.Hosts, c.Allow.Hosts); err == nil {
			v.Hosts = []string{h}
		}
	} else if pe := (*policy.Error)(nil); errors.As(err, &pe) && pe.Class != policy.ClassCredentialNotFound {
		v.Problem = pe.Class + ": " + pe.Msg
	}
	if pol, ok := st.Policies[c.ID]; ok {
		pp := pol
		v.Policy = &pp
		if pol.RateLimitPerMinute > 0 {
			v.RateLimitNote = fmt.Sprintf("at most %d calls per minute, counted across all processes using this vault", pol.RateLimitPerMinute)
		}
	}
	m, path := policy.DefaultMethodPath(c.Allow)
	if m == "" {
		m = c.Allow.Methods[0]
		for _, x := range c.Allow.Methods {
			if x == "POST" {
				m = x
			}
		}
	}
	if path == "" && len(c.Allow.PathPrefixes) > 0 {
		path = c.Allow.PathPrefixes[0]
	}
	ex := "aivault invoke " + c.ID + " --method " + m + " --path " + shellQuote(path)
	if m == "POST" || m == "PUT" || m == "PATCH" {
		ex += " --body '{}'"
	}
	v.Example = ex
	return v
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/_-.:", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func opCapabilityList(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a capListArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	return e.capabilityViews(p, policy.Context{WorkspaceID: a.WorkspaceID, GroupID: a.GroupID})
}

type capDescribeArgs struct {
	ID          string `json:"id"`
	WorkspaceID string `json:"workspaceId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`
}

func opCapabilityDescribe(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a capDescribeArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	st, err := e.loadState()
	if err != nil {
		return nil, err
	}
	c, _, err := policy.ResolveCapability(e.reg, st, a.ID)
	if err != nil {
		return nil, err
	}
	ctx, err := e.agentContext(p, c.ID, st, policy.Context{WorkspaceID: a.WorkspaceID, GroupID: a.GroupID})
	if err != nil {
		return nil, err
	}
	infos, err := e.secretInfos()
	if err != nil {
		return nil, err
	}
	v := e.describeCap(c, st, infos, ctx)
	if p.Role != ipc.RoleOperator {
		v.Problem = "" // names the operator's credentials
	}
	return v, nil
}

func opCapabilityCreate(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var c policy.Capability
	if err := decodeArgs(raw, &c); err != nil {
		return nil, err
	}
	err := e.mutateState(func(st *policy.State, _ []policy.SecretInfo) error { return policy.AddCustomCapability(e.reg, st, c) })
	if err != nil {
		e.record(p, audit.Event{Kind: "capability.create", Decision: "deny", Capability: c.ID, Reason: errClassMsg(err)})
		return nil, err
	}
	e.record(p, audit.Event{Kind: "capability.create", Decision: "allow", Capability: c.ID, Credential: c.Credential})
	return c, nil
}

func opCapabilityDelete(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a idArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if err := e.mutateState(func(st *policy.State, _ []policy.SecretInfo) error { return policy.DeleteCustomCapability(st, a.ID) }); err != nil {
		return nil, err
	}
	e.record(p, audit.Event{Kind: "capability.delete", Decision: "allow", Capability: a.ID})
	return map[string]string{"deleted": a.ID}, nil
}

type policySetArgs struct {
	Capability string           `json:"capability"`
	Policy     policy.CapPolicy `json:"policy"`
}

func opPolicySet(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a policySetArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	err := e.mutateState(func(st *policy.State, _ []policy.SecretInfo) error {
		if _, _, err := policy.ResolveCapability(e.reg, st, a.Capability); err != nil {
			return err
		}
		return policy.SetPolicy(st, a.Capability, a.Policy)
	})
	if err != nil {
		return nil, err
	}
	e.record(p, audit.Event{Kind: "policy.set", Decision: "allow", Capability: a.Capability})
	return a, nil
}

func opPolicyShow(_ context.Context, e *engine, _ *peer, raw json.RawMessage) (any, error) {
	var a idArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	st, err := e.loadState()
	if err != nil {
		return nil, err
	}
	if _, _, err := policy.ResolveCapability(e.reg, st, a.ID); err != nil {
		return nil, err
	}
	return policySetArgs{Capability: a.ID, Policy: st.Policies[a.ID]}, nil
}

type bindArgs struct {
	Binding   policy.Binding `json:"binding"`
	SecretRef string         `json:"secretRef"`
}

func opBind(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a bindArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	var err error
	if a.Binding.Scope, err = normScope(a.Binding.Scope, a.Binding.WorkspaceID, a.Binding.GroupID); err != nil {
		return nil, err
	}
	id, err := e.resolveSecretRef(a.SecretRef, a.Binding.Scope, a.Binding.WorkspaceID, a.Binding.GroupID)
	if err != nil {
		return nil, err
	}
	a.Binding.SecretID = id
	if err := e.mutateState(func(st *policy.State, infos []policy.SecretInfo) error {
		return policy.Bind(e.reg, st, infos, a.Binding)
	}); err != nil {
		return nil, err
	}
	e.record(p, audit.Event{Kind: "capability.bind", Decision: "allow", Capability: a.Binding.Capability, SecretID: id})
	return a.Binding, nil
}

func opUnbind(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a bindArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	var n int
	var err error
	if a.Binding.Scope, err = normScope(a.Binding.Scope, a.Binding.WorkspaceID, a.Binding.GroupID); err != nil {
		return nil, err
	}
	if err := e.mutateState(func(st *policy.State, _ []policy.SecretInfo) error {
		var err error
		n, err = policy.Unbind(st, a.Binding)
		return err
	}); err != nil {
		return nil, err
	}
	e.record(p, audit.Event{Kind: "capability.unbind", Decision: "allow", Capability: a.Binding.Capability})
	return map[string]int{"removed": n}, nil
}

func opBindings(_ context.Context, e *engine, _ *peer, _ json.RawMessage) (any, error) {
	st, err := e.loadState()
	if err != nil {
		return nil, err
	}
	return st.Bindings, nil
}

func opAccessGrant(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var g policy.Grant
	if err := decodeArgs(raw, &g); err != nil {
		return nil, err
	}
	uid, name, err := lookupUser(g.User)
	if err != nil {
		return nil, err
	}
	g.UID, g.User = uid, name
	if err := e.mutateState(func(st *policy.State, _ []policy.SecretInfo) error { return policy.AddGrant(st, g) }); err != nil {
		return nil, err
	}
	e.record(p, audit.Event{Kind: "access.grant", Decision: "allow", Capability: g.Capability, Detail: map[string]string{"user": g.User, "workspace": g.WorkspaceID, "group": g.GroupID}})
	return g, nil
}

func opAccessRevoke(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var g policy.Grant
	if err := decodeArgs(raw, &g); err != nil {
		return nil, err
	}
	var n int
	if err := e.mutateState(func(st *policy.State, _ []policy.SecretInfo) error {
		var err error
		n, err = policy.RevokeGrant(st, g.User, g.Capability)
		return err
	}); err != nil {
		return nil, err
	}
	e.record(p, audit.Event{Kind: "access.revoke", Decision: "allow", Capability: g.Capability, Detail: map[string]string{"user": g.User}})
	return map[string]int{"revoked": n}, nil
}

func opAccessList(_ context.Context, e *engine, _ *peer, _ json.RawMessage) (any, error) {
	st, err := e.loadState()
	if err != nil {
		return nil, err
	}
	return st.Grants, nil
}

// ---- audit ----

type auditQueryArgs struct {
	Limit      int    `json:"limit"`
	BeforeTsMs int64  `json:"beforeTsMs,omitempty"`
	Capability string `json:"capability,omitempty"`
	User       string `json:"user,omitempty"`
}

func opAuditQuery(_ context.Context, e *engine, _ *peer, raw json.RawMessage) (any, error) {
	var a auditQueryArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	evs, err := audit.Query(e.lay.auditDir(), audit.QueryOptions{Limit: a.Limit, BeforeTsMs: a.BeforeTsMs, Capability: a.Capability, User: a.User})
	if err != nil {
		return nil, err
	}
	if evs == nil {
		evs = []audit.Event{}
	}
	return evs, nil
}

func opAuditVerify(_ context.Context, e *engine, _ *peer, _ json.RawMessage) (any, error) {
	ak, err := e.auditKey()
	if err != nil {
		return nil, err
	}
	defer clear(ak)
	e.auditMu.Lock()
	defer e.auditMu.Unlock()
	return audit.Verify(e.lay.auditDir(), ak)
}

// ---- keys ----

type rotateMasterArgs struct {
	NewKey        []byte `json:"newKey,omitempty"`
	NewPassphrase []byte `json:"newPassphrase,omitempty"`
}

func opRotateMaster(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a rotateMasterArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	defer clear(a.NewKey)
	defer clear(a.NewPassphrase)
	old, err := e.getKey()
	if err != nil {
		return nil, err
	}
	unlock, err := e.stateLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// crypt re-MACs broker.json under the new key as part of the rotation;
	// the audit chain key lives in an internal record, re-wrapped with the rest.
	to := crypt.InitOptions{Provider: e.vault.Provider(), Passphrase: a.NewPassphrase, EnvVar: e.vault.EnvVar()}
	nk, err := e.vault.RotateMaster(old, to, a.NewKey)
	if err != nil {
		return nil, mapCryptErr(err)
	}
	e.keyMu.Lock()
	if e.key != nil && e.key != nk {
		e.key.Destroy()
	}
	e.key = nk
	e.keyMu.Unlock()
	e.closeAuditLocked()
	e.record(p, audit.Event{Kind: "vault.rotate-master", Decision: "allow", Detail: map[string]string{"keyId": nk.ID()}})
	return map[string]string{"keyId": nk.ID(), "provider": string(e.vault.Provider())}, nil
}

// ---- lock / unlock / shutdown ----

type unlockArgs struct {
	Key       []byte `json:"key"`
	TimeoutMs int64  `json:"timeoutMs,omitempty"`
}

func opUnlock(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a unlockArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if !e.daemon {
		return nil, policy.Errorf(policy.ClassInvalidRequest, "unlock needs the vault's daemon")
	}
	k, err := crypt.KeyFromBytes(a.Key)
	if err != nil {
		return nil, mapCryptErr(err)
	}
	if err := e.vault.CheckKey(k); err != nil {
		k.Destroy()
		e.record(p, audit.Event{Kind: "vault.unlock", Decision: "deny", Reason: "wrong key"})
		return nil, mapCryptErr(err)
	}
	e.setKey(k, time.Duration(a.TimeoutMs)*time.Millisecond)
	e.record(p, audit.Event{Kind: "vault.unlock", Decision: "allow"})
	return map[string]any{"unlocked": true, "timeoutMs": a.TimeoutMs}, nil
}

func opLock(_ context.Context, e *engine, p *peer, _ json.RawMessage) (any, error) {
	e.record(p, audit.Event{Kind: "vault.lock", Decision: "allow"})
	e.dropKey()
	return map[string]any{"locked": true}, nil
}

func opShutdown(_ context.Context, e *engine, p *peer, _ json.RawMessage) (any, error) {
	if !e.daemon {
		return nil, policy.Errorf(policy.ClassInvalidRequest, "no daemon to stop")
	}
	e.record(p, audit.Event{Kind: "daemon.stop", Decision: "allow"})
	return map[string]any{"stopping": true}, nil
}

func errClassMsg(err error) string {
	return strings.SplitN(err.Error(), "\n", 2)[0]
}
