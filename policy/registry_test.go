package policy

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func mustBuiltin(t testing.TB) *Registry {
	t.Helper()
	reg, err := Builtin()
	if err != nil {
		t.Fatalf("Builtin: %v", err)
	}
	return reg
}

func TestBuiltinRegistry(t *testing.T) {
	reg := mustBuiltin(t)
	ps := reg.Providers()
	if len(ps) != 44 {
		t.Errorf("Builtin has %d providers, want 44", len(ps))
	}
	if !slices.IsSortedFunc(ps, func(a, b *Provider) int { return strings.Compare(a.Provider, b.Provider) }) {
		t.Error("Providers() is not sorted by id")
	}
	caps := reg.Capabilities()
	if len(caps) < 250 {
		t.Errorf("Builtin has %d capabilities, want >= 250", len(caps))
	}
	if !slices.IsSortedFunc(caps, func(a, b Capability) int { return strings.Compare(a.ID, b.ID) }) {
		t.Error("Capabilities() is not sorted by id")
	}
	again, err := Builtin()
	if err != nil || again != reg {
		t.Errorf("second Builtin() = %p, %v; want the cached %p", again, err, reg)
	}
}

func TestBuiltinEveryFileValid(t *testing.T) {
	entries, err := fs.ReadDir(regFiles, "registry")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 44 {
		t.Errorf("%d embedded files, want 44", len(entries))
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			data, err := fs.ReadFile(regFiles, "registry/"+e.Name())
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParseProvider(data)
			if err != nil {
				t.Fatalf("ParseProvider: %v", err)
			}
			if p.Provider+".json" != e.Name() {
				t.Errorf("file %s declares provider %s", e.Name(), p.Provider)
			}
			if err := ValidateProvider(p); err != nil {
				t.Errorf("ValidateProvider: %v", err)
			}
		})
	}
}

func TestBuiltinSpotChecks(t *testing.T) {
	reg := mustBuiltin(t)
	c, ok := reg.Capability("openai/chat-completions")
	if !ok {
		t.Fatal("openai/chat-completions missing")
	}
	want := Capability{ID: "openai/chat-completions", Provider: "openai", Allow: Allow{
		Hosts: []string{"api.openai.com"}, Methods: []string{"GET", "POST"}, PathPrefixes: []string{"/v1/chat/completions"},
	}}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("openai/chat-completions = %+v, want %+v", *c, want)
	}
	p, ok := reg.Provider("openai")
	if !ok || p.Auth.Header == nil || p.Auth.Header.ValueTemplate != "Bearer {{secret}}" ||
		!strings.EqualFold(p.Auth.Header.HeaderName, "authorization") || !reflect.DeepEqual(p.Hosts, []string{"api.openai.com"}) {
		t.Errorf("openai provider = %+v", p)
	}

	cases := []struct {
		name            string
		provider, canon string
		placeholder     string
	}{
		{"OPENAI_API_KEY", "openai", "OPENAI_API_KEY", "secret"},
		{"FAL_API_KEY", "fal", "FAL_KEY", "secret"},
		{"FAL_KEY", "fal", "FAL_KEY", "secret"},
		{"TRELLO_TOKEN", "trello", "TRELLO_TOKEN", "token"},
		{"TWILIO_ACCOUNT_SID", "twilio", "TWILIO_ACCOUNT_SID", "username"},
		{"MAILGUN_API_KEY", "mailgun", "MAILGUN_API_KEY", "password"},
		{"PLAID_CLIENT_ID", "plaid", "PLAID_CLIENT_ID", "client_id"},
	}
	for _, tc := range cases {
		p, canon, ph, ok := reg.ProviderForSecret(tc.name)
		if !ok || p.Provider != tc.provider || canon != tc.canon || ph != tc.placeholder {
			t.Errorf("ProviderForSecret(%s) = %v %q %q %v", tc.name, p, canon, ph, ok)
		}
	}
	if _, _, _, ok := reg.ProviderForSecret("MY_OWN_KEY"); ok {
		t.Error("ProviderForSecret(MY_OWN_KEY) found a provider")
	}

	checks := map[string]func(p *Provider) bool{
		"mailgun":  func(p *Provider) bool { return p.Auth.Basic != nil && p.Auth.Basic.Username == "api" },
		"twilio":   func(p *Provider) bool { return p.Auth.Basic != nil && p.Auth.Basic.Username == "" },
		"gemini":   func(p *Provider) bool { return p.Auth.Query != nil && p.Auth.Query.ParamName == "key" },
		"youtube":  func(p *Provider) bool { return p.Auth.Query != nil && p.Auth.Query.ParamName == "key" },
		"telegram": func(p *Provider) bool { return p.Auth.Path != nil && p.Auth.Path.PrefixTemplate == "/bot{{secret}}" },
		"plaid":    func(p *Provider) bool { return len(p.Auth.MultiHeader) == 2 },
		"trello": func(p *Provider) bool {
			return reflect.DeepEqual(p.Auth.MultiQuery, []AuthQueryParam{{"key", "{{key}}"}, {"token", "{{token}}"}})
		},
		"shopify": func(p *Provider) bool { return reflect.DeepEqual(p.Hosts, []string{"*.myshopify.com"}) },
		"google-gmail": func(p *Provider) bool {
			o := p.Auth.OAuth2
			return o != nil && o.GrantType == "refresh_token" && o.TokenEndpoint == "https://oauth2.googleapis.com/token" &&
				slices.Contains(o.Scopes, "https://www.googleapis.com/auth/contacts.readonly") &&
				slices.Contains(o.Scopes, "https://www.googleapis.com/auth/gmail.send")
		},
		"google-calendar": func(p *Provider) bool {
			o := p.Auth.OAuth2
			return o != nil && reflect.DeepEqual(o.Scopes, []string{
				"https://www.googleapis.com/auth/calendar.events", "https://www.googleapis.com/auth/calendar.readonly"})
		},
	}
	for id, check := range checks {
		p, ok := reg.Provider(id)
		if !ok || !check(p) {
			t.Errorf("provider %s: unexpected %+v", id, p)
		}
	}
}

