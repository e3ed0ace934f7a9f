package policy

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

var rntNow = time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)

func rntOut() *Outgoing {
	return &Outgoing{
		Method:  "POST",
		Path:    "/v1/chat/completions",
		Headers: []Header{{"Accept", "application/json"}, {"Content-Type", "application/json"}},
		Body:    []byte(`{"model":"x"}`),
		Host:    "api.example.test",
	}
}

func rntHeader(out *Outgoing, name string) (string, int) {
	v, n := "", 0
	for _, h := range out.Headers {
		if strings.EqualFold(h.Name, name) {
			v, n = h.Value, n+1
		}
	}
	return v, n
}

func rntHasScrub(scrub [][]byte, v string) bool {
	return slices.ContainsFunc(scrub, func(b []byte) bool { return string(b) == v })
}

func rntVals(kv ...string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}

func TestRenderHeaderStrategies(t *testing.T) {
	tests := []struct {
		name      string
		auth      Auth
		values    map[string][]byte
		headers   map[string]string
		wantScrub []string
	}{
		{
			name:      "bearer",
			auth:      Auth{Header: &AuthHeader{HeaderName: "authorization", ValueTemplate: "Bearer {{secret}}"}},
			values:    rntVals("secret", "sk-test-123"),
			headers:   map[string]string{"authorization": "Bearer sk-test-123"},
			wantScrub: []string{"sk-test-123"},
		},
		{
			name:      "raw key, spaced placeholder",
			auth:      Auth{Header: &AuthHeader{HeaderName: "x-api-key", ValueTemplate: "{{ secret }}"}},
			values:    rntVals("secret", "ant-key"),
			headers:   map[string]string{"x-api-key": "ant-key"},
			wantScrub: []string{"ant-key"},
		},
		{
			name:      "two placeholders",
			auth:      Auth{Header: &AuthHeader{HeaderName: "X-Auth", ValueTemplate: "Token {{id}}:{{secret}}"}},
			values:    rntVals("id", "user1", "secret", "pw"),
			headers:   map[string]string{"X-Auth": "Token user1:pw"},
			wantScrub: []string{"user1", "pw"},
		},
		{
			name:      "placeholder from JSON secret",
			auth:      Auth{Header: &AuthHeader{HeaderName: "X-Auth", ValueTemplate: "{{apiKey}}"}},
			values:    rntVals("secret", `{"apiKey":"k\u0041y","n":5}`),
			headers:   map[string]string{"X-Auth": "kAy"},
			wantScrub: []string{"kAy"},
		},
		{
			name: "multi_header",
			auth: Auth{MultiHeader: []AuthHeader{
				{HeaderName: "PLAID-CLIENT-ID", ValueTemplate: "{{client_id}}"},
				{HeaderName: "PLAID-SECRET", ValueTemplate: "{{secret}}"},
			}},
			values:    rntVals("client_id", "cid", "secret", "psec"),
			headers:   map[string]string{"PLAID-CLIENT-ID": "cid", "PLAID-SECRET": "psec"},
			wantScrub: []string{"cid", "psec"},
		},
		{
			name:      "basic fixed user",
			auth:      Auth{Basic: &AuthBasic{Username: "api"}},
			values:    rntVals("password", "key-mg"),
			headers:   map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("api:key-mg"))},
			wantScrub: []string{"key-mg", base64.StdEncoding.EncodeToString([]byte("api:key-mg"))},
		},
		{
			name:      "basic fixed user, plain secret placeholder",
			auth:      Auth{Basic: &AuthBasic{Username: "api"}},
			values:    rntVals("secret", "key-mg"),
			headers:   map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("api:key-mg"))},
			wantScrub: []string{"key-mg"},
		},
		{
			name:      "basic user and password placeholders",
			auth:      Auth{Basic: &AuthBasic{}},
			values:    rntVals("username", "ACxxx", "password", "tok"),
			headers:   map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ACxxx:tok"))},
			wantScrub: []string{"ACxxx", "tok", base64.StdEncoding.EncodeToString([]byte("ACxxx:tok"))},
		},
		{
			name:      "basic JSON secret",
			auth:      Auth{Basic: &AuthBasic{}},
			values:    rntVals("secret", `{"username":"u","password":"p:w"}`),
			headers:   map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p:w"))},
			wantScrub: []string{"u", "p:w"},
		},
		{
			name:      "o_auth2",
			auth:      Auth{OAuth2: &AuthOAuth2{GrantType: "refresh_token"}},
			values:    rntVals("access_token", "ya29.tok", "secret", `{"refresh_token":"r"}`),
			headers:   map[string]string{"Authorization": "Bearer ya29.tok"},
			wantScrub: []string{"ya29.tok"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := rntOut()
			out.Headers = append(out.Headers, Header{"AUTHORIZATION", "caller"}, Header{"x-api-key", "caller"})
			scrub, err := RenderAuth(tc.auth, tc.values, out, rntNow)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.headers {
				got, n := rntHeader(out, name)
				if n != 1 || got != want {
					t.Errorf("header %s = %q (%d copies), want %q once", name, got, n, want)
				}
				if !slices.ContainsFunc(out.Headers, func(h Header) bool { return h.Name == name }) {
					t.Errorf("header %s not spelled as configured", name)
				}
			}
			if v, _ := rntHeader(out, "Accept"); v != "application/json" {
				t.Errorf("unrelated header lost")
			}
			if out.Path != "/v1/chat/completions" || out.RawQuery != "" {
				t.Errorf("target changed: %q %q", out.Path, out.RawQuery)
			}
			for _, s := range tc.wantScrub {
				if !rntHasScrub(scrub, s) {
					t.Errorf("scrub lacks %q", s)
				}
			}
			for _, s := range scrub {
				if len(s) == 0 {
					t.Errorf("empty scrub entry")
				}
			}
		})
	}
}

