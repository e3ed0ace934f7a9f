package policy

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// mkSecret builds secret metadata the way the vault does: pinned to the
// registry provider of its name.
func mkSecret(reg *Registry, id, name, scope, ws, group string) SecretInfo {
	return SecretInfo{ID: id, Name: name, Scope: scope, WorkspaceID: ws, GroupID: group, Pinned: PinFor(reg, name)}
}

func glob(reg *Registry, id, name string) SecretInfo {
	return mkSecret(reg, id, name, ScopeGlobal, "", "")
}

// provisionAll stores secrets one by one, provisioning after each.
func provisionAll(t *testing.T, reg *Registry, s *State, secrets []SecretInfo) {
	t.Helper()
	for i, sec := range secrets {
		if _, err := Provision(reg, s, secrets[:i+1], sec); err != nil {
			t.Fatalf("Provision(%s): %v", sec.Name, err)
		}
	}
}

func TestPinFor(t *testing.T) {
	reg := mustBuiltin(t)
	cases := map[string]string{
		"OPENAI_API_KEY": "openai", "FAL_API_KEY": "fal", "TRELLO_TOKEN": "trello",
		"MY_KEY": "", "openai_api_key": "", "": "",
	}
	for name, want := range cases {
		if got := PinFor(reg, name); got != want {
			t.Errorf("PinFor(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestProvisionCanonicalSecrets(t *testing.T) {
	reg := mustBuiltin(t)
	named := map[string]string{
		"OPENAI_API_KEY": "openai", "ANTHROPIC_API_KEY": "anthropic", "GITHUB_TOKEN": "github",
		"STRIPE_API_KEY": "stripe", "SLACK_BOT_TOKEN": "slack", "GEMINI_API_KEY": "gemini",
		"TELEGRAM_BOT_TOKEN": "telegram", "MAILGUN_API_KEY": "mailgun", "GOOGLE_GMAIL_OAUTH": "google-gmail",
		"GOOGLE_CALENDAR_OAUTH": "google-calendar", "YOUTUBE_API_KEY": "youtube", "DEEPGRAM_API_KEY": "deepgram",
		"NOTION_TOKEN": "notion", "X_BEARER_TOKEN": "x", "REMOVE_BG_API_KEY": "remove-bg", "FAL_API_KEY": "fal",
	}
	for name, provider := range named {
		t.Run(name, func(t *testing.T) {
			s := NewState()
			sec := glob(reg, "s-"+strings.ToLower(name), name)
			rep, err := Provision(reg, s, []SecretInfo{sec}, sec)
			wantClass(t, err, "")
			p, _ := reg.Provider(provider)
			if rep.Provider != provider || rep.Credential != provider || !rep.Ready || len(rep.Missing) != 0 || rep.Capabilities != len(p.Capabilities) {
				t.Fatalf("report = %+v", rep)
			}
			c, ok := s.Credential(provider)
			if !ok {
				t.Fatal("credential not created")
			}
			want := Credential{ID: provider, Provider: provider, Secrets: map[string]string{"secret": sec.ID},
				Auth: p.Auth, Hosts: p.Hosts, Scope: ScopeGlobal, Auto: true}
			if ph := p.VaultSecrets[strings.Replace(name, "FAL_API_KEY", "FAL_KEY", 1)]; ph != "secret" {
				want.Secrets = map[string]string{ph: sec.ID}
			}
			if !reflect.DeepEqual(*c, want) {
				t.Errorf("credential = %+v\nwant %+v", *c, want)
			}
		})
	}

	// Every single-secret provider with concrete hosts provisions itself.
	n := 0
	for _, p := range reg.Providers() {
		if len(p.VaultSecrets) != 1 || len(stConcreteHosts(p.Hosts)) == 0 {
			continue
		}
		for name := range p.VaultSecrets {
			s := NewState()
			sec := glob(reg, "id1", name)
			rep, err := Provision(reg, s, []SecretInfo{sec}, sec)
			if err != nil || !rep.Ready || rep.Credential != p.Provider || len(s.Credentials) != 1 {
				t.Errorf("%s: report %+v, %v", name, rep, err)
			}
			n++
		}
	}
	if n < 12 {
		t.Errorf("only %d providers provisioned", n)
	}
}

func TestProvisionMultiSecret(t *testing.T) {
	reg := mustBuiltin(t)
	cases := []struct {
		provider     string
		first, other string
		want         map[string]string
	}{
		{"trello", "TRELLO_API_KEY", "TRELLO_TOKEN", map[string]string{"key": "s1", "token": "s2"}},
		{"trello", "TRELLO_TOKEN", "TRELLO_API_KEY", map[string]string{"token": "s1", "key": "s2"}},
		{"twilio", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", map[string]string{"username": "s1", "password": "s2"}},
		{"plaid", "PLAID_SECRET", "PLAID_CLIENT_ID", map[string]string{"secret": "s1", "client_id": "s2"}},
	}
	for _, tc := range cases {
		t.Run(tc.provider+"/"+tc.first, func(t *testing.T) {
			s := NewState()
			s1 := glob(reg, "s1", tc.first)
			rep, err := Provision(reg, s, []SecretInfo{s1}, s1)
			wantClass(t, err, "")
			if rep.Ready || rep.Provider != tc.provider || !reflect.DeepEqual(rep.Missing, []string{tc.other}) ||
				!strings.Contains(rep.Hint, tc.other) {
				t.Fatalf("first report = %+v", rep)
			}
			if len(s.Credentials) != 0 {
				t.Fatal("credential created with a secret missing")
			}
			// The second secret in another scope does not complete it.
			wsSec := mkSecret(reg, "s3", tc.other, ScopeWorkspace, "w1", "")
			rep, _ = Provision(reg, s, []SecretInfo{s1, wsSec}, wsSec)
			if rep.Ready || rep.Credential != tc.provider+"@w1" || !reflect.DeepEqual(rep.Missing, []string{tc.first}) {
				t.Fatalf("cross-scope report = %+v", rep)
			}
			s2 := glob(reg, "s2", tc.other)
			rep, err = Provision(reg, s, []SecretInfo{s1, wsSec, s2}, s2)
			wantClass(t, err, "")
			if !rep.Ready || rep.Credential != tc.provider {
				t.Fatalf("second report = %+v", rep)
			}
			c, _ := s.Credential(tc.provider)
			if !reflect.DeepEqual(c.Secrets, tc.want) {
				t.Errorf("secrets = %v, want %v", c.Secrets, tc.want)
			}
		})
	}
}

func TestProvisionScopesAliasesAndEdgeCases(t *testing.T) {
	reg := mustBuiltin(t)

	t.Run("scoped ids", func(t *testing.T) {
		s := NewState()
		ws := mkSecret(reg, "a", "OPENAI_API_KEY", ScopeWorkspace, "w1", "")
		gr := mkSecret(reg, "b", "OPENAI_API_KEY", ScopeGroup, "w1", "g1")
		provisionAll(t, reg, s, []SecretInfo{ws, gr})
		c, ok := s.Credential("openai@w1")
		if !ok || c.Scope != ScopeWorkspace || c.WorkspaceID != "w1" || c.Secrets["secret"] != "a" {
			t.Errorf("workspace credential = %+v", c)
		}
		c, ok = s.Credential("openai@w1/g1")
		if !ok || c.Scope != ScopeGroup || c.GroupID != "g1" || c.Secrets["secret"] != "b" {
			t.Errorf("group credential = %+v", c)
		}
	})

	t.Run("alias and rotation", func(t *testing.T) {
		s := NewState()
		alias := glob(reg, "a1", "FAL_API_KEY")
		provisionAll(t, reg, s, []SecretInfo{alias})
		if c, _ := s.Credential("fal"); c == nil || c.Secrets["secret"] != "a1" {
			t.Fatalf("fal via alias = %+v", c)
		}
		canon := glob(reg, "c1", "FAL_KEY")
		all := []SecretInfo{alias, canon}
		if _, err := Provision(reg, s, all, canon); err != nil {
			t.Fatal(err)
		}
		if c, _ := s.Credential("fal"); c.Secrets["secret"] != "c1" {
			t.Errorf("newly stored FAL_KEY not used: %+v", c)
		}
		// Rotation of the alias makes it current again; still one credential.
		if _, err := Provision(reg, s, all, alias); err != nil {
			t.Fatal(err)
		}
		if c, _ := s.Credential("fal"); c.Secrets["secret"] != "a1" || len(s.Credentials) != 1 {
			t.Errorf("after rotation: %+v", s.Credentials)
		}
	})

	t.Run("not a registry name", func(t *testing.T) {
		s := NewState()
		sec := glob(reg, "x", "MY_KEY")
		rep, err := Provision(reg, s, []SecretInfo{sec}, sec)
		if err != nil || rep.Provider != "" || rep.Ready || len(s.Credentials) != 0 {
			t.Errorf("report %+v, %v", rep, err)
		}
	})

	t.Run("per-tenant shopify waits for a host", func(t *testing.T) {
		s := NewState()
		sec := glob(reg, "x", "SHOPIFY_ACCESS_TOKEN")
		rep, err := Provision(reg, s, []SecretInfo{sec}, sec)
		if err != nil || rep.Provider != "shopify" || rep.Ready || !strings.Contains(rep.Hint, ".myshopify.com") || len(s.Credentials) != 0 {
			t.Errorf("report %+v, %v", rep, err)
		}
	})

	t.Run("operator credential is not overwritten", func(t *testing.T) {
		s := NewState()
		mine := glob(reg, "m", "OPENAI_API_KEY")
		s.Credentials = append(s.Credentials, Credential{ID: "openai", Provider: "openai", Secrets: map[string]string{"secret": "m"},
			Hosts: []string{"api.openai.com"}, Scope: ScopeGlobal})
		other := glob(reg, "o", "OPENAI_API_KEY")
		_, err := Provision(reg, s, []SecretInfo{mine, other}, other)
		wantClass(t, err, ClassConflict)
		if c, _ := s.Credential("openai"); c.Secrets["secret"] != "m" || c.Auto {
			t.Errorf("operator credential changed: %+v", c)
		}
	})

	t.Run("contradicting pin", func(t *testing.T) {
		s := NewState()
		sec := glob(reg, "x", "OPENAI_API_KEY")
		sec.Pinned = "anthropic"
		_, err := Provision(reg, s, []SecretInfo{sec}, sec)
		wantClass(t, err, ClassPolicyViolation)
		if len(s.Credentials) != 0 {
			t.Error("credential created")
		}
	})

	t.Run("bad scope", func(t *testing.T) {
		s := NewState()
		sec := mkSecret(reg, "x", "OPENAI_API_KEY", ScopeWorkspace, "", "")
		_, err := Provision(reg, s, []SecretInfo{sec}, sec)
		wantClass(t, err, ClassInvalidRequest)
	})
}

func TestUnprovision(t *testing.T) {
	reg := mustBuiltin(t)
	s := NewState()
	alias := glob(reg, "a1", "FAL_API_KEY")
	canon := glob(reg, "c1", "FAL_KEY")
	tk := glob(reg, "t1", "TRELLO_API_KEY")
	tt := glob(reg, "t2", "TRELLO_TOKEN")
	oai := glob(reg, "o1", "OPENAI_API_KEY")
	oaiWS := mkSecret(reg, "o2", "OPENAI_API_KEY", ScopeWorkspace, "w1", "")
	all := []SecretInfo{alias, canon, tk, tt, oai, oaiWS}
	provisionAll(t, reg, s, all)
	wantClass(t, Bind(reg, s, all, Binding{Capability: "openai/models", SecretID: "o2", Scope: ScopeWorkspace, WorkspaceID: "w1"}), "")
	wantClass(t, AttachSecret(s, all, Attachment{SecretID: "o2", WorkspaceID: "w1", GroupID: "g1"}), "")

	del := func(id string) {
		all = slices.DeleteFunc(all, func(sec SecretInfo) bool { return sec.ID == id })
		Unprovision(reg, s, all, id)
	}
	del("c1")
	if c, ok := s.Credential("fal"); !ok || c.Secrets["secret"] != "a1" {
		t.Errorf("fal not re-provisioned from its alias: %+v", c)
	}
	del("t2")
	if _, ok := s.Credential("trello"); ok {
		t.Error("trello credential kept after its token was deleted")
	}
	del("o2")
	if _, ok := s.Credential("openai@w1"); ok {
		t.Error("workspace credential kept")
	}
	if len(s.Bindings) != 0 || len(s.Attachments) != 0 {
		t.Errorf("bindings %v / attachments %v kept", s.Bindings, s.Attachments)
	}
	if _, ok := s.Credential("openai"); !ok {
		t.Error("unrelated credential dropped")
	}
	// secrets list may still contain the deleted id: it is ignored.
	Unprovision(reg, s, []SecretInfo{alias, oai}, "a1")
	if _, ok := s.Credential("fal"); ok {
		t.Error("fal kept after both secrets were deleted")
	}
}

// credFixture is a registry, a state with an auto openai credential, and a
// secret set covering pinned, unpinned and scoped secrets.
func credFixture(t *testing.T) (*Registry, *State, []SecretInfo) {
	t.Helper()
	reg := mustBuiltin(t)
	s := NewState()
	secrets := []SecretInfo{
		glob(reg, "oai", "OPENAI_API_KEY"),
		glob(reg, "mine", "MY_KEY"),
		glob(reg, "mine2", "MY_OTHER_KEY"),
		glob(reg, "shop", "SHOPIFY_ACCESS_TOKEN"),
		glob(reg, "tk", "TRELLO_API_KEY"),
		glob(reg, "tt", "TRELLO_TOKEN"),
		glob(reg, "anth", "ANTHROPIC_API_KEY"),
		{ID: "sneaky", Name: "OPENAI_API_KEY", Scope: ScopeGlobal}, // canonical name, pin not recorded
		mkSecret(reg, "ws1key", "MY_WS_KEY", ScopeWorkspace, "w1", ""),
		mkSecret(reg, "g1key", "MY_G_KEY", ScopeGroup, "w1", "g1"),
		mkSecret(reg, "oaiws1", "OPENAI_API_KEY", ScopeWorkspace, "w1", ""),
	}
	if _, err := Provision(reg, s, secrets, secrets[0]); err != nil {
		t.Fatal(err)
	}
	return reg, s, secrets
}

func hdrAuth(name, tmpl string) Auth {
	return Auth{Header: &AuthHeader{HeaderName: name, ValueTemplate: tmpl}}
}

func TestValidateCredential(t *testing.T) {
	reg, s, secrets := credFixture(t)
	oaiAuth := hdrAuth("authorization", "Bearer {{secret}}")
	leak := hdrAuth("x-leak", "{{secret}}")
	one := func(id string) map[string]string { return map[string]string{"secret": id} }
	cases := []struct {
		name      string
		c         Credential
		class     string
		wantHosts []string
	}{
		// Pinned secrets stay on their provider's registry hosts.
		{"pinned secret to custom provider", Credential{ID: "c", Provider: "evil", Secrets: one("oai"), Auth: leak, Hosts: []string{"evil.test"}}, ClassPolicyViolation, nil},
		{"unrecorded pin to custom provider", Credential{ID: "c", Provider: "evil", Secrets: one("sneaky"), Auth: leak, Hosts: []string{"evil.test"}}, ClassPolicyViolation, nil},
		{"registry provider, foreign host", Credential{ID: "c", Provider: "openai", Secrets: one("oai"), Hosts: []string{"evil.test"}}, ClassPolicyViolation, nil},
		{"registry provider, extra host", Credential{ID: "c", Provider: "openai", Secrets: one("oai"), Hosts: []string{"api.openai.com", "evil.test"}}, ClassPolicyViolation, nil},
		{"registry provider, lookalike host", Credential{ID: "c", Provider: "openai", Secrets: one("oai"), Hosts: []string{"api.openai.com.evil.test"}}, ClassPolicyViolation, nil},
		{"registry provider, other auth", Credential{ID: "c", Provider: "openai", Secrets: one("oai"), Auth: leak}, ClassPolicyViolation, nil},
		{"registry provider, query auth", Credential{ID: "c", Provider: "openai", Secrets: one("oai"), Auth: Auth{Query: &AuthQuery{ParamName: "k"}}}, ClassPolicyViolation, nil},
		{"pinned to another provider", Credential{ID: "c", Provider: "anthropic", Secrets: one("oai")}, ClassPolicyViolation, nil},
		{"registry provider, same auth", Credential{ID: "c", Provider: "openai", Secrets: one("oai"), Auth: oaiAuth}, "", []string{"api.openai.com"}},
		{"registry provider, default hosts", Credential{ID: "c", Provider: "openai", Secrets: one("oai")}, "", []string{"api.openai.com"}},
		{"registry provider, unpinned secret", Credential{ID: "c", Provider: "openai", Secrets: one("mine")}, "", []string{"api.openai.com"}},
		{"registry provider, host normalised", Credential{ID: "c", Provider: "openai", Secrets: one("oai"), Hosts: []string{"API.OpenAI.com."}}, "", []string{"api.openai.com"}},
		// Per-tenant hosts.
		{"shopify no host", Credential{ID: "c", Provider: "shopify", Secrets: one("shop")}, ClassInvalidRequest, nil},
		{"shopify store", Credential{ID: "c", Provider: "shopify", Secrets: one("shop"), Hosts: []string{"shop1.myshopify.com"}}, "", []string{"shop1.myshopify.com"}},
		{"shopify apex", Credential{ID: "c", Provider: "shopify", Secrets: one("shop"), Hosts: []string{"myshopify.com"}}, ClassPolicyViolation, nil},
		{"shopify lookalike", Credential{ID: "c", Provider: "shopify", Secrets: one("shop"), Hosts: []string{"myshopify.com.evil.test"}}, ClassPolicyViolation, nil},
		{"shopify suffix lookalike", Credential{ID: "c", Provider: "shopify", Secrets: one("shop"), Hosts: []string{"shop1myshopify.com"}}, ClassPolicyViolation, nil},
		{"shopify wildcard", Credential{ID: "c", Provider: "shopify", Secrets: one("shop"), Hosts: []string{"*.myshopify.com"}}, ClassInvalidRequest, nil},
		{"shopify with port", Credential{ID: "c", Provider: "shopify", Secrets: one("shop"), Hosts: []string{"shop1.myshopify.com:443"}}, ClassInvalidRequest, nil},
		// Multi-secret registry providers.
		{"trello", Credential{ID: "c", Provider: "trello", Secrets: map[string]string{"key": "tk", "token": "tt"}}, "", []string{"api.trello.com"}},
		{"trello swapped", Credential{ID: "c", Provider: "trello", Secrets: map[string]string{"key": "tt", "token": "tk"}}, ClassInvalidRequest, nil},
		{"trello missing token", Credential{ID: "c", Provider: "trello", Secrets: map[string]string{"key": "tk"}}, ClassInvalidRequest, nil},
		{"trello extra placeholder", Credential{ID: "c", Provider: "trello", Secrets: map[string]string{"key": "tk", "token": "tt", "x": "mine"}}, ClassInvalidRequest, nil},
		// Custom providers.
		{"custom ok", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak, Hosts: []string{"api.acme.test"}}, "", []string{"api.acme.test"}},
		{"custom no auth", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Hosts: []string{"api.acme.test"}}, ClassInvalidRequest, nil},
		{"custom no host", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak}, ClassInvalidRequest, nil},
		{"custom wildcard host", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak, Hosts: []string{"*.acme.test"}}, ClassInvalidRequest, nil},
		{"custom url host", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak, Hosts: []string{"https://api.acme.test/"}}, ClassInvalidRequest, nil},
		{"custom numeric host", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak, Hosts: []string{"127.0.0.1"}}, ClassPolicyViolation, nil},
		{"custom loose numeric host", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak, Hosts: []string{"2130706433"}}, ClassPolicyViolation, nil},
		{"custom localhost", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak, Hosts: []string{"localhost"}}, ClassPolicyViolation, nil},
		{"custom metadata host", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak, Hosts: []string{"metadata.google.internal"}}, ClassPolicyViolation, nil},
		{"custom undefined placeholder", Credential{ID: "c", Provider: "acme", Secrets: map[string]string{"key": "mine"}, Auth: hdrAuth("x-k", "{{token}}"), Hosts: []string{"api.acme.test"}}, ClassInvalidRequest, nil},
		{"custom JSON secret field", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: hdrAuth("x-k", "{{apiKey}}"), Hosts: []string{"api.acme.test"}}, "", []string{"api.acme.test"}},
		{"custom JSON field without secret", Credential{ID: "c", Provider: "acme", Secrets: map[string]string{"key": "mine"}, Auth: hdrAuth("x-k", "{{key}}{{other}}"), Hosts: []string{"api.acme.test"}}, ClassInvalidRequest, nil},
		{"custom unused secret", Credential{ID: "c", Provider: "acme", Secrets: map[string]string{"key": "mine", "other": "mine2"}, Auth: hdrAuth("x-k", "{{key}}"), Hosts: []string{"api.acme.test"}}, ClassInvalidRequest, nil},
		{"custom basic JSON", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: Auth{Basic: &AuthBasic{}}, Hosts: []string{"api.acme.test"}}, "", []string{"api.acme.test"}},
		{"custom hmac", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: Auth{HMAC: &AuthHMAC{Algorithm: "sha256", HeaderName: "x-sig", ValueTemplate: "sha256={{signature}}"}}, Hosts: []string{"api.acme.test"}}, "", []string{"api.acme.test"}},
		{"custom header injection", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: hdrAuth("x-k", "{{secret}}\r\nHost: evil.test"), Hosts: []string{"api.acme.test"}}, ClassInvalidRequest, nil},
		{"custom two kinds", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: Auth{Header: leak.Header, Query: &AuthQuery{ParamName: "k"}}, Hosts: []string{"api.acme.test"}}, ClassInvalidRequest, nil},
		{"custom oauth2 foreign endpoint", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: Auth{OAuth2: &AuthOAuth2{GrantType: "refresh_token", TokenEndpoint: "https://evil.test/token"}}, Hosts: []string{"api.acme.test"}}, ClassInvalidRequest, nil},
		// Scopes.
		{"workspace secret in global credential", Credential{ID: "c", Provider: "acme", Secrets: one("ws1key"), Auth: leak, Hosts: []string{"api.acme.test"}}, ClassPolicyViolation, nil},
		{"workspace secret in other workspace", Credential{ID: "c", Provider: "acme", Secrets: one("ws1key"), Auth: leak, Hosts: []string{"api.acme.test"}, Scope: ScopeWorkspace, WorkspaceID: "w2"}, ClassPolicyViolation, nil},
		{"workspace secret in its workspace", Credential{ID: "c", Provider: "acme", Secrets: one("ws1key"), Auth: leak, Hosts: []string{"api.acme.test"}, Scope: ScopeWorkspace, WorkspaceID: "w1"}, "", []string{"api.acme.test"}},
		{"workspace secret in a group of it", Credential{ID: "c", Provider: "acme", Secrets: one("ws1key"), Auth: leak, Hosts: []string{"api.acme.test"}, Scope: ScopeGroup, WorkspaceID: "w1", GroupID: "g2"}, "", []string{"api.acme.test"}},
		{"group secret in workspace credential", Credential{ID: "c", Provider: "acme", Secrets: one("g1key"), Auth: leak, Hosts: []string{"api.acme.test"}, Scope: ScopeWorkspace, WorkspaceID: "w1"}, ClassPolicyViolation, nil},
		{"group secret in other group", Credential{ID: "c", Provider: "acme", Secrets: one("g1key"), Auth: leak, Hosts: []string{"api.acme.test"}, Scope: ScopeGroup, WorkspaceID: "w1", GroupID: "g2"}, ClassPolicyViolation, nil},
		{"bad scope", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak, Hosts: []string{"api.acme.test"}, Scope: "planet"}, ClassInvalidRequest, nil},
		{"global scope with workspace", Credential{ID: "c", Provider: "acme", Secrets: one("mine"), Auth: leak, Hosts: []string{"api.acme.test"}, WorkspaceID: "w1"}, ClassInvalidRequest, nil},
		// Ids and references.
		{"reserved id", Credential{ID: "openai@w1", Provider: "openai", Secrets: one("oai")}, ClassInvalidRequest, nil},
		{"upper-case id", Credential{ID: "Mine", Provider: "openai", Secrets: one("oai")}, ClassInvalidRequest, nil},
		{"bad provider id", Credential{ID: "c", Provider: "Evil", Secrets: one("mine"), Auth: leak, Hosts: []string{"api.acme.test"}}, ClassInvalidRequest, nil},
		{"no secrets", Credential{ID: "c", Provider: "openai"}, ClassInvalidRequest, nil},
		{"missing secret", Credential{ID: "c", Provider: "openai", Secrets: one("nope")}, ClassSecretNotFound, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			err := ValidateCredential(reg, s, secrets, &c)
			wantClass(t, err, tc.class)
			if err != nil {
				if strings.Contains(err.Error(), "Bearer") {
					t.Errorf("error leaks template text: %v", err)
				}
				return
			}
			if !reflect.DeepEqual(c.Hosts, tc.wantHosts) {
				t.Errorf("hosts = %v, want %v", c.Hosts, tc.wantHosts)
			}
			if p, ok := reg.Provider(c.Provider); ok && !reflect.DeepEqual(c.Auth, p.Auth) {
				t.Errorf("auth = %+v, want the registry's", c.Auth)
			}
			if c.Scope == "" {
				t.Error("scope not filled")
			}
		})
	}
}

