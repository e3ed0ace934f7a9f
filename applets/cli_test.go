package applets

import (
	"bytes"
	"errors"
	"github.com/spf13/cobra"
	"strings"
	"testing"

	"github.com/aivault/aivault/policy"
)

func TestParseDotenv(t *testing.T) {
	in := `# comment
export OPENAI_API_KEY=sk-one
GITHUB_TOKEN="gh two"
SINGLE='quoted # not a comment'
PLAIN=value # trailing comment

`
	got, err := parseDotenv(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"OPENAI_API_KEY": "sk-one", "GITHUB_TOKEN": "gh two", "SINGLE": "quoted # not a comment", "PLAIN": "value"}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for _, e := range got {
		if want[e.Name] != string(e.Value) {
			t.Errorf("%s: got a different value than expected", e.Name)
		}
	}
	for _, bad := range []string{"NOEQUALS\n", "1BAD=x\n", "EMPTY=\n"} {
		if _, err := parseDotenv(strings.NewReader(bad)); err == nil {
			t.Errorf("parseDotenv(%q) accepted a bad line", bad)
		} else if strings.Contains(err.Error(), "x") && strings.Contains(bad, "=x") {
			t.Errorf("the error for %q repeats the value: %v", bad, err)
		}
	}
}

func TestParseHeader(t *testing.T) {
	for _, c := range []struct {
		in, name, value string
		ok              bool
	}{
		{"X-Trace: abc", "X-Trace", "abc", true},
		{"X-Trace=abc", "X-Trace", "abc", true},
		{"X-Url=http://a:b", "X-Url", "http://a:b", true},
		{"Accept: a=b", "Accept", "a=b", true},
		{"novalue", "", "", false},
	} {
		h, err := parseHeader(c.in)
		if (err == nil) != c.ok || err == nil && (h.Name != c.name || h.Value != c.value) {
			t.Errorf("parseHeader(%q) = %+v, %v", c.in, h, err)
		}
	}
}

func TestNormScope(t *testing.T) {
	for _, c := range []struct {
		scope, ws, grp, want string
		ok                   bool
	}{
		{"", "", "", policy.ScopeGlobal, true},
		{"", "w", "", policy.ScopeWorkspace, true},
		{"", "w", "g", policy.ScopeGroup, true},
		{"global", "w", "", "", false},
		{"workspace", "", "", "", false},
		{"workspace", "w", "g", "", false},
		{"group", "w", "", "", false},
		{"galaxy", "", "", "", false},
	} {
		got, err := normScope(c.scope, c.ws, c.grp)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("normScope(%q,%q,%q) = %q, %v", c.scope, c.ws, c.grp, got, err)
		}
	}
}

func TestEnvelopeStrict(t *testing.T) {
	cc := &cliCtx{stdin: strings.NewReader("")}
	for _, c := range []struct {
		name, env string
		ok        bool
	}{
		{"minimal", `{"capability":"openai/models","request":{"method":"GET","path":"/v1/models"}}`, true},
		{"url refused", `{"capability":"x/y","request":{"url":"https://evil.test/"}}`, false},
		{"unknown top-level", `{"capability":"x/y","host":"evil.test","request":{}}`, false},
		{"trailing data", `{"capability":"x/y","request":{}} {}`, false},
		{"two body modes", `{"capability":"x/y","request":{"body":"a","multipart":{"k":"v"}}}`, false},
	} {
		_, err := buildInvoke(cc, nil, &invokeFlags{request: c.env})
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
		var pe *policy.Error
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("%s: error is not classed: %v", c.name, err)
		}
	}
}

func TestRenderMarkdown(t *testing.T) {
	var b bytes.Buffer
	v := map[string]any{"b": []any{"x", map[string]any{"k": 1.0}}, "a": "s", "secretish": "drop", "code": "line"}
	renderMarkdown(&b, v, 0, map[string]bool{"secretish": true}, map[string]bool{"code": true})
	want := "- **a**: s\n- **b**:\n  1. x\n  2.\n    - **k**: 1\n- **code**:\n\n```\nline\n```\n\n"
	if b.String() != want {
		t.Errorf("renderMarkdown:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestReportErrorExitCodes(t *testing.T) {
	var b bytes.Buffer
	if got := reportError(&b, usagef("bad flag")); got != exitUsage {
		t.Errorf("usage error → %d", got)
	}
	b.Reset()
	if got := reportError(&b, policy.Errorf(policy.ClassPolicyViolation, "nope").WithHint("do this")); got != exitError {
		t.Errorf("policy error → %d", got)
	}
	if want := "aivault: error: PolicyViolation: nope\naivault: hint: do this\n"; b.String() != want {
		t.Errorf("output %q, want %q", b.String(), want)
	}
	if got := reportError(&b, &exitCodeError{code: 1}); got != 1 {
		t.Errorf("exitCodeError → %d", got)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"/v1/chat": "/v1/chat", "/a b": "'/a b'", "/it's": `'/it'\''s'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvMode(t *testing.T) {
	t.Setenv("AIVAULTD_TEST_MODE", "0660")
	if m, err := envMode("AIVAULTD_TEST_MODE", 0o600); err != nil || m != 0o660 {
		t.Errorf("envMode = %o, %v", m, err)
	}
	t.Setenv("AIVAULTD_TEST_MODE", "rw")
	if _, err := envMode("AIVAULTD_TEST_MODE", 0o600); err == nil {
		t.Error("envMode accepted a non-octal mode")
	}
}

// TestInvokeTreeMatchesFullTree: the trimmed tree built for the invoke
// commands says exactly what the full tree says about them.
func TestInvokeTreeMatchesFullTree(t *testing.T) {
	for _, args := range [][]string{
		{"invoke", "--help"}, {"json", "--help"}, {"markdown", "--help"}, {"md", "--help"},
		{"invoke", "--no-such-flag"}, {"invoke", "a", "b"}, {"json", "--method"},
	} {
		run := func(root *cobra.Command) (int, string, string) {
			var out, errb bytes.Buffer
			code := execute(root, args, &out, &errb)
			return code, out.String(), errb.String()
		}
		c1, o1, e1 := run(newRootCmd(args...))
		c2, o2, e2 := run(newRootCmd())
		if c1 != c2 || o1 != o2 || e1 != e2 {
			t.Errorf("%v: trimmed tree (exit %d)\n%s%s\nfull tree (exit %d)\n%s%s", args, c1, o1, e1, c2, o2, e2)
		}
		if o1 == "" && e1 == "" {
			t.Errorf("%v printed nothing", args)
		}
	}
}
