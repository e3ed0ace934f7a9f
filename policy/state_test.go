package policy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// wantClass fails unless err is a classed *Error of class (or nil when class
// is "").
func wantClass(t *testing.T, err error, class string) {
	t.Helper()
	if class == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v, want class %s", err, class)
	}
	if pe.Class != class {
		t.Fatalf("error class = %s (%v), want %s", pe.Class, err, class)
	}
}

func TestNewStateAndNormalize(t *testing.T) {
	s := NewState()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"credentials":[],"capabilities":[],"policies":{},"bindings":[],"grants":[],"attachments":[]}`
	if string(b) != want {
		t.Errorf("empty state = %s, want %s", b, want)
	}

	s = &State{
		Credentials:  []Credential{{ID: "b"}, {ID: "a"}},
		Capabilities: []Capability{{ID: "x/b"}, {ID: "x/a"}},
		Grants:       []Grant{{UID: 2, Capability: "*"}, {UID: 1, Capability: "z/*"}, {UID: 1, Capability: "a/*"}},
		Bindings:     []Binding{{Capability: "b/x"}, {Capability: "a/x", Scope: "workspace"}, {Capability: "a/x", Scope: "global"}},
		Attachments:  []Attachment{{SecretID: "s2"}, {SecretID: "s1"}},
	}
	s.Normalize()
	if s.Version != StateVersion || s.Policies == nil {
		t.Error("Normalize did not fill version/policies")
	}
	if s.Credentials[0].ID != "a" || s.Credentials[0].Secrets == nil || s.Credentials[0].Hosts == nil {
		t.Errorf("credentials not sorted/filled: %+v", s.Credentials)
	}
	if s.Capabilities[0].ID != "x/a" {
		t.Error("capabilities not sorted")
	}
	if g := s.Grants; g[0].Capability != "a/*" || g[1].Capability != "z/*" || g[2].UID != 2 {
		t.Errorf("grants not sorted: %+v", g)
	}
	if b := s.Bindings; b[0].Scope != "global" || b[1].Scope != "workspace" || b[2].Capability != "b/x" {
		t.Errorf("bindings not sorted: %+v", b)
	}
	if s.Attachments[0].SecretID != "s1" {
		t.Error("attachments not sorted")
	}
	// Stable: normalising twice encodes identically.
	b1, _ := json.Marshal(s)
	s.Normalize()
	b2, _ := json.Marshal(s)
	if string(b1) != string(b2) {
		t.Error("Normalize is not idempotent")
	}
}

func TestResolveCapability(t *testing.T) {
	reg := mustBuiltin(t)
	s := NewState()
	s.Capabilities = append(s.Capabilities, Capability{ID: "acme/things", Provider: "acme", Credential: "acme",
		Allow: Allow{Hosts: []string{"api.acme.test"}, Methods: []string{"GET"}, PathPrefixes: []string{"/"}}})

	c, custom, err := ResolveCapability(reg, s, "openai/chat-completions")
	wantClass(t, err, "")
	if custom || c.Provider != "openai" {
		t.Errorf("registry capability resolved as %+v custom=%v", c, custom)
	}
	c, custom, err = ResolveCapability(reg, s, "acme/things")
	wantClass(t, err, "")
	if !custom || c.Credential != "acme" {
		t.Errorf("custom capability resolved as %+v custom=%v", c, custom)
	}
	c.Allow.Hosts[0] = "evil.test"
	if got, _ := s.CustomCapability("acme/things"); got.Allow.Hosts[0] != "api.acme.test" {
		t.Error("ResolveCapability returned an alias into the state")
	}
	_, _, err = ResolveCapability(reg, s, "openai/nope")
	wantClass(t, err, ClassCapabilityNotFound)
	var pe *Error
	errors.As(err, &pe)
	if !strings.Contains(pe.Hint, "aivault capability list") {
		t.Errorf("hint = %q", pe.Hint)
	}
}

func TestEffectiveHost(t *testing.T) {
	cases := []struct {
		name      string
		cred, cap []string
		want      string
	}{
		{"exact", []string{"api.openai.com"}, []string{"api.openai.com"}, "api.openai.com"},
		{"one of several cred hosts", []string{"agent.deepgram.com", "api.deepgram.com"}, []string{"api.deepgram.com"}, "api.deepgram.com"},
		{"wildcard cap", []string{"shop1.myshopify.com"}, []string{"*.myshopify.com"}, "shop1.myshopify.com"},
		{"wildcard cap deeper", []string{"a.b.myshopify.com"}, []string{"*.myshopify.com"}, "a.b.myshopify.com"},
		{"disjoint", []string{"evil.test"}, []string{"api.openai.com"}, ""},
		{"apex vs wildcard", []string{"myshopify.com"}, []string{"*.myshopify.com"}, ""},
		{"lookalike", []string{"myshopify.com.evil.test"}, []string{"*.myshopify.com"}, ""},
		{"suffix lookalike", []string{"evilmyshopify.com"}, []string{"*.myshopify.com"}, ""},
		{"wildcard cred never concrete", []string{"*.myshopify.com"}, []string{"*.myshopify.com"}, ""},
		{"unnormalised cred host", []string{"API.openai.com"}, []string{"api.openai.com"}, ""},
		{"two matches", []string{"a.myshopify.com", "b.myshopify.com"}, []string{"*.myshopify.com"}, ""},
		{"empty cred", nil, []string{"api.openai.com"}, ""},
		{"empty cap", []string{"api.openai.com"}, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EffectiveHost(tc.cred, tc.cap)
			if tc.want == "" {
				wantClass(t, err, ClassPolicyViolation)
				return
			}
			wantClass(t, err, "")
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCapabilityPatternValid(t *testing.T) {
	cases := map[string]bool{
		"*": true, "openai/*": true, "openai/chat-completions": true, "calendly/event_types": true,
		"": false, "**": false, "openai": false, "openai/": false, "/*": false, "*/x": false,
		"Openai/*": false, "openai/chat*": false, "openai/a/b": false, "openai/*/x": false, "open ai/*": false,
	}
	for p, want := range cases {
		if got := CapabilityPatternValid(p); got != want {
			t.Errorf("CapabilityPatternValid(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestGrants(t *testing.T) {
	s := NewState()
	bad := []Grant{
		{User: "", UID: 1000, Capability: "*"},
		{User: "bob x", UID: 1000, Capability: "*"},
		{User: "bob", UID: -1, Capability: "*"},
		{User: "bob", UID: 1000, Capability: "openai"},
		{User: "bob", UID: 1000, Capability: "*", GroupID: "g1"},
		{User: "bob", UID: 1000, Capability: "*", WorkspaceID: "w/1"},
	}
	for _, g := range bad {
		wantClass(t, AddGrant(s, g), ClassInvalidRequest)
	}
	if len(s.Grants) != 0 {
		t.Fatal("invalid grants were stored")
	}
	for _, g := range []Grant{
		{User: "bob", UID: 1000, Capability: "*", WorkspaceID: "w0"},
		{User: "bob", UID: 1000, Capability: "openai/*", WorkspaceID: "w1"},
		{User: "bob", UID: 1000, Capability: "openai/chat-completions", WorkspaceID: "w2", GroupID: "g"},
		{User: "eve", UID: 1001, Capability: "anthropic/*"},
	} {
		wantClass(t, AddGrant(s, g), "")
	}
	cases := []struct {
		uid    int
		cap    string
		wantWS string
		ok     bool
	}{
		{1000, "openai/chat-completions", "w2", true},
		{1000, "openai/models", "w1", true},
		{1000, "anthropic/messages", "w0", true},
		{1001, "anthropic/messages", "", true},
		{1001, "openai/models", "", false},
		{1001, "anthropicx/messages", "", false},
		{1002, "openai/models", "", false},
	}
	for _, tc := range cases {
		g, ok := GrantFor(s, tc.uid, tc.cap)
		if ok != tc.ok || (ok && g.WorkspaceID != tc.wantWS) {
			t.Errorf("GrantFor(%d, %s) = %+v, %v", tc.uid, tc.cap, g, ok)
		}
	}
	// Same uid+pattern replaces.
	wantClass(t, AddGrant(s, Grant{User: "bob", UID: 1000, Capability: "openai/*", WorkspaceID: "w9"}), "")
	if g, _ := GrantFor(s, 1000, "openai/models"); g.WorkspaceID != "w9" {
		t.Errorf("grant not replaced: %+v", g)
	}
	if len(s.Grants) != 4 {
		t.Errorf("%d grants, want 4", len(s.Grants))
	}
	n, err := RevokeGrant(s, "bob", "openai/*")
	if err != nil || n != 1 {
		t.Errorf("RevokeGrant = %d, %v", n, err)
	}
	n, err = RevokeGrant(s, "1000", "")
	if err != nil || n != 2 {
		t.Errorf("RevokeGrant by uid = %d, %v", n, err)
	}
	n, err = RevokeGrant(s, "bob", "")
	if err != nil || n != 0 {
		t.Errorf("RevokeGrant nothing = %d, %v", n, err)
	}
	_, err = RevokeGrant(s, "eve", "bad pattern")
	wantClass(t, err, ClassInvalidRequest)
	if _, ok := GrantFor(s, 1001, "anthropic/messages"); !ok {
		t.Error("eve's grant was revoked")
	}
}

func TestSetPolicy(t *testing.T) {
	s := NewState()
	cases := []struct {
		name  string
		cap   string
		p     CapPolicy
		class string
	}{
		{"ok", "openai/chat-completions", CapPolicy{RateLimitPerMinute: 10, MaxRequestBodyBytes: 1 << 20, ResponseBlock: []string{"api_key"}}, ""},
		{"negative rate", "openai/chat-completions", CapPolicy{RateLimitPerMinute: -1}, ClassInvalidRequest},
		{"negative req", "openai/chat-completions", CapPolicy{MaxRequestBodyBytes: -1}, ClassInvalidRequest},
		{"negative resp", "openai/chat-completions", CapPolicy{MaxResponseBodyBytes: -5}, ClassInvalidRequest},
		{"empty block entry", "openai/chat-completions", CapPolicy{ResponseBlock: []string{""}}, ClassInvalidRequest},
		{"control in block", "openai/chat-completions", CapPolicy{ResponseBlock: []string{"a\nb"}}, ClassInvalidRequest},
		{"bad id", "openai", CapPolicy{RateLimitPerMinute: 1}, ClassInvalidRequest},
		{"pattern id", "openai/*", CapPolicy{RateLimitPerMinute: 1}, ClassInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantClass(t, SetPolicy(s, tc.cap, tc.p), tc.class)
		})
	}
	if p := s.Policies["openai/chat-completions"]; p.RateLimitPerMinute != 10 {
		t.Errorf("policy = %+v; a refused update changed it", p)
	}
	wantClass(t, SetPolicy(s, "openai/chat-completions", CapPolicy{}), "")
	if _, ok := s.Policies["openai/chat-completions"]; ok {
		t.Error("zero policy did not remove the entry")
	}
}