func TestAddDeleteCredential(t *testing.T) {
	reg, s, secrets := credFixture(t)
	c := Credential{ID: "acme", Provider: "acme", Secrets: map[string]string{"secret": "mine"},
		Auth: hdrAuth("x-key", "{{secret}}"), Hosts: []string{"api.acme.test"}, Auto: true}
	wantClass(t, AddCredential(reg, s, secrets, c), "")
	got, ok := s.Credential("acme")
	if !ok || got.Auto || got.Scope != ScopeGlobal {
		t.Fatalf("stored %+v", got)
	}
	c.Secrets["secret"] = "mine2" // caller's map must not alias the state
	if got.Secrets["secret"] != "mine" {
		t.Error("AddCredential kept the caller's map")
	}
	wantClass(t, AddCredential(reg, s, secrets, c), ClassConflict)
	wantClass(t, AddCredential(reg, s, secrets, Credential{ID: "openai", Provider: "openai", Secrets: map[string]string{"secret": "oai"}}), ClassConflict)

	wantClass(t, AddCustomCapability(reg, s, Capability{ID: "acme/all", Credential: "acme",
		Allow: Allow{Hosts: []string{"api.acme.test"}, Methods: []string{"GET"}, PathPrefixes: []string{"/"}}}), "")
	err := DeleteCredential(s, "acme")
	wantClass(t, err, ClassConflict)
	if !strings.Contains(err.Error(), "acme/all") {
		t.Errorf("refusal does not name the capability: %v", err)
	}
	wantClass(t, SetPolicy(s, "acme/all", CapPolicy{RateLimitPerMinute: 5}), "")
	wantClass(t, Bind(reg, s, secrets, Binding{Capability: "acme/all", SecretID: "mine2"}), "")
	wantClass(t, DeleteCustomCapability(s, "acme/all"), "")
	if _, ok := s.Policies["acme/all"]; ok || len(s.Bindings) != 0 {
		t.Error("policy/bindings of the deleted capability kept")
	}
	wantClass(t, DeleteCustomCapability(s, "acme/all"), ClassCapabilityNotFound)
	wantClass(t, DeleteCustomCapability(s, "openai/chat-completions"), ClassCapabilityNotFound)
	wantClass(t, DeleteCredential(s, "acme"), "")
	wantClass(t, DeleteCredential(s, "acme"), ClassCredentialNotFound)
}