func TestRegistryReturnsCopies(t *testing.T) {
	reg := mustBuiltin(t)
	p, _ := reg.Provider("openai")
	p.Hosts[0] = "evil.test"
	p.Auth.Header.HeaderName = "x-evil"
	p.Capabilities[0].Allow.Hosts[0] = "evil.test"
	c, _ := reg.Capability("openai/chat-completions")
	c.Allow.PathPrefixes[0] = "/"
	all := reg.Capabilities()
	id0, m0 := all[0].ID, all[0].Allow.Methods[0]
	all[0].Allow.Methods[0] = "TRACE"

	p2, _ := reg.Provider("openai")
	c2, _ := reg.Capability("openai/chat-completions")
	if p2.Hosts[0] != "api.openai.com" || p2.Auth.Header.HeaderName == "x-evil" || p2.Capabilities[0].Allow.Hosts[0] != "api.openai.com" {
		t.Error("mutating a returned provider changed the registry")
	}
	if c2.Allow.PathPrefixes[0] != "/v1/chat/completions" {
		t.Error("mutating a returned capability changed the registry")
	}
	if got, _ := reg.Capability(id0); got.Allow.Methods[0] != m0 {
		t.Error("mutating Capabilities() changed the registry")
	}
}

// validProviderJSON is a minimal valid provider used as the base of the
// negative table.
const validProviderJSON = `{
  "provider": "acme",
  "vaultSecrets": {"ACME_API_KEY": "secret"},
  "auth": {"header": {"header_name": "authorization", "value_template": "Bearer {{secret}}"}},
  "hosts": ["api.acme.test", "*.tenant.acme.test"],
  "capabilities": [
    {"id": "acme/things", "provider": "acme",
     "allow": {"hosts": ["api.acme.test"], "methods": ["GET", "POST"], "pathPrefixes": ["/v1/things"]}},
    {"id": "acme/tenant", "provider": "acme",
     "allow": {"hosts": ["*.tenant.acme.test"], "methods": ["GET"], "pathPrefixes": ["/"]}}
  ]
}`