func TestRenderQueryStrategies(t *testing.T) {
	tests := []struct {
		name      string
		auth      Auth
		values    map[string][]byte
		query     string
		wantQuery string
		wantScrub []string
	}{
		{
			name:      "query appended",
			auth:      Auth{Query: &AuthQuery{ParamName: "key"}},
			values:    rntVals("secret", "AIza-1"),
			query:     "alt=json",
			wantQuery: "alt=json&key=AIza-1",
			wantScrub: []string{"AIza-1"},
		},
		{
			name:      "query escaped, empty query",
			auth:      Auth{Query: &AuthQuery{ParamName: "api key"}},
			values:    rntVals("secret", "a b&c=d/é+"),
			wantQuery: "api+key=a+b%26c%3Dd%2F%C3%A9%2B",
			wantScrub: []string{"a b&c=d/é+", "a+b%26c%3Dd%2F%C3%A9%2B"},
		},
		{
			name: "multi_query placeholders",
			auth: Auth{MultiQuery: []AuthQueryParam{
				{ParamName: "key", ValueTemplate: "{{key}}"},
				{ParamName: "token", ValueTemplate: "{{token}}"},
			}},
			values:    rntVals("key", "k1", "token", "t&1"),
			query:     "fields=name",
			wantQuery: "fields=name&key=k1&token=t%261",
			wantScrub: []string{"k1", "t&1"},
		},
		{
			name: "multi_query JSON secret",
			auth: Auth{MultiQuery: []AuthQueryParam{
				{ParamName: "key", ValueTemplate: "{{key}}"},
				{ParamName: "token", ValueTemplate: "pre-{{token}}"},
			}},
			values:    rntVals("secret", `{"key":"k2","token":"t2"}`),
			wantQuery: "key=k2&token=pre-t2",
			wantScrub: []string{"k2", "t2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := rntOut()
			out.RawQuery = tc.query
			scrub, err := RenderAuth(tc.auth, tc.values, out, rntNow)
			if err != nil {
				t.Fatal(err)
			}
			if out.RawQuery != tc.wantQuery {
				t.Errorf("query = %q, want %q", out.RawQuery, tc.wantQuery)
			}
			if out.Path != "/v1/chat/completions" || len(out.Headers) != 2 {
				t.Errorf("path/headers changed: %q %q", out.Path, out.Headers)
			}
			for _, s := range tc.wantScrub {
				if !rntHasScrub(scrub, s) {
					t.Errorf("scrub lacks %q", s)
				}
			}
		})
	}
}

func TestRenderQueryRefusesCallerCopy(t *testing.T) {
	for _, q := range []string{"key=mine", "a=1&KEY=mine", "a=1;key=x", "k%65y=x"} {
		out := rntOut()
		out.RawQuery = q
		_, err := RenderAuth(Auth{Query: &AuthQuery{ParamName: "key"}}, rntVals("secret", "s3cr3t"), out, rntNow)
		rqtWantErr(t, err, ClassPolicyViolation, "set by the credential")
		if out.RawQuery != q {
			t.Errorf("out changed on error")
		}
	}
}

func TestRenderPath(t *testing.T) {
	tests := []struct {
		tmpl, secret, path string
		want               string
		wantScrub          []string
	}{
		{"/bot{{secret}}", "123:ABC-def_x", "/getMe", "/bot123:ABC-def_x/getMe", []string{"123:ABC-def_x"}},
		{"/bot{{secret}}", "123", "/", "/bot123/", []string{"123"}},
		{"/bot{{secret}}", "123", "", "/bot123", []string{"123"}},
		{"/v1/{{secret}}/", "k", "/x", "/v1/k/x", []string{"k"}},
		{"/bot{{secret}}", "a/b?c#d%e", "/getMe", "/bota%2Fb%3Fc%23d%25e/getMe", []string{"a/b?c#d%e", "a%2Fb%3Fc%23d%25e"}},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			out := rntOut()
			out.Path = tc.path
			scrub, err := RenderAuth(Auth{Path: &AuthPath{PrefixTemplate: tc.tmpl}}, rntVals("secret", tc.secret), out, rntNow)
			if err != nil {
				t.Fatal(err)
			}
			if out.Path != tc.want {
				t.Errorf("path = %q, want %q", out.Path, tc.want)
			}
			for _, s := range tc.wantScrub {
				if !rntHasScrub(scrub, s) {
					t.Errorf("scrub lacks %q", s)
				}
			}
		})
	}
}