func TestAddCustomCapability(t *testing.T) {
	reg, s, secrets := credFixture(t)
	wantClass(t, AddCredential(reg, s, secrets, Credential{ID: "acme", Provider: "acme", Secrets: map[string]string{"secret": "mine"},
		Auth: hdrAuth("x-key", "{{secret}}"), Hosts: []string{"api.acme.test", "up.acme.test"}}), "")
	wantClass(t, AddCredential(reg, s, secrets, Credential{ID: "shop1", Provider: "shopify", Secrets: map[string]string{"secret": "shop"},
		Hosts: []string{"shop1.myshopify.com"}}), "")
	allow := func(hosts ...string) Allow {
		return Allow{Hosts: hosts, Methods: []string{"GET"}, PathPrefixes: []string{"/v1/"}}
	}
	cases := []struct {
		name  string
		c     Capability
		class string
	}{
		{"ok", Capability{ID: "acme/read", Credential: "acme", Allow: allow("api.acme.test")}, ""},
		{"ok second host", Capability{ID: "acme/up", Credential: "acme", Allow: allow("up.acme.test")}, ""},
		{"ok on registry credential", Capability{ID: "openai/everything", Credential: "openai", Allow: Allow{Hosts: []string{"api.openai.com"}, Methods: []string{"GET"}, PathPrefixes: []string{"/"}}}, ""},
		{"ok shopify store", Capability{ID: "shopify/products", Credential: "shop1", Allow: allow("shop1.myshopify.com")}, ""},
		{"pinned credential to evil", Capability{ID: "openai/evil", Credential: "openai", Allow: allow("evil.test")}, ClassPolicyViolation},
		{"pinned credential lookalike", Capability{ID: "openai/evil2", Credential: "openai", Allow: allow("api.openai.com.evil.test")}, ClassPolicyViolation},
		{"shopify other store", Capability{ID: "shopify/other", Credential: "shop1", Allow: allow("shop2.myshopify.com")}, ClassPolicyViolation},
		{"shopify wildcard", Capability{ID: "shopify/any", Credential: "shop1", Allow: allow("*.myshopify.com")}, ClassInvalidRequest},
		{"host not in credential", Capability{ID: "acme/x", Credential: "acme", Allow: allow("evil.test")}, ClassPolicyViolation},
		{"two hosts", Capability{ID: "acme/x", Credential: "acme", Allow: allow("api.acme.test", "up.acme.test")}, ClassInvalidRequest},
		{"id under other provider", Capability{ID: "evil/x", Credential: "openai", Allow: allow("api.openai.com")}, ClassInvalidRequest},
		{"provider mismatch", Capability{ID: "evil/x", Provider: "evil", Credential: "openai", Allow: allow("api.openai.com")}, ClassInvalidRequest},
		{"registry id", Capability{ID: "openai/chat-completions", Credential: "openai", Allow: allow("api.openai.com")}, ClassConflict},
		{"duplicate", Capability{ID: "acme/read", Credential: "acme", Allow: allow("api.acme.test")}, ClassConflict},
		{"no credential", Capability{ID: "acme/y", Allow: allow("api.acme.test")}, ClassInvalidRequest},
		{"missing credential", Capability{ID: "acme/y", Credential: "nope", Allow: allow("api.acme.test")}, ClassCredentialNotFound},
		{"bad id", Capability{ID: "acme", Credential: "acme", Allow: allow("api.acme.test")}, ClassInvalidRequest},
		{"empty methods", Capability{ID: "acme/y", Credential: "acme", Allow: Allow{Hosts: []string{"api.acme.test"}, PathPrefixes: []string{"/"}}}, ClassInvalidRequest},
		{"empty prefixes", Capability{ID: "acme/y", Credential: "acme", Allow: Allow{Hosts: []string{"api.acme.test"}, Methods: []string{"GET"}}}, ClassInvalidRequest},
		{"bad method", Capability{ID: "acme/y", Credential: "acme", Allow: Allow{Hosts: []string{"api.acme.test"}, Methods: []string{"CONNECT"}, PathPrefixes: []string{"/"}}}, ClassInvalidRequest},
		{"dotdot prefix", Capability{ID: "acme/y", Credential: "acme", Allow: Allow{Hosts: []string{"api.acme.test"}, Methods: []string{"GET"}, PathPrefixes: []string{"/v1/.."}}}, ClassInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.Capabilities)
			wantClass(t, AddCustomCapability(reg, s, tc.c), tc.class)
			if tc.class != "" && len(s.Capabilities) != before {
				t.Error("refused capability was stored")
			}
		})
	}
	if c, _ := s.CustomCapability("acme/read"); c.Provider != "acme" {
		t.Errorf("provider not filled: %+v", c)
	}
}

