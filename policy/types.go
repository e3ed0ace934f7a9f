package policy

// Auth is a tagged union: exactly one field is set. The JSON field names are
// the ones operators know from other tools (registry files and broker.json
// use them verbatim).
type Auth struct {
	Header      *AuthHeader      `json:"header,omitempty"`
	Query       *AuthQuery       `json:"query,omitempty"`
	Path        *AuthPath        `json:"path,omitempty"`
	Basic       *AuthBasic       `json:"basic,omitempty"`
	MultiHeader []AuthHeader     `json:"multi_header,omitempty"`
	MultiQuery  []AuthQueryParam `json:"multi_query,omitempty"`
	OAuth2      *AuthOAuth2      `json:"o_auth2,omitempty"`
	AWSSigV4    *AuthSigV4       `json:"aws_sig_v4,omitempty"`
	HMAC        *AuthHMAC        `json:"hmac,omitempty"`
	MTLS        *AuthMTLS        `json:"mtls,omitempty"`
}

// Auth kinds as returned by Auth.Kind.
const (
	AuthKindHeader      = "header"
	AuthKindQuery       = "query"
	AuthKindPath        = "path"
	AuthKindBasic       = "basic"
	AuthKindMultiHeader = "multi_header"
	AuthKindMultiQuery  = "multi_query"
	AuthKindOAuth2      = "o_auth2"
	AuthKindAWSSigV4    = "aws_sig_v4"
	AuthKindHMAC        = "hmac"
	AuthKindMTLS        = "mtls"
)

// Kind names the one auth strategy set, or "" when none or several are set.
func (a Auth) Kind() string {
	kind, n := "", 0
	set := func(ok bool, k string) {
		if ok {
			kind = k
			n++
		}
	}
	set(a.Header != nil, AuthKindHeader)
	set(a.Query != nil, AuthKindQuery)
	set(a.Path != nil, AuthKindPath)
	set(a.Basic != nil, AuthKindBasic)
	set(len(a.MultiHeader) > 0, AuthKindMultiHeader)
	set(len(a.MultiQuery) > 0, AuthKindMultiQuery)
	set(a.OAuth2 != nil, AuthKindOAuth2)
	set(a.AWSSigV4 != nil, AuthKindAWSSigV4)
	set(a.HMAC != nil, AuthKindHMAC)
	set(a.MTLS != nil, AuthKindMTLS)
	if n != 1 {
		return ""
	}
	return kind
}

// AuthHeader injects one header; ValueTemplate uses {{placeholder}}s.
type AuthHeader struct {
	HeaderName    string `json:"header_name"`
	ValueTemplate string `json:"value_template"`
}

// AuthQuery injects the {{secret}} placeholder as one query parameter.
type AuthQuery struct {
	ParamName string `json:"param_name"`
}

// AuthQueryParam is one parameter of multi_query.
type AuthQueryParam struct {
	ParamName     string `json:"param_name"`
	ValueTemplate string `json:"value_template"`
}

// AuthPath prefixes the request path with a rendered template (e.g. "/bot{{secret}}").
type AuthPath struct {
	PrefixTemplate string `json:"prefix_template"`
}

// AuthBasic is HTTP basic auth from the {{username}} and {{password}}
// placeholders (or a JSON secret {"username","password"}); Username, when set,
// is a fixed, non-secret user name (Mailgun's "api").
type AuthBasic struct {
	Username string `json:"username,omitempty"`
}

// AuthOAuth2 exchanges a stored grant for an access token at TokenEndpoint.
type AuthOAuth2 struct {
	GrantType     string   `json:"grant_type"` // refresh_token | client_credentials
	TokenEndpoint string   `json:"token_endpoint"`
	Scopes        []string `json:"scopes,omitempty"`
}

// AuthSigV4 signs requests with AWS Signature Version 4.
type AuthSigV4 struct {
	Service string `json:"service"`
	Region  string `json:"region"`
}

// AuthHMAC puts an HMAC of the exact request body in a header;
// ValueTemplate contains {{signature}} (lowercase hex).
type AuthHMAC struct {
	Algorithm     string `json:"algorithm"` // sha256 | sha512
	HeaderName    string `json:"header_name"`
	ValueTemplate string `json:"value_template"`
}

// AuthMTLS presents a client certificate from a secret {"certPem","keyPem"}.
type AuthMTLS struct{}