func mutateProvider(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(validProviderJSON), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func capAllow(m map[string]any, i int) map[string]any {
	return m["capabilities"].([]any)[i].(map[string]any)["allow"].(map[string]any)
}

func TestParseProviderValid(t *testing.T) {
	p, err := ParseProvider([]byte(validProviderJSON))
	if err != nil {
		t.Fatalf("valid provider refused: %v", err)
	}
	if p.Provider != "acme" || len(p.Capabilities) != 2 {
		t.Errorf("parsed %+v", p)
	}
	// Other auth kinds that must be accepted.
	ok := map[string]func(m map[string]any){
		"basic user+pass": func(m map[string]any) {
			m["vaultSecrets"] = map[string]any{"ACME_USER": "username", "ACME_PASS": "password"}
			m["auth"] = map[string]any{"basic": map[string]any{}}
		},
		"basic fixed user": func(m map[string]any) {
			m["vaultSecrets"] = map[string]any{"ACME_PASS": "password"}
			m["auth"] = map[string]any{"basic": map[string]any{"username": "api"}}
		},
		"query": func(m map[string]any) { m["auth"] = map[string]any{"query": map[string]any{"param_name": "key"}} },
		"path": func(m map[string]any) {
			m["auth"] = map[string]any{"path": map[string]any{"prefix_template": "/bot{{secret}}"}}
		},
		"oauth2": func(m map[string]any) {
			m["auth"] = map[string]any{"o_auth2": map[string]any{"grant_type": "refresh_token", "token_endpoint": "https://api.acme.test/token"}}
		},
		"oauth2 wildcard host": func(m map[string]any) {
			m["auth"] = map[string]any{"o_auth2": map[string]any{"grant_type": "client_credentials", "token_endpoint": "https://x.tenant.acme.test/oauth/token"}}
		},
		"hmac": func(m map[string]any) {
			m["auth"] = map[string]any{"hmac": map[string]any{"algorithm": "sha256", "header_name": "x-sig", "value_template": "v1={{signature}}"}}
		},
		"aws": func(m map[string]any) {
			m["auth"] = map[string]any{"aws_sig_v4": map[string]any{"service": "s3", "region": "us-east-1"}}
		},
		"mtls":  func(m map[string]any) { m["auth"] = map[string]any{"mtls": map[string]any{}} },
		"alias": func(m map[string]any) { m["secretAliases"] = map[string]any{"ACME_KEY": "ACME_API_KEY"} },
		"all methods": func(m map[string]any) {
			capAllow(m, 0)["methods"] = []any{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
		},
	}
	for name, f := range ok {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseProvider(mutateProvider(t, f)); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

func TestParseProviderInvalid(t *testing.T) {
	cases := map[string]func(m map[string]any){
		"unknown field":      func(m map[string]any) { m["extra"] = 1 },
		"unknown auth field": func(m map[string]any) { m["auth"].(map[string]any)["header"].(map[string]any)["x"] = 1 },
		"bad provider id":    func(m map[string]any) { m["provider"] = "Acme" },
		"empty provider id":  func(m map[string]any) { m["provider"] = "" },
		"no auth":            func(m map[string]any) { m["auth"] = map[string]any{} },
		"unknown auth kind":  func(m map[string]any) { m["auth"] = map[string]any{"magic": map[string]any{}} },
		"two auth kinds":     func(m map[string]any) { m["auth"].(map[string]any)["query"] = map[string]any{"param_name": "key"} },
		"undefined template": func(m map[string]any) {
			m["auth"].(map[string]any)["header"].(map[string]any)["value_template"] = "Bearer {{token}}"
		},
		"unused secret": func(m map[string]any) { m["vaultSecrets"].(map[string]any)["ACME_OTHER"] = "other" },
		"stray braces": func(m map[string]any) {
			m["auth"].(map[string]any)["header"].(map[string]any)["value_template"] = "Bearer {{secret"
		},
		"stray close": func(m map[string]any) {
			m["auth"].(map[string]any)["header"].(map[string]any)["value_template"] = "}}{{secret}}"
		},
		"crlf in template": func(m map[string]any) {
			m["auth"].(map[string]any)["header"].(map[string]any)["value_template"] = "{{secret}}\r\nHost: evil.test"
		},
		"bad header name":      func(m map[string]any) { m["auth"].(map[string]any)["header"].(map[string]any)["header_name"] = "x bad" },
		"host header":          func(m map[string]any) { m["auth"].(map[string]any)["header"].(map[string]any)["header_name"] = "Host" },
		"no secrets":           func(m map[string]any) { m["vaultSecrets"] = map[string]any{} },
		"bad secret name":      func(m map[string]any) { m["vaultSecrets"] = map[string]any{"acme_key": "secret"} },
		"bad placeholder":      func(m map[string]any) { m["vaultSecrets"] = map[string]any{"ACME_API_KEY": "Secret"} },
		"alias to unknown":     func(m map[string]any) { m["secretAliases"] = map[string]any{"ACME_KEY": "NOPE"} },
		"alias is canonical":   func(m map[string]any) { m["secretAliases"] = map[string]any{"ACME_API_KEY": "ACME_API_KEY"} },
		"empty hosts":          func(m map[string]any) { m["hosts"] = []any{} },
		"host with port":       func(m map[string]any) { m["hosts"] = []any{"api.acme.test:443"} },
		"upper-case host":      func(m map[string]any) { m["hosts"] = []any{"API.acme.test", "*.tenant.acme.test"} },
		"mid wildcard":         func(m map[string]any) { m["hosts"] = []any{"api.*.acme.test"} },
		"bare wildcard":        func(m map[string]any) { m["hosts"] = []any{"*.test"} },
		"partial wildcard":     func(m map[string]any) { m["hosts"] = []any{"api.acme.test", "*x.tenant.acme.test"} },
		"duplicate host":       func(m map[string]any) { m["hosts"] = []any{"api.acme.test", "api.acme.test"} },
		"no capabilities":      func(m map[string]any) { m["capabilities"] = []any{} },
		"empty cap hosts":      func(m map[string]any) { capAllow(m, 0)["hosts"] = []any{} },
		"empty methods":        func(m map[string]any) { capAllow(m, 0)["methods"] = []any{} },
		"empty prefixes":       func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{} },
		"null prefixes":        func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = nil },
		"lower-case method":    func(m map[string]any) { capAllow(m, 0)["methods"] = []any{"get"} },
		"unknown method":       func(m map[string]any) { capAllow(m, 0)["methods"] = []any{"TRACE"} },
		"duplicate method":     func(m map[string]any) { capAllow(m, 0)["methods"] = []any{"GET", "GET"} },
		"prefix no slash":      func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"v1"} },
		"prefix dotdot":        func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"/v1/../admin"} },
		"prefix double slash":  func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"//v1"} },
		"prefix percent":       func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"/v1%2f"} },
		"prefix backslash":     func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"/v1\\x"} },
		"prefix query":         func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"/v1?x"} },
		"prefix fragment":      func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"/v1#x"} },
		"prefix space":         func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"/v1 x"} },
		"prefix control":       func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"/v1\x00"} },
		"prefix tab":           func(m map[string]any) { capAllow(m, 0)["pathPrefixes"] = []any{"/v1\t"} },
		"cap host outside":     func(m map[string]any) { capAllow(m, 0)["hosts"] = []any{"evil.test"} },
		"cap host lookalike":   func(m map[string]any) { capAllow(m, 1)["hosts"] = []any{"tenant.acme.test.evil.test"} },
		"cap wildcard broader": func(m map[string]any) { capAllow(m, 1)["hosts"] = []any{"*.acme.test"} },
		"cap id wrong provider": func(m map[string]any) {
			m["capabilities"].([]any)[0].(map[string]any)["id"] = "other/things"
		},
		"cap id no slash": func(m map[string]any) { m["capabilities"].([]any)[0].(map[string]any)["id"] = "acme" },
		"cap provider mismatch": func(m map[string]any) {
			m["capabilities"].([]any)[0].(map[string]any)["provider"] = "other"
		},
		"cap with credential": func(m map[string]any) {
			m["capabilities"].([]any)[0].(map[string]any)["credential"] = "x"
		},
		"duplicate cap id": func(m map[string]any) {
			m["capabilities"].([]any)[1].(map[string]any)["id"] = "acme/things"
		},
		"oauth2 http endpoint": func(m map[string]any) {
			m["auth"] = map[string]any{"o_auth2": map[string]any{"grant_type": "refresh_token", "token_endpoint": "http://api.acme.test/token"}}
		},
		"oauth2 foreign endpoint": func(m map[string]any) {
			m["auth"] = map[string]any{"o_auth2": map[string]any{"grant_type": "refresh_token", "token_endpoint": "https://evil.test/token"}}
		},
		"oauth2 endpoint userinfo": func(m map[string]any) {
			m["auth"] = map[string]any{"o_auth2": map[string]any{"grant_type": "refresh_token", "token_endpoint": "https://u@api.acme.test/token"}}
		},
		"oauth2 endpoint port": func(m map[string]any) {
			m["auth"] = map[string]any{"o_auth2": map[string]any{"grant_type": "refresh_token", "token_endpoint": "https://api.acme.test:8443/token"}}
		},
		"oauth2 bad grant": func(m map[string]any) {
			m["auth"] = map[string]any{"o_auth2": map[string]any{"grant_type": "password", "token_endpoint": "https://api.acme.test/token"}}
		},
		"basic with template secret": func(m map[string]any) {
			m["vaultSecrets"] = map[string]any{"ACME_USER": "username"}
			m["auth"] = map[string]any{"basic": map[string]any{}}
		},
		"basic fixed user extra": func(m map[string]any) {
			m["vaultSecrets"] = map[string]any{"ACME_USER": "username", "ACME_PASS": "password"}
			m["auth"] = map[string]any{"basic": map[string]any{"username": "api"}}
		},
		"path no slash": func(m map[string]any) {
			m["auth"] = map[string]any{"path": map[string]any{"prefix_template": "bot{{secret}}"}}
		},
		"path dotdot": func(m map[string]any) {
			m["auth"] = map[string]any{"path": map[string]any{"prefix_template": "/../bot{{secret}}"}}
		},
		"query bad name": func(m map[string]any) {
			m["auth"] = map[string]any{"query": map[string]any{"param_name": "a&b"}}
		},
		"multi_query dup": func(m map[string]any) {
			m["auth"] = map[string]any{"multi_query": []any{
				map[string]any{"param_name": "k", "value_template": "{{secret}}"},
				map[string]any{"param_name": "k", "value_template": "{{secret}}"}}}
		},
		"hmac without signature": func(m map[string]any) {
			m["auth"] = map[string]any{"hmac": map[string]any{"algorithm": "sha256", "header_name": "x-sig", "value_template": "{{secret}}"}}
		},
		"hmac md5": func(m map[string]any) {
			m["auth"] = map[string]any{"hmac": map[string]any{"algorithm": "md5", "header_name": "x-sig", "value_template": "{{signature}}"}}
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseProvider(mutateProvider(t, f))
			if err == nil {
				t.Fatal("accepted")
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Class != ClassInvalidRequest {
				t.Errorf("error %v is not a classed InvalidRequest", err)
			}
		})
	}
}