// TestPinnedSecretNeverReachesEvil tries every combination of credential
// (provider, hosts, auth, forced into the state or added properly), custom
// capability and binding, and checks that the pinned OpenAI key is only ever
// sent to api.openai.com.
func TestPinnedSecretNeverReachesEvil(t *testing.T) {
	reg, s, secrets := credFixture(t)
	hostSets := [][]string{{"api.openai.com"}, {"evil.test"}, {"api.openai.com", "evil.test"}, {"api.openai.com.evil.test"}, nil}
	auths := []Auth{{}, hdrAuth("authorization", "Bearer {{secret}}"), hdrAuth("x-leak", "{{secret}}")}
	providers := []string{"openai", "evil", "anthropic"}
	secretIDs := []string{"oai", "sneaky", "mine"}
	n := 0
	for _, prov := range providers {
		for _, hs := range hostSets {
			for _, a := range auths {
				for _, sid := range secretIDs {
					n++
					c := Credential{ID: fmt.Sprintf("c%d", n), Provider: prov, Secrets: map[string]string{"secret": sid}, Auth: a, Hosts: hs}
					_ = AddCredential(reg, s, secrets, c) // may be refused; that is the point
				}
			}
		}
	}
	// A tampered state: credentials that validation would refuse.
	s.Credentials = append(s.Credentials,
		Credential{ID: "forced1", Provider: "evil", Secrets: map[string]string{"secret": "oai"}, Auth: hdrAuth("x-leak", "{{secret}}"), Hosts: []string{"evil.test"}, Scope: ScopeGlobal},
		Credential{ID: "forced2", Provider: "openai", Secrets: map[string]string{"secret": "oai"}, Auth: hdrAuth("x-leak", "{{secret}}"), Hosts: []string{"evil.test"}, Scope: ScopeGlobal},
		Credential{ID: "forced3", Provider: "evil", Secrets: map[string]string{"secret": "mine"}, Auth: hdrAuth("x-leak", "{{secret}}"), Hosts: []string{"evil.test"}, Scope: ScopeGlobal},
	)
	s.Normalize()
	for _, cred := range slices.Clone(s.Credentials) {
		for i, h := range []string{"api.openai.com", "evil.test", "api.openai.com.evil.test"} {
			_ = AddCustomCapability(reg, s, Capability{ID: fmt.Sprintf("%s/x-%s-%d", cred.Provider, cred.ID, i), Credential: cred.ID,
				Allow: Allow{Hosts: []string{h}, Methods: []string{"POST"}, PathPrefixes: []string{"/"}}})
		}
	}
	s.Capabilities = append(s.Capabilities, Capability{ID: "openai/forced", Provider: "openai", Credential: "openai",
		Allow: Allow{Hosts: []string{"evil.test"}, Methods: []string{"POST"}, PathPrefixes: []string{"/"}}})
	caps := []Capability{}
	for _, c := range s.Capabilities {
		caps = append(caps, c)
	}
	rc, _ := reg.Capability("openai/chat-completions")
	caps = append(caps, *rc)
	for _, c := range caps {
		for _, sid := range secretIDs {
			_ = Bind(reg, s, secrets, Binding{Capability: c.ID, SecretID: sid})
		}
	}
	reached := 0
	for _, c := range caps {
		for _, explicit := range append([]string{""}, credIDs(s)...) {
			s2 := *s // bindings may make selection fail; try with and without them
			for _, withBindings := range []bool{true, false} {
				if !withBindings {
					s2.Bindings = nil
				}
				cred, final, err := SelectCredential(reg, &s2, secrets, &c, Context{}, explicit)
				if err != nil {
					continue
				}
				host, err := EffectiveHost(cred.Hosts, c.Allow.Hosts)
				if err != nil {
					continue
				}
				for _, id := range final {
					if id == "oai" || id == "sneaky" {
						reached++
						if host != "api.openai.com" {
							t.Fatalf("pinned secret %s reaches %s via capability %s credential %s (explicit %q)", id, host, c.ID, cred.ID, explicit)
						}
						if !reflect.DeepEqual(cred.Auth, hdrAuth("authorization", "Bearer {{secret}}")) {
							t.Fatalf("pinned secret rendered with non-registry auth %+v", cred.Auth)
						}
					}
				}
			}
		}
	}
	if reached == 0 {
		t.Fatal("the pinned secret was never usable at all; the test checks nothing")
	}
}