// Provider is one registry entry (one file under policy/registry/).
type Provider struct {
	Provider string `json:"provider"`
	// VaultSecrets maps canonical secret names (OPENAI_API_KEY) to the
	// placeholder they fill in auth templates ("secret").
	VaultSecrets map[string]string `json:"vaultSecrets"`
	// SecretAliases maps alternative names (FAL_API_KEY) to canonical ones.
	SecretAliases map[string]string `json:"secretAliases,omitempty"`
	Auth          Auth              `json:"auth"`
	// Hosts are exact names or a leading "*." wildcard (per-tenant hosts,
	// bound by a credential's --host).
	Hosts        []string     `json:"hosts"`
	Capabilities []Capability `json:"capabilities"`
}

// Capability is an approved kind of call: a provider, and what it allows.
type Capability struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Allow    Allow  `json:"allow"`
	// Credential is set only for custom (operator-created) capabilities.
	Credential string `json:"credential,omitempty"`
}

// Allow is what a capability permits. Empty lists are invalid, never
// "allow all"; allow-all paths are an explicit ["/"].
type Allow struct {
	Hosts        []string `json:"hosts"`
	Methods      []string `json:"methods"`
	PathPrefixes []string `json:"pathPrefixes"`
}

// Scope of a secret or credential.
const (
	ScopeGlobal    = "global"
	ScopeWorkspace = "workspace"
	ScopeGroup     = "group"
)

// Context is the workspace/group an invocation runs in. For agents it comes
// from their grant, never from flags.
type Context struct {
	WorkspaceID string `json:"workspaceId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`
}

// SecretInfo is policy's view of a vault secret: metadata only, never a value.
type SecretInfo struct {
	ID          string `json:"secretId"`
	Name        string `json:"name"`
	Scope       string `json:"scope"`
	WorkspaceID string `json:"workspaceId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`
	Pinned      string `json:"pinnedProvider,omitempty"`
}

// Credential binds secrets (placeholder → secret id) to an auth strategy and
// the hosts they may be sent to.
type Credential struct {
	ID          string            `json:"id"`
	Provider    string            `json:"provider"`
	Secrets     map[string]string `json:"secrets"` // placeholder → secret id
	Auth        Auth              `json:"auth"`
	Hosts       []string          `json:"hosts"`
	Scope       string            `json:"scope"`
	WorkspaceID string            `json:"workspaceId,omitempty"`
	GroupID     string            `json:"groupId,omitempty"`
	// Auto is true for credentials provisioned from the registry when a
	// canonical secret was stored.
	Auto bool `json:"auto,omitempty"`
}

// CapPolicy is the per-capability operator policy.
type CapPolicy struct {
	RateLimitPerMinute   int      `json:"rateLimitPerMinute,omitempty"`
	MaxRequestBodyBytes  int64    `json:"maxRequestBodyBytes,omitempty"`
	MaxResponseBodyBytes int64    `json:"maxResponseBodyBytes,omitempty"`
	ResponseBlock        []string `json:"responseBlock,omitempty"`
}

// Binding selects which secret a capability uses in one scope.
type Binding struct {
	Capability  string `json:"capability"`
	SecretID    string `json:"secretId"`
	Scope       string `json:"scope"`
	WorkspaceID string `json:"workspaceId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`
	Consumer    string `json:"consumer,omitempty"`
}

// Grant lets one agent user invoke capabilities matching a pattern
// ("openai/*", "*", or an exact id), in one context.
type Grant struct {
	User        string `json:"user"`
	UID         int    `json:"uid"`
	Capability  string `json:"capability"`
	WorkspaceID string `json:"workspaceId,omitempty"`
	GroupID     string `json:"groupId,omitempty"`
}

// Attachment makes a secret usable from a group context (secrets attach-group).
type Attachment struct {
	SecretID    string `json:"secretId"`
	WorkspaceID string `json:"workspaceId"`
	GroupID     string `json:"groupId"`
}

// StateVersion is the broker.json format version.
const StateVersion = 1

// State is broker.json: everything about where secrets may go. It is stored
// with a KEK-derived MAC by package crypt.
type State struct {
	Version      int                  `json:"version"`
	Credentials  []Credential         `json:"credentials"`
	Capabilities []Capability         `json:"capabilities"` // custom only
	Policies     map[string]CapPolicy `json:"policies"`
	Bindings     []Binding            `json:"bindings"`
	Grants       []Grant              `json:"grants"`
	Attachments  []Attachment         `json:"attachments"`
}