func TestParseProviderSyntax(t *testing.T) {
	cases := map[string]string{
		"trailing object":  validProviderJSON + `{}`,
		"trailing garbage": validProviderJSON + `x`,
		"not json":         `provider: acme`,
		"empty":            ``,
		"array":            `[]`,
		"null":             `null`,
		"too large":        `{"provider":"` + strings.Repeat("a", regMaxFileBytes) + `"}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseProvider([]byte(in)); err == nil {
				t.Error("accepted")
			}
		})
	}
	if _, err := ParseProvider([]byte(validProviderJSON + "\n  \n")); err != nil {
		t.Errorf("trailing whitespace refused: %v", err)
	}
}

func TestNewRegistryCrossChecks(t *testing.T) {
	parse := func(f func(m map[string]any)) *Provider {
		p, err := ParseProvider(mutateProvider(t, f))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := parse(func(map[string]any) {})
	other := parse(func(m map[string]any) {
		m["provider"] = "other"
		m["vaultSecrets"] = map[string]any{"OTHER_KEY": "secret"}
		for i := range m["capabilities"].([]any) {
			c := m["capabilities"].([]any)[i].(map[string]any)
			c["provider"] = "other"
			c["id"] = strings.Replace(c["id"].(string), "acme/", "other/", 1)
		}
	})
	if _, err := NewRegistry([]*Provider{base, other}); err != nil {
		t.Fatalf("valid pair refused: %v", err)
	}
	sameSecret := parse(func(m map[string]any) {
		m["provider"] = "other"
		for i := range m["capabilities"].([]any) {
			c := m["capabilities"].([]any)[i].(map[string]any)
			c["provider"] = "other"
			c["id"] = strings.Replace(c["id"].(string), "acme/", "other/", 1)
		}
	})
	aliasClash := parse(func(m map[string]any) {
		m["provider"] = "other"
		m["vaultSecrets"] = map[string]any{"OTHER_KEY": "secret"}
		m["secretAliases"] = map[string]any{"ACME_API_KEY": "OTHER_KEY"}
		for i := range m["capabilities"].([]any) {
			c := m["capabilities"].([]any)[i].(map[string]any)
			c["provider"] = "other"
			c["id"] = strings.Replace(c["id"].(string), "acme/", "other/", 1)
		}
	})
	broken := parse(func(map[string]any) {})
	broken.Capabilities[0].Allow.Methods = nil
	cases := map[string][]*Provider{
		"duplicate provider":       {base, base},
		"secret claimed twice":     {base, sameSecret},
		"alias claims a canonical": {base, aliasClash},
		"invalid provider":         {broken},
		"nil provider":             {nil},
	}
	for name, ps := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := NewRegistry(ps); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestNilRegistry(t *testing.T) {
	var reg *Registry
	if _, ok := reg.Provider("openai"); ok {
		t.Error("nil registry has openai")
	}
	if _, ok := reg.Capability("openai/chat-completions"); ok {
		t.Error("nil registry has a capability")
	}
	if _, _, _, ok := reg.ProviderForSecret("OPENAI_API_KEY"); ok {
		t.Error("nil registry claims a secret")
	}
	if len(reg.Providers()) != 0 || len(reg.Capabilities()) != 0 {
		t.Error("nil registry lists entries")
	}
}

// TestFuzzSeedsClassified keeps the committed corpus honest: seeds named
// valid-* parse, invalid-* are refused.
func TestFuzzSeedsClassified(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzParseProvider/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed corpus: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(raw), "\n")
		rest = strings.TrimSpace(rest)
		q, ok := strings.CutPrefix(rest, "[]byte(")
		q, ok2 := strings.CutSuffix(q, ")")
		data, err := strconv.Unquote(q)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: unexpected corpus format", f)
		}
		_, perr := ParseProvider([]byte(data))
		switch base := filepath.Base(f); {
		case strings.HasPrefix(base, "valid-") && perr != nil:
			t.Errorf("%s refused: %v", base, perr)
		case strings.HasPrefix(base, "invalid-") && perr == nil:
			t.Errorf("%s accepted", base)
		}
	}
}

func FuzzParseProvider(f *testing.F) {
	f.Add([]byte(validProviderJSON))
	for _, name := range []string{"openai.json", "trello.json", "google-gmail.json", "shopify.json", "mailgun.json", "telegram.json"} {
		data, err := fs.ReadFile(regFiles, "registry/"+name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProvider(data)
		if err != nil {
			return
		}
		enc, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		p2, err := ParseProvider(enc)
		if err != nil {
			t.Fatalf("re-parse of accepted provider failed: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the provider:\n%+v\n%+v", p, p2)
		}
		if _, err := NewRegistry([]*Provider{p}); err != nil {
			t.Fatalf("NewRegistry refused a valid provider: %v", err)
		}
	})
}