func credIDs(s *State) []string {
	var ids []string
	for _, c := range s.Credentials {
		ids = append(ids, c.ID)
	}
	return ids
}

func TestShopifyPerTenant(t *testing.T) {
	reg, s, secrets := credFixture(t)
	for _, h := range []string{"myshopify.com", "myshopify.com.evil.test", "shop1.myshopify.com.evil.test", "evil.test"} {
		err := AddCredential(reg, s, secrets, Credential{ID: "shop", Provider: "shopify", Secrets: map[string]string{"secret": "shop"}, Hosts: []string{h}})
		wantClass(t, err, ClassPolicyViolation)
	}
	wantClass(t, AddCredential(reg, s, secrets, Credential{ID: "shop", Provider: "shopify", Secrets: map[string]string{"secret": "shop"},
		Hosts: []string{"shop1.myshopify.com"}}), "")
	capShop, _ := reg.Capability("shopify/admin")
	cred, final, err := SelectCredential(reg, s, secrets, capShop, Context{}, "")
	wantClass(t, err, "")
	host, err := EffectiveHost(cred.Hosts, capShop.Allow.Hosts)
	wantClass(t, err, "")
	if host != "shop1.myshopify.com" || final["secret"] != "shop" {
		t.Errorf("host %s secrets %v", host, final)
	}
}