// rntSecret is the secret used by the refusal tests; no error may contain it.
const rntSecret = "TOPSECRET-9f8e7d"

func TestRenderRefusals(t *testing.T) {
	jsonBad := `{"password":"` + rntSecret + `"` // truncated JSON
	tests := []struct {
		name   string
		auth   Auth
		values map[string][]byte
		class  string
		sub    string
	}{
		{"no strategy", Auth{}, nil, ClassInvalidRequest, "exactly one strategy"},
		{"two strategies", Auth{Query: &AuthQuery{ParamName: "k"}, MTLS: &AuthMTLS{}}, nil, ClassInvalidRequest, "exactly one strategy"},
		{"CRLF in secret", Auth{Header: &AuthHeader{HeaderName: "X-K", ValueTemplate: "{{secret}}"}},
			rntVals("secret", rntSecret+"\r\nX-Evil: 1"), ClassPolicyViolation, "control character"},
		{"NUL in secret", Auth{Header: &AuthHeader{HeaderName: "X-K", ValueTemplate: "{{secret}}"}},
			rntVals("secret", rntSecret+"\x00"), ClassPolicyViolation, "control character"},
		{"unknown placeholder", Auth{Header: &AuthHeader{HeaderName: "X-K", ValueTemplate: "{{nope}}"}},
			rntVals("secret", rntSecret), ClassInvalidRequest, `placeholder "nope"`},
		{"unterminated", Auth{Header: &AuthHeader{HeaderName: "X-K", ValueTemplate: "Bearer {{secret"}},
			rntVals("secret", rntSecret), ClassInvalidRequest, "unterminated"},
		{"unmatched close", Auth{Header: &AuthHeader{HeaderName: "X-K", ValueTemplate: "a}}{{secret}}"}},
			rntVals("secret", rntSecret), ClassInvalidRequest, "unmatched"},
		{"unmatched close at end", Auth{Header: &AuthHeader{HeaderName: "X-K", ValueTemplate: "{{secret}}}}"}},
			rntVals("secret", rntSecret), ClassInvalidRequest, "unmatched"},
		{"bad placeholder name", Auth{Header: &AuthHeader{HeaderName: "X-K", ValueTemplate: "{{a b}}"}},
			rntVals("secret", rntSecret), ClassInvalidRequest, "invalid placeholder"},
		{"empty secret", Auth{Header: &AuthHeader{HeaderName: "X-K", ValueTemplate: "{{secret}}"}},
			rntVals("secret", ""), ClassInvalidRequest, "empty"},
		{"bad header name", Auth{Header: &AuthHeader{HeaderName: "X K", ValueTemplate: "{{secret}}"}},
			rntVals("secret", rntSecret), ClassInvalidRequest, "not a valid token"},
		{"multi_header twice", Auth{MultiHeader: []AuthHeader{{HeaderName: "X-A", ValueTemplate: "{{secret}}"}, {HeaderName: "x-a", ValueTemplate: "{{secret}}"}}},
			rntVals("secret", rntSecret), ClassInvalidRequest, "twice"},
		{"query no name", Auth{Query: &AuthQuery{}}, rntVals("secret", rntSecret), ClassInvalidRequest, "no name"},
		{"multi_query twice", Auth{MultiQuery: []AuthQueryParam{{ParamName: "k", ValueTemplate: "{{secret}}"}, {ParamName: "k", ValueTemplate: "{{secret}}"}}},
			rntVals("secret", rntSecret), ClassInvalidRequest, "twice"},
		{"path dot secret", Auth{Path: &AuthPath{PrefixTemplate: "/{{secret}}"}}, rntVals("secret", ".."), ClassInvalidRequest, "dot segment"},
		{"path relative template", Auth{Path: &AuthPath{PrefixTemplate: "bot{{secret}}"}}, rntVals("secret", rntSecret), ClassInvalidRequest, "clean absolute path"},
		{"path traversal template", Auth{Path: &AuthPath{PrefixTemplate: "/a/../{{secret}}"}}, rntVals("secret", rntSecret), ClassInvalidRequest, "clean absolute path"},
		{"path template query", Auth{Path: &AuthPath{PrefixTemplate: "/a?{{secret}}"}}, rntVals("secret", rntSecret), ClassInvalidRequest, "clean absolute path"},
		{"basic no password", Auth{Basic: &AuthBasic{}}, rntVals("username", "u"), ClassInvalidRequest, `placeholder "password"`},
		{"basic colon user", Auth{Basic: &AuthBasic{}}, rntVals("username", "a:b", "password", rntSecret), ClassInvalidRequest, "must not contain ':'"},
		{"basic broken JSON", Auth{Basic: &AuthBasic{}}, rntVals("secret", jsonBad), ClassInvalidRequest, "placeholder"},
		{"oauth2 no token", Auth{OAuth2: &AuthOAuth2{}}, rntVals("secret", rntSecret), ClassInvalidRequest, "no OAuth2 access token"},
		{"oauth2 token with space", Auth{OAuth2: &AuthOAuth2{}}, rntVals("access_token", rntSecret+" x"), ClassInvalidRequest, "not allowed in a header"},
		{"sigv4 no region", Auth{AWSSigV4: &AuthSigV4{Service: "sqs"}}, rntVals("secret", rntSecret), ClassInvalidRequest, "service and a region"},
		{"sigv4 no keys", Auth{AWSSigV4: &AuthSigV4{Service: "sqs", Region: "us-east-1"}}, rntVals("secret", `{"accessKeyId":"AKID"}`), ClassInvalidRequest, `"secretAccessKey"`},
		{"sigv4 not JSON", Auth{AWSSigV4: &AuthSigV4{Service: "sqs", Region: "us-east-1"}}, rntVals("secret", rntSecret), ClassInvalidRequest, `"accessKeyId"`},
		{"hmac algorithm", Auth{HMAC: &AuthHMAC{Algorithm: "md5", HeaderName: "X-Sig", ValueTemplate: "{{signature}}"}}, rntVals("secret", rntSecret), ClassInvalidRequest, "not supported"},
		{"hmac no signature", Auth{HMAC: &AuthHMAC{Algorithm: "sha256", HeaderName: "X-Sig", ValueTemplate: "{{secret}}"}}, rntVals("secret", rntSecret), ClassInvalidRequest, "{{signature}}"},
		{"hmac no key", Auth{HMAC: &AuthHMAC{Algorithm: "sha256", HeaderName: "X-Sig", ValueTemplate: "{{signature}}"}}, nil, ClassInvalidRequest, `placeholder "secret"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := rntOut()
			before := fmt.Sprintf("%+v", *out)
			scrub, err := RenderAuth(tc.auth, tc.values, out, rntNow)
			rqtWantErr(t, err, tc.class, tc.sub)
			var pe *Error
			if errors.As(err, &pe) && (strings.Contains(pe.Msg, rntSecret) || strings.Contains(pe.Hint, rntSecret)) {
				t.Errorf("error leaks the secret: %q / %q", pe.Msg, pe.Hint)
			}
			if scrub != nil {
				t.Errorf("scrub returned with an error")
			}
			if after := fmt.Sprintf("%+v", *out); after != before {
				t.Errorf("out changed on error:\n%s\n%s", before, after)
			}
		})
	}
	if _, err := RenderAuth(Auth{MTLS: &AuthMTLS{}}, nil, nil, rntNow); err == nil {
		t.Errorf("nil out accepted")
	}
}

func TestRenderMTLS(t *testing.T) {
	out := rntOut()
	before := fmt.Sprintf("%+v", *out)
	scrub, err := RenderAuth(Auth{MTLS: &AuthMTLS{}}, rntVals("secret", `{"certPem":"x","keyPem":"y"}`), out, rntNow)
	if err != nil || scrub != nil {
		t.Fatalf("mtls: %v %q", err, scrub)
	}
	if fmt.Sprintf("%+v", *out) != before {
		t.Errorf("mtls changed the request")
	}
}

func TestRenderHMAC(t *testing.T) {
	tests := []struct {
		alg  string
		tmpl string
		want func(sig string) string
		sum  func(key, body []byte) string
	}{
		{"sha256", "{{signature}}", func(s string) string { return s }, func(k, b []byte) string {
			m := hmac.New(sha256.New, k)
			m.Write(b)
			return hex.EncodeToString(m.Sum(nil))
		}},
		{"HMAC-SHA512", "v1={{ signature }}; id={{key_id}}", func(s string) string { return "v1=" + s + "; id=kid-7" }, func(k, b []byte) string {
			m := hmac.New(sha512.New, k)
			m.Write(b)
			return hex.EncodeToString(m.Sum(nil))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.alg, func(t *testing.T) {
			out := rntOut()
			key := []byte("whsec_abc")
			scrub, err := RenderAuth(Auth{HMAC: &AuthHMAC{Algorithm: tc.alg, HeaderName: "X-Signature", ValueTemplate: tc.tmpl}},
				map[string][]byte{"secret": key, "key_id": []byte("kid-7")}, out, rntNow)
			if err != nil {
				t.Fatal(err)
			}
			sig := tc.sum(key, out.Body)
			if got, n := rntHeader(out, "X-Signature"); n != 1 || got != tc.want(sig) {
				t.Errorf("X-Signature = %q, want %q", got, tc.want(sig))
			}
			if strings.ToLower(sig) != sig {
				t.Errorf("signature not lower-case")
			}
			if !rntHasScrub(scrub, sig) || !rntHasScrub(scrub, "whsec_abc") {
				t.Errorf("scrub %q lacks the signature or key", scrub)
			}
			if string(key) != "whsec_abc" {
				t.Errorf("RenderAuth modified the caller's value")
			}
		})
	}
	// Empty body still signs (HMAC of nothing).
	out := rntOut()
	out.Body = nil
	if _, err := RenderAuth(Auth{HMAC: &AuthHMAC{Algorithm: "sha256", HeaderName: "X-Sig", ValueTemplate: "{{signature}}"}}, rntVals("secret", "k"), out, rntNow); err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, []byte("k"))
	if got, _ := rntHeader(out, "X-Sig"); got != hex.EncodeToString(m.Sum(nil)) {
		t.Errorf("empty body signature %q", got)
	}
}

// --- SigV4, verified with an independent implementation ---

// rntURIEncode is the SigV4 UriEncode: everything but unreserved (and '/'
// when keepSlash) becomes %XX with upper-case hex.
func rntURIEncode(s string, keepSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~", c) >= 0 || (keepSlash && c == '/') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func rntHMAC(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// rntSigV4 computes the Authorization header for a request, following the
// published algorithm step by step (canonical request, string to sign,
// derived key). Headers are signed as given, plus host.
func rntSigV4(method, host, escapedPath, rawQuery string, headers []Header, payloadHash, akid, secret, region, service string, t time.Time, s3 bool) string {
	uri := escapedPath
	if !s3 {
		uri = rntURIEncode(escapedPath, true)
	}
	var qs []string
	vals, _ := url.ParseQuery(rawQuery)
	for k, vs := range vals {
		for _, v := range vs {
			qs = append(qs, rntURIEncode(k, false)+"="+rntURIEncode(v, false))
		}
	}
	sort.Strings(qs)
	hm := map[string][]string{"host": {host}}
	for _, h := range headers {
		l := strings.ToLower(h.Name)
		hm[l] = append(hm[l], strings.Join(strings.Fields(h.Value), " "))
	}
	var names []string
	for k := range hm {
		names = append(names, k)
	}
	sort.Strings(names)
	var ch strings.Builder
	for _, n := range names {
		ch.WriteString(n + ":" + strings.Join(hm[n], ",") + "\n")
	}
	signed := strings.Join(names, ";")
	canon := strings.Join([]string{method, uri, strings.Join(qs, "&"), ch.String(), signed, payloadHash}, "\n")
	date := t.UTC().Format("20060102")
	scope := date + "/" + region + "/" + service + "/aws4_request"
	sum := sha256.Sum256([]byte(canon))
	sts := "AWS4-HMAC-SHA256\n" + t.UTC().Format("20060102T150405Z") + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	k := rntHMAC([]byte("AWS4"+secret), date)
	k = rntHMAC(k, region)
	k = rntHMAC(k, service)
	k = rntHMAC(k, "aws4_request")
	sig := hex.EncodeToString(rntHMAC(k, sts))
	return "AWS4-HMAC-SHA256 Credential=" + akid + "/" + scope + ", SignedHeaders=" + signed + ", Signature=" + sig
}

// TestSigV4ReferenceVector checks the independent implementation against
// the AWS SigV4 test suite's get-vanilla case, so it can be trusted to
// check the SDK-produced signatures below.
func TestSigV4ReferenceVector(t *testing.T) {
	empty := sha256.Sum256(nil)
	got := rntSigV4("GET", "example.amazonaws.com", "/", "", []Header{{"X-Amz-Date", "20150830T123600Z"}},
		hex.EncodeToString(empty[:]), "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", "service", rntNow, false)
	want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	if got != want {
		t.Fatalf("reference implementation disagrees with the AWS test suite:\n got %s\nwant %s", got, want)
	}
}

func TestRenderSigV4(t *testing.T) {
	const akid, secret = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	tests := []struct {
		name      string
		service   string
		secret    string
		path      string
		query     string
		wantQuery string
		body      string
		token     string
	}{
		{name: "post json", service: "sqs", secret: `{"accessKeyId":"` + akid + `","secretAccessKey":"` + secret + `"}`,
			path: "/", body: `{"QueueName":"q"}`},
		{name: "session token and query", service: "execute-api",
			secret: `{"accessKeyId":"` + akid + `","secretAccessKey":"` + secret + `","sessionToken":"FQoGZXIvYXdzE//tok"}`,
			path:   "/prod/a%20b/c", query: "b=2&a=1&a=0&c=x+y", wantQuery: "a=0&a=1&b=2&c=x%20y", token: "FQoGZXIvYXdzE//tok"},
		{name: "s3 path not re-escaped", service: "s3", secret: `{"AccessKeyId":"` + akid + `","SecretAccessKey":"` + secret + `"}`,
			path: "/bucket/my%20key.txt", body: "file-bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := &Outgoing{
				Method: "POST", Path: tc.path, RawQuery: tc.query, Host: "svc.us-west-2.amazonaws.com",
				Headers: []Header{{"Content-Type", "application/x-amz-json-1.0"}, {"X-Amz-Target", "AmazonSQS.CreateQueue"},
					{"X-Amz-Date", "19990101T000000Z"}, {"authorization", "caller"}},
				Body: []byte(tc.body),
			}
			scrub, err := RenderAuth(Auth{AWSSigV4: &AuthSigV4{Service: tc.service, Region: "us-west-2"}}, rntVals("secret", tc.secret), out, rntNow.Add(3*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantQuery != "" && out.RawQuery != tc.wantQuery {
				t.Errorf("query = %q, want canonical %q", out.RawQuery, tc.wantQuery)
			}
			if out.Path != tc.path {
				t.Errorf("path changed to %q", out.Path)
			}
			sum := sha256.Sum256([]byte(tc.body))
			hash := hex.EncodeToString(sum[:])
			if v, n := rntHeader(out, "X-Amz-Content-Sha256"); n != 1 || v != hash {
				t.Errorf("X-Amz-Content-Sha256 = %q (%d)", v, n)
			}
			if v, n := rntHeader(out, "X-Amz-Date"); n != 1 || v != "20150830T153600Z" {
				t.Errorf("X-Amz-Date = %q (%d)", v, n)
			}
			if v, n := rntHeader(out, "X-Amz-Security-Token"); (tc.token == "" && n != 0) || (tc.token != "" && v != tc.token) {
				t.Errorf("X-Amz-Security-Token = %q (%d)", v, n)
			}
			authz, n := rntHeader(out, "Authorization")
			if n != 1 {
				t.Fatalf("%d Authorization headers", n)
			}
			var signedHeaders []Header
			for _, h := range out.Headers {
				if !strings.EqualFold(h.Name, "Authorization") {
					signedHeaders = append(signedHeaders, h)
				}
			}
			want := rntSigV4("POST", out.Host, out.Path, out.RawQuery, signedHeaders, hash, akid, secret, "us-west-2", tc.service, rntNow.Add(3*time.Hour), tc.service == "s3")
			if authz != want {
				t.Errorf("Authorization\n got %s\nwant %s", authz, want)
			}
			_, sig, _ := strings.Cut(authz, "Signature=")
			for _, s := range []string{akid, secret, sig} {
				if !rntHasScrub(scrub, s) {
					t.Errorf("scrub lacks %q", s)
				}
			}
			if tc.token != "" && !rntHasScrub(scrub, tc.token) {
				t.Errorf("scrub lacks the session token")
			}
		})
	}
	// The signature covers the body: a different body, a different signature.
	sign := func(body string) string {
		out := &Outgoing{Method: "POST", Path: "/", Host: "sqs.us-east-1.amazonaws.com", Body: []byte(body)}
		if _, err := RenderAuth(Auth{AWSSigV4: &AuthSigV4{Service: "sqs", Region: "us-east-1"}},
			rntVals("accessKeyId", akid, "secretAccessKey", secret), out, rntNow); err != nil {
			t.Fatal(err)
		}
		v, _ := rntHeader(out, "Authorization")
		return v
	}
	if sign("a") == sign("b") {
		t.Errorf("signature does not depend on the body")
	}
	out := &Outgoing{Method: "GET", Path: "/"}
	_, err := RenderAuth(Auth{AWSSigV4: &AuthSigV4{Service: "sqs", Region: "us-east-1"}}, rntVals("accessKeyId", akid, "secretAccessKey", secret), out, rntNow)
	rqtWantErr(t, err, ClassInvalidRequest, "needs the upstream host")
}

func TestInjectedHeaderNamesAndBrokerParams(t *testing.T) {
	tests := []struct {
		auth    Auth
		headers []string
		params  []string
	}{
		{Auth{Header: &AuthHeader{HeaderName: " X-Api-Key "}}, []string{"x-api-key"}, nil},
		{Auth{MultiHeader: []AuthHeader{{HeaderName: "PLAID-CLIENT-ID"}, {HeaderName: "PLAID-SECRET"}}}, []string{"plaid-client-id", "plaid-secret"}, nil},
		{Auth{Basic: &AuthBasic{}}, []string{"authorization"}, nil},
		{Auth{OAuth2: &AuthOAuth2{}}, []string{"authorization"}, nil},
		{Auth{AWSSigV4: &AuthSigV4{}}, []string{"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"},
			[]string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Signature", "X-Amz-SignedHeaders"}},
		{Auth{HMAC: &AuthHMAC{HeaderName: "X-Signature"}}, []string{"x-signature"}, nil},
		{Auth{Query: &AuthQuery{ParamName: "key"}}, nil, []string{"key"}},
		{Auth{MultiQuery: []AuthQueryParam{{ParamName: "key"}, {ParamName: "token"}}}, nil, []string{"key", "token"}},
		{Auth{Path: &AuthPath{}}, nil, nil},
		{Auth{MTLS: &AuthMTLS{}}, nil, nil},
		{Auth{}, nil, nil},
	}
	for _, tc := range tests {
		if got := InjectedHeaderNames(tc.auth); !slices.Equal(got, tc.headers) {
			t.Errorf("InjectedHeaderNames(%s) = %q, want %q", tc.auth.Kind(), got, tc.headers)
		}
		if got := BrokerQueryParams(tc.auth); !slices.Equal(got, tc.params) {
			t.Errorf("BrokerQueryParams(%s) = %q, want %q", tc.auth.Kind(), got, tc.params)
		}
	}
}

// TestRenderedCredentialsPassCheckRequest: the names a credential reports
// are exactly the ones CheckRequest refuses from callers.
func TestRenderedCredentialsPassCheckRequest(t *testing.T) {
	a := Auth{Header: &AuthHeader{HeaderName: "X-Api-Key", ValueTemplate: "{{secret}}"}}
	_, err := CheckRequest(rqtAllow(), InjectedHeaderNames(a), BrokerQueryParams(a), CapPolicy{},
		Request{Method: "GET", Path: "/v0/x", Headers: []Header{{"x-api-key", "mine"}}})
	rqtWantErr(t, err, ClassPolicyViolation, "not allowed")
	q := Auth{Query: &AuthQuery{ParamName: "key"}}
	_, err = CheckRequest(rqtAllow(), InjectedHeaderNames(q), BrokerQueryParams(q), CapPolicy{},
		Request{Method: "GET", Path: "/v0/x?key=mine"})
	rqtWantErr(t, err, ClassPolicyViolation, "set by the credential")
}

func TestRedactTarget(t *testing.T) {
	scrub := [][]byte{[]byte("123:ABC"), []byte("a b/c"), {}, []byte("ab")}
	tests := []struct {
		path, query, want string
	}{
		{"/bot123:ABC/getMe", "", "/bot[REDACTED]/getMe"},
		{"/x", "key=a+b%2Fc&z=1", "/x?key=[REDACTED]&z=1"},
		{"/x", "key=a%20b%2Fc", "/x?key=[REDACTED]"},
		{"/p/a%20b%2Fc", "", "/p/[REDACTED]"},
		{"/abc", "t=ab", "/[REDACTED]c?t=[REDACTED]"},
		{"/plain", "q=1", "/plain?q=1"},
	}
	for _, tc := range tests {
		if got := RedactTarget(tc.path, tc.query, scrub); got != tc.want {
			t.Errorf("RedactTarget(%q, %q) = %q, want %q", tc.path, tc.query, got, tc.want)
		}
	}
	if got := RedactTarget("/a", "", nil); got != "/a" {
		t.Errorf("no scrub: %q", got)
	}
}

// TestRenderScrubRedactsTarget: whatever RenderAuth puts in the target,
// RedactTarget with its scrub list removes.
func TestRenderScrubRedactsTarget(t *testing.T) {
	for _, a := range []Auth{
		{Path: &AuthPath{PrefixTemplate: "/bot{{secret}}"}},
		{Query: &AuthQuery{ParamName: "key"}},
		{MultiQuery: []AuthQueryParam{{ParamName: "key", ValueTemplate: "x{{secret}}y"}}},
	} {
		out := rntOut()
		scrub, err := RenderAuth(a, rntVals("secret", "s e/c?r&e%t"), out, rntNow)
		if err != nil {
			t.Fatal(err)
		}
		red := RedactTarget(out.Path, out.RawQuery, scrub)
		for _, leak := range []string{"s e/c?r&e%t", url.QueryEscape("s e/c?r&e%t"), url.PathEscape("s e/c?r&e%t")} {
			if strings.Contains(red, leak) {
				t.Errorf("%s: %q still contains %q", a.Kind(), red, leak)
			}
		}
		if !strings.Contains(red, "[REDACTED]") {
			t.Errorf("%s: nothing redacted in %q", a.Kind(), red)
		}
	}
}

func TestOAuth2TokenRequest(t *testing.T) {
	tests := []struct {
		name   string
		auth   AuthOAuth2
		secret string
		want   url.Values
		sub    string
	}{
		{name: "refresh", auth: AuthOAuth2{GrantType: "refresh_token", Scopes: []string{"a"}},
			secret: `{"client_id":"cid","client_secret":"cs&=","refresh_token":"1//rt"}`,
			want:   url.Values{"grant_type": {"refresh_token"}, "client_id": {"cid"}, "client_secret": {"cs&="}, "refresh_token": {"1//rt"}}},
		{name: "refresh camel, public client", auth: AuthOAuth2{GrantType: "refresh_token"},
			secret: `{"clientId":"cid","refreshToken":"rt"}`,
			want:   url.Values{"grant_type": {"refresh_token"}, "client_id": {"cid"}, "refresh_token": {"rt"}}},
		{name: "client credentials", auth: AuthOAuth2{GrantType: "client_credentials", Scopes: []string{"read", "write:all"}},
			secret: `{"client_id":"cid","client_secret":"cs"}`,
			want:   url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {"cs"}, "scope": {"read write:all"}}},
		{name: "client credentials no scope", auth: AuthOAuth2{GrantType: "client_credentials"},
			secret: `{"client_id":"cid","client_secret":"cs"}`,
			want:   url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {"cs"}}},
		{name: "no refresh token", auth: AuthOAuth2{GrantType: "refresh_token"}, secret: `{"client_id":"cid"}`, sub: "no refresh_token"},
		{name: "no client secret", auth: AuthOAuth2{GrantType: "client_credentials"}, secret: `{"client_id":"cid"}`, sub: "no client_secret"},
		{name: "no client id", auth: AuthOAuth2{GrantType: "client_credentials"}, secret: `{"client_secret":"` + rntSecret + `"}`, sub: "no client_id"},
		{name: "bad grant", auth: AuthOAuth2{GrantType: "password"}, secret: `{"client_id":"cid"}`, sub: "not supported"},
		{name: "not JSON", auth: AuthOAuth2{GrantType: "refresh_token"}, secret: rntSecret, sub: "not a JSON object"},
		{name: "broken JSON", auth: AuthOAuth2{GrantType: "refresh_token"}, secret: `{"client_id":"` + rntSecret, sub: "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, ct, err := OAuth2TokenRequest(&tc.auth, []byte(tc.secret))
			if tc.sub != "" {
				rqtWantErr(t, err, ClassInvalidRequest, tc.sub)
				if strings.Contains(err.Error(), rntSecret) {
					t.Errorf("error leaks the secret")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ct != "application/x-www-form-urlencoded" {
				t.Errorf("content type %q", ct)
			}
			got, err := url.ParseQuery(string(body))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("form = %v, want %v", got, tc.want)
			}
		})
	}
	if _, _, err := OAuth2TokenRequest(nil, nil); err == nil {
		t.Errorf("nil auth accepted")
	}
}

func TestParseOAuth2TokenResponse(t *testing.T) {
	tests := []struct {
		name          string
		in            string
		access, fresh string
		exp           int64
		class, sub    string
	}{
		{name: "google", in: `{"access_token":"ya29.a0","expires_in":3599,"scope":"x","token_type":"Bearer"}`, access: "ya29.a0", exp: 3599},
		{name: "with refresh", in: `{"access_token":"at","refresh_token":"rt2","expires_in":"7200","token_type":"bearer"}`, access: "at", fresh: "rt2", exp: 7200},
		{name: "escaped", in: `{"access_token":"a\/b"}`, access: "a/b"},
		{name: "no expiry", in: `{"access_token":"at","expires_in":null}`, access: "at"},
		{name: "negative expiry", in: `{"access_token":"at","expires_in":-5}`, access: "at"},
		{name: "error", in: `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`,
			class: ClassAccessDenied, sub: "(invalid_grant)"},
		{name: "weird error code", in: `{"error":"bad code ` + rntSecret + `"}`, class: ClassAccessDenied, sub: "(unknown_error)"},
		{name: "mac token", in: `{"access_token":"at","token_type":"mac"}`, class: ClassUpstreamUnreachable, sub: "other than bearer"},
		{name: "no token", in: `{"token_type":"bearer"}`, class: ClassUpstreamUnreachable, sub: "no usable access_token"},
		{name: "token with CRLF", in: `{"access_token":"a\r\nb"}`, class: ClassUpstreamUnreachable, sub: "no usable access_token"},
		{name: "token not string", in: `{"access_token":5}`, class: ClassUpstreamUnreachable, sub: "no usable access_token"},
		{name: "bad expiry", in: `{"access_token":"at","expires_in":"soon"}`, class: ClassUpstreamUnreachable, sub: "expires_in"},
		{name: "not JSON", in: `<html>` + rntSecret, class: ClassUpstreamUnreachable, sub: "JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, r, exp, err := ParseOAuth2TokenResponse([]byte(tc.in))
			if tc.class != "" {
				rqtWantErr(t, err, tc.class, tc.sub)
				if strings.Contains(err.Error(), rntSecret) {
					t.Errorf("error leaks input")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(a) != tc.access || string(r) != tc.fresh || exp != tc.exp {
				t.Errorf("got %q %q %d, want %q %q %d", a, r, exp, tc.access, tc.fresh, tc.exp)
			}
		})
	}
}

func TestRenderTemplateEdgeCases(t *testing.T) {
	rc := &rnCtx{values: rntVals("secret", "S", "a", "A")}
	tests := []struct{ tmpl, want string }{
		{"", ""},
		{"plain", "plain"},
		{"{{secret}}{{a}}", "SA"},
		{"x{{ a }}y{{secret}}z", "xAySz"},
		{"{ {a} }", "{ {a} }"},
	}
	for _, tc := range tests {
		got, err := rc.render(tc.tmpl, nil)
		if err != nil || string(got) != tc.want {
			t.Errorf("render(%q) = %q, %v; want %q", tc.tmpl, got, err, tc.want)
		}
	}
	if got := rnBlankPlaceholders("/a{{x}}/b{{y}}"); got != "/ax/bx" {
		t.Errorf("blank = %q", got)
	}
	if !bytes.Equal(rc.values["secret"], []byte("S")) {
		t.Errorf("values modified")
	}
}