func TestSelectCredentialScopes(t *testing.T) {
	reg := mustBuiltin(t)
	capOAI, _ := reg.Capability("openai/chat-completions")
	g := glob(reg, "glob", "OPENAI_API_KEY")
	w1 := mkSecret(reg, "w1", "OPENAI_API_KEY", ScopeWorkspace, "w1", "")
	g1 := mkSecret(reg, "g1", "OPENAI_API_KEY", ScopeGroup, "w1", "g1")

	t.Run("workspace secret unusable elsewhere", func(t *testing.T) {
		s := NewState()
		secrets := []SecretInfo{w1}
		provisionAll(t, reg, s, secrets)
		for _, ctx := range []Context{{}, {WorkspaceID: "w2"}, {WorkspaceID: "w2", GroupID: "g1"}} {
			_, _, err := SelectCredential(reg, s, secrets, capOAI, ctx, "")
			wantClass(t, err, ClassCredentialNotFound)
			_, _, err = SelectCredential(reg, s, secrets, capOAI, ctx, "openai@w1")
			wantClass(t, err, ClassCredentialNotFound)
		}
		for _, ctx := range []Context{{WorkspaceID: "w1"}, {WorkspaceID: "w1", GroupID: "g9"}} {
			cred, final, err := SelectCredential(reg, s, secrets, capOAI, ctx, "")
			wantClass(t, err, "")
			if cred.ID != "openai@w1" || final["secret"] != "w1" {
				t.Errorf("ctx %+v: %s %v", ctx, cred.ID, final)
			}
		}
	})

	t.Run("precedence group > workspace > global", func(t *testing.T) {
		s := NewState()
		secrets := []SecretInfo{g, w1, g1}
		provisionAll(t, reg, s, secrets)
		cases := []struct {
			ctx  Context
			want string
		}{
			{Context{WorkspaceID: "w1", GroupID: "g1"}, "openai@w1/g1"},
			{Context{WorkspaceID: "w1", GroupID: "g2"}, "openai@w1"},
			{Context{WorkspaceID: "w1"}, "openai@w1"},
			{Context{WorkspaceID: "w2", GroupID: "g1"}, "openai"},
			{Context{}, "openai"},
		}
		for _, tc := range cases {
			cred, final, err := SelectCredential(reg, s, secrets, capOAI, tc.ctx, "")
			wantClass(t, err, "")
			if cred.ID != tc.want {
				t.Errorf("ctx %+v: got %s, want %s", tc.ctx, cred.ID, tc.want)
			}
			if want, _ := s.Credential(tc.want); !reflect.DeepEqual(final, want.Secrets) {
				t.Errorf("ctx %+v: secrets %v", tc.ctx, final)
			}
		}
		// An explicit credential from another level is allowed if its scope admits ctx.
		cred, _, err := SelectCredential(reg, s, secrets, capOAI, Context{WorkspaceID: "w1", GroupID: "g1"}, "openai")
		wantClass(t, err, "")
		if cred.ID != "openai" {
			t.Errorf("explicit: %s", cred.ID)
		}
		_, _, err = SelectCredential(reg, s, secrets, capOAI, Context{GroupID: "g1"}, "")
		wantClass(t, err, ClassInvalidRequest)
	})

	t.Run("ambiguous and explicit", func(t *testing.T) {
		s := NewState()
		other := glob(reg, "team", "TEAM_OPENAI")
		secrets := []SecretInfo{g, other}
		provisionAll(t, reg, s, secrets)
		wantClass(t, AddCredential(reg, s, secrets, Credential{ID: "openai-team", Provider: "openai", Secrets: map[string]string{"secret": "team"}}), "")
		_, _, err := SelectCredential(reg, s, secrets, capOAI, Context{}, "")
		wantClass(t, err, ClassAmbiguous)
		if !strings.Contains(err.Error(), "openai, openai-team") {
			t.Errorf("ambiguity does not name the candidates: %v", err)
		}
		cred, final, err := SelectCredential(reg, s, secrets, capOAI, Context{}, "openai-team")
		wantClass(t, err, "")
		if cred.ID != "openai-team" || final["secret"] != "team" {
			t.Errorf("explicit: %s %v", cred.ID, final)
		}
		_, _, err = SelectCredential(reg, s, secrets, capOAI, Context{}, "nope")
		wantClass(t, err, ClassCredentialNotFound)
		capAnth, _ := reg.Capability("anthropic/messages")
		_, _, err = SelectCredential(reg, s, secrets, capAnth, Context{}, "openai")
		wantClass(t, err, ClassPolicyViolation)
		_, _, err = SelectCredential(reg, s, secrets, capAnth, Context{}, "")
		wantClass(t, err, ClassCredentialNotFound)
		var pe *Error
		errors.As(err, &pe)
		if !strings.Contains(pe.Hint, "ANTHROPIC_API_KEY") {
			t.Errorf("hint = %q", pe.Hint)
		}
	})

	t.Run("attached secret ranks as group", func(t *testing.T) {
		s := NewState()
		secrets := []SecretInfo{g, w1}
		provisionAll(t, reg, s, secrets)
		ctx := Context{WorkspaceID: "w1", GroupID: "g1"}
		cred, _, _ := SelectCredential(reg, s, secrets, capOAI, ctx, "")
		if cred.ID != "openai@w1" {
			t.Fatalf("before attach: %s", cred.ID)
		}
		wantClass(t, AttachSecret(s, secrets, Attachment{SecretID: "glob", WorkspaceID: "w1", GroupID: "g1"}), "")
		cred, _, _ = SelectCredential(reg, s, secrets, capOAI, ctx, "")
		if cred.ID != "openai" {
			t.Errorf("after attach: %s", cred.ID)
		}
		cred, _, _ = SelectCredential(reg, s, secrets, capOAI, Context{WorkspaceID: "w1", GroupID: "g2"}, "")
		if cred.ID != "openai@w1" {
			t.Errorf("other group after attach: %s", cred.ID)
		}
		// A workspace secret cannot be attached into another workspace.
		wantClass(t, AttachSecret(s, secrets, Attachment{SecretID: "w1", WorkspaceID: "w2", GroupID: "g1"}), ClassPolicyViolation)
		wantClass(t, AttachSecret(s, secrets, Attachment{SecretID: "nope", WorkspaceID: "w1", GroupID: "g1"}), ClassSecretNotFound)
		if !DetachSecret(s, Attachment{SecretID: "glob", WorkspaceID: "w1", GroupID: "g1"}) {
			t.Error("detach found nothing")
		}
	})

	t.Run("group secret attached to a sibling group", func(t *testing.T) {
		s := NewState()
		gs := mkSecret(reg, "gk", "OPENAI_API_KEY", ScopeGroup, "w1", "g1")
		secrets := []SecretInfo{gs}
		provisionAll(t, reg, s, secrets)
		g2 := Context{WorkspaceID: "w1", GroupID: "g2"}
		_, _, err := SelectCredential(reg, s, secrets, capOAI, g2, "")
		wantClass(t, err, ClassCredentialNotFound)
		wantClass(t, AttachSecret(s, secrets, Attachment{SecretID: "gk", WorkspaceID: "w1", GroupID: "g2"}), "")
		cred, final, err := SelectCredential(reg, s, secrets, capOAI, g2, "")
		if err != nil || cred.ID != "openai@w1/g1" || final["secret"] != "gk" {
			t.Fatalf("after attach: %v %v %v", cred, final, err)
		}
		// Not the workspace at large, not a third group.
		for _, ctx := range []Context{{WorkspaceID: "w1"}, {WorkspaceID: "w1", GroupID: "g3"}} {
			_, _, err := SelectCredential(reg, s, secrets, capOAI, ctx, "")
			wantClass(t, err, ClassCredentialNotFound)
		}
		// An operator-made credential keeps its own scope.
		wantClass(t, AddCredential(reg, s, secrets, Credential{ID: "mine", Provider: "openai", Secrets: map[string]string{"secret": "gk"},
			Scope: ScopeGroup, WorkspaceID: "w1", GroupID: "g1"}), "")
		if lvl := stCredLevel(s, secrets, &Credential{ID: "mine", Provider: "openai", Secrets: map[string]string{"secret": "gk"},
			Scope: ScopeGroup, WorkspaceID: "w1", GroupID: "g1"}, g2); lvl != stLevelNone {
			t.Errorf("operator credential level from g2 = %d", lvl)
		}
		DetachSecret(s, Attachment{SecretID: "gk", WorkspaceID: "w1", GroupID: "g2"})
		_, _, err = SelectCredential(reg, s, secrets, capOAI, g2, "")
		wantClass(t, err, ClassCredentialNotFound)
	})

	t.Run("tampered attachment does not cross workspaces", func(t *testing.T) {
		s := NewState()
		mk := mkSecret(reg, "k", "MY_KEY", ScopeWorkspace, "w1", "")
		secrets := []SecretInfo{mk}
		wantClass(t, AddCredential(reg, s, secrets, Credential{ID: "acme", Provider: "acme", Secrets: map[string]string{"secret": "k"},
			Auth: hdrAuth("x-k", "{{secret}}"), Hosts: []string{"api.acme.test"}, Scope: ScopeWorkspace, WorkspaceID: "w1"}), "")
		wantClass(t, AddCustomCapability(reg, s, Capability{ID: "acme/x", Credential: "acme",
			Allow: Allow{Hosts: []string{"api.acme.test"}, Methods: []string{"GET"}, PathPrefixes: []string{"/"}}}), "")
		s.Attachments = append(s.Attachments, Attachment{SecretID: "k", WorkspaceID: "w2", GroupID: "g"})
		c, _ := s.CustomCapability("acme/x")
		_, _, err := SelectCredential(reg, s, secrets, c, Context{WorkspaceID: "w2", GroupID: "g"}, "")
		wantClass(t, err, ClassCredentialNotFound)
	})
}

func TestBindings(t *testing.T) {
	reg := mustBuiltin(t)
	capOAI, _ := reg.Capability("openai/chat-completions")
	secrets := []SecretInfo{
		glob(reg, "glob", "OPENAI_API_KEY"),
		mkSecret(reg, "w1", "OPENAI_API_KEY", ScopeWorkspace, "w1", ""),
		glob(reg, "anth", "ANTHROPIC_API_KEY"),
		glob(reg, "mine", "MY_KEY"),
		glob(reg, "mine2", "MY_KEY_2"),
		glob(reg, "tk", "TRELLO_API_KEY"),
		glob(reg, "tt", "TRELLO_TOKEN"),
		glob(reg, "tt2", "TRELLO_TOKEN"),
	}
	s := NewState()
	provisionAll(t, reg, s, []SecretInfo{secrets[0], secrets[5], secrets[6]})
	wantClass(t, AddCredential(reg, s, secrets, Credential{ID: "acme", Provider: "acme", Secrets: map[string]string{"secret": "mine"},
		Auth: hdrAuth("x-k", "{{secret}}"), Hosts: []string{"api.acme.test"}}), "")
	wantClass(t, AddCustomCapability(reg, s, Capability{ID: "acme/x", Credential: "acme",
		Allow: Allow{Hosts: []string{"api.acme.test"}, Methods: []string{"GET"}, PathPrefixes: []string{"/"}}}), "")

	cases := []struct {
		name  string
		b     Binding
		class string
	}{
		{"workspace binding", Binding{Capability: "openai/chat-completions", SecretID: "w1", Scope: ScopeWorkspace, WorkspaceID: "w1"}, ""},
		{"workspace secret at global scope", Binding{Capability: "openai/chat-completions", SecretID: "w1"}, ClassPolicyViolation},
		{"workspace secret in other workspace", Binding{Capability: "openai/chat-completions", SecretID: "w1", Scope: ScopeWorkspace, WorkspaceID: "w2"}, ClassPolicyViolation},
		{"other provider's secret", Binding{Capability: "openai/chat-completions", SecretID: "anth"}, ClassPolicyViolation},
		{"unpinned secret to registry capability", Binding{Capability: "openai/chat-completions", SecretID: "mine"}, ClassPolicyViolation},
		{"pinned secret to custom capability", Binding{Capability: "acme/x", SecretID: "glob"}, ClassPolicyViolation},
		{"unpinned to custom capability", Binding{Capability: "acme/x", SecretID: "mine2"}, ""},
		{"trello token", Binding{Capability: "trello/cards", SecretID: "tt2"}, ""},
		{"missing capability", Binding{Capability: "openai/nope", SecretID: "glob"}, ClassCapabilityNotFound},
		{"missing secret", Binding{Capability: "openai/chat-completions", SecretID: "nope"}, ClassSecretNotFound},
		{"bad scope", Binding{Capability: "openai/chat-completions", SecretID: "glob", Scope: ScopeGroup, WorkspaceID: "w1"}, ClassInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantClass(t, Bind(reg, s, secrets, tc.b), tc.class)
		})
	}
	if len(s.Bindings) != 3 {
		t.Fatalf("bindings = %+v", s.Bindings)
	}

	_, final, err := SelectCredential(reg, s, secrets, capOAI, Context{WorkspaceID: "w1"}, "")
	wantClass(t, err, "")
	if final["secret"] != "w1" {
		t.Errorf("workspace binding not applied: %v", final)
	}
	_, final, _ = SelectCredential(reg, s, secrets, capOAI, Context{WorkspaceID: "w2"}, "")
	if final["secret"] != "glob" {
		t.Errorf("binding leaked into another workspace: %v", final)
	}
	capCards, _ := reg.Capability("trello/cards")
	_, final, _ = SelectCredential(reg, s, secrets, capCards, Context{}, "")
	if !reflect.DeepEqual(final, map[string]string{"key": "tk", "token": "tt2"}) {
		t.Errorf("trello binding: %v", final)
	}
	capX, _ := s.CustomCapability("acme/x")
	_, final, _ = SelectCredential(reg, s, secrets, capX, Context{}, "")
	if final["secret"] != "mine2" {
		t.Errorf("custom binding: %v", final)
	}
	// The credential in the state is unchanged by selection.
	if c, _ := s.Credential("acme"); c.Secrets["secret"] != "mine" {
		t.Error("SelectCredential mutated the state")
	}

	// Rebinding replaces; unbinding counts.
	wantClass(t, Bind(reg, s, secrets, Binding{Capability: "acme/x", SecretID: "mine"}), "")
	if len(s.Bindings) != 3 {
		t.Errorf("rebind appended: %+v", s.Bindings)
	}
	n, err := Unbind(s, Binding{Capability: "acme/x", SecretID: "mine2"})
	if err != nil || n != 0 {
		t.Errorf("Unbind wrong secret = %d, %v", n, err)
	}
	n, err = Unbind(s, Binding{Capability: "acme/x"})
	if err != nil || n != 1 {
		t.Errorf("Unbind = %d, %v", n, err)
	}
	_, err = Unbind(s, Binding{Capability: "acme/x", Scope: "nowhere"})
	wantClass(t, err, ClassInvalidRequest)

	// A tampered binding to a secret pinned elsewhere is refused at selection.
	s.Bindings = append(s.Bindings, Binding{Capability: "acme/x", SecretID: "glob", Scope: ScopeGlobal})
	_, _, err = SelectCredential(reg, s, secrets, capX, Context{}, "")
	wantClass(t, err, ClassPolicyViolation)
}

func TestSelectCredentialDefenceInDepth(t *testing.T) {
	reg := mustBuiltin(t)
	capOAI, _ := reg.Capability("openai/chat-completions")
	secrets := []SecretInfo{glob(reg, "glob", "OPENAI_API_KEY")}

	t.Run("registry auth wins over stored auth", func(t *testing.T) {
		s := NewState()
		provisionAll(t, reg, s, secrets)
		c, _ := s.Credential("openai")
		c.Auth = hdrAuth("x-leak", "{{secret}}")
		cred, _, err := SelectCredential(reg, s, secrets, capOAI, Context{}, "")
		wantClass(t, err, "")
		if cred.Auth.Header == nil || cred.Auth.Header.HeaderName != "authorization" {
			t.Errorf("auth = %+v", cred.Auth)
		}
	})
	t.Run("stored host outside registry", func(t *testing.T) {
		s := NewState()
		provisionAll(t, reg, s, secrets)
		c, _ := s.Credential("openai")
		c.Hosts = []string{"evil.test"}
		_, _, err := SelectCredential(reg, s, secrets, capOAI, Context{}, "")
		wantClass(t, err, ClassPolicyViolation)
	})
	t.Run("secret deleted behind its back", func(t *testing.T) {
		s := NewState()
		provisionAll(t, reg, s, secrets)
		_, _, err := SelectCredential(reg, s, nil, capOAI, Context{}, "")
		wantClass(t, err, ClassSecretNotFound)
	})
	t.Run("secret scope changed", func(t *testing.T) {
		s := NewState()
		provisionAll(t, reg, s, secrets)
		moved := []SecretInfo{mkSecret(reg, "glob", "OPENAI_API_KEY", ScopeWorkspace, "w1", "")}
		_, _, err := SelectCredential(reg, s, moved, capOAI, Context{WorkspaceID: "w2"}, "")
		wantClass(t, err, ClassPolicyViolation)
	})
	t.Run("custom capability credential missing", func(t *testing.T) {
		s := NewState()
		c := &Capability{ID: "acme/x", Provider: "acme", Credential: "gone", Allow: Allow{Hosts: []string{"a.test"}, Methods: []string{"GET"}, PathPrefixes: []string{"/"}}}
		_, _, err := SelectCredential(reg, s, secrets, c, Context{}, "")
		wantClass(t, err, ClassCredentialNotFound)
		_, _, err = SelectCredential(reg, s, secrets, c, Context{}, "other")
		wantClass(t, err, ClassPolicyViolation)
		_, _, err = SelectCredential(reg, s, secrets, nil, Context{}, "")
		wantClass(t, err, ClassCapabilityNotFound)
	})
}
