package policy

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"path"
	"strings"
	"testing"
)

// rqtAllow is the capability most request tests run against.
func rqtAllow() Allow {
	return Allow{
		Hosts:        []string{"api.example.test"},
		Methods:      []string{"GET", "post", "HEAD", "DELETE"},
		PathPrefixes: []string{"/v1/chat/completions", "/v0/"},
	}
}

// rqtWantErr checks that err is a *Error of class whose message contains sub.
func rqtWantErr(t *testing.T, err error, class, sub string) {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("got error %v (%T), want *Error %s containing %q", err, err, class, sub)
	}
	if pe.Class != class {
		t.Errorf("class = %s, want %s (msg %q)", pe.Class, class, pe.Msg)
	}
	if !strings.Contains(pe.Error(), sub) {
		t.Errorf("error %q does not contain %q", pe.Error(), sub)
	}
}

func TestCheckRequestMethod(t *testing.T) {
	tests := []struct {
		method, want string
		class, sub   string
	}{
		{method: "GET", want: "GET"},
		{method: "get", want: "GET"},
		{method: "Post", want: "POST"},
		{method: "PUT", class: ClassPolicyViolation, sub: "method PUT is not allowed"},
		{method: "", class: ClassInvalidRequest, sub: "missing HTTP method"},
		{method: "GE T", class: ClassInvalidRequest, sub: "not a valid HTTP method token"},
		{method: "GET\r\n", class: ClassInvalidRequest, sub: "not a valid HTTP method token"},
		{method: "GÉT", class: ClassInvalidRequest, sub: "not a valid HTTP method token"},
		{method: strings.Repeat("A", 33), class: ClassInvalidRequest, sub: "not a valid"},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			c, err := CheckRequest(rqtAllow(), nil, nil, CapPolicy{}, Request{Method: tc.method, Path: "/v0/x"})
			if tc.class != "" {
				rqtWantErr(t, err, tc.class, tc.sub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Method != tc.want {
				t.Errorf("method = %q, want %q", c.Method, tc.want)
			}
		})
	}
}

func TestCheckRequestPath(t *testing.T) {
	tests := []struct {
		path        string
		wantPath    string
		wantQuery   string
		class, sub  string
		description string
	}{
		{path: "/v1/chat/completions", wantPath: "/v1/chat/completions"},
		{path: "/v1/chat/completions/x", wantPath: "/v1/chat/completions/x"},
		{path: "/v1/chat/completions?x=1", wantPath: "/v1/chat/completions", wantQuery: "x=1"},
		{path: "/v1/chat/completions?", wantPath: "/v1/chat/completions"},
		{path: "/v0/", wantPath: "/v0/"},
		{path: "/v0/appXYZ/tbl%20name", wantPath: "/v0/appXYZ/tbl%20name"},
		{path: "/v0/a:b@c!$&'()*+,;=-._~", wantPath: "/v0/a:b@c!$&'()*+,;=-._~"},
		{path: "/v0/caf%C3%A9", wantPath: "/v0/caf%C3%A9"},
		{path: "/v0/a%3Fb%23c", wantPath: "/v0/a%3Fb%23c"},
		{path: "/v0/.well-known/x", wantPath: "/v0/.well-known/x"},
		{path: "/v0/a..b/...", wantPath: "/v0/a..b/..."},
		{path: "/v0//x", wantPath: "/v0//x"},

		// Prefix matching at segment boundaries, case-sensitive, raw.
		{path: "/v1/chat/completionsX", class: ClassPolicyViolation, sub: "not allowed by this capability"},
		{path: "/v1/chat/completions;x", class: ClassPolicyViolation, sub: "not allowed by this capability"},
		{path: "/v1/chat", class: ClassPolicyViolation, sub: "not allowed"},
		{path: "/V1/chat/completions", class: ClassPolicyViolation, sub: "not allowed"},
		{path: "/v1/chat/c%6Fmpletions", class: ClassPolicyViolation, sub: "not allowed"},
		{path: "/v0", class: ClassPolicyViolation, sub: "not allowed"},
		{path: "/v00/x", class: ClassPolicyViolation, sub: "not allowed"},

		// Shape.
		{path: "", class: ClassInvalidRequest, sub: "missing request path"},
		{path: "v0/x", class: ClassInvalidRequest, sub: "must start with \"/\""},
		{path: "?x=1", class: ClassInvalidRequest, sub: "missing request path"},
		{path: "//evil.test/v0/", class: ClassPolicyViolation, sub: "must not start with \"//\""},
		{path: "/v0/" + strings.Repeat("a", MaxPathBytes), class: ClassPolicyViolation, sub: "at most 2048"},

		// Traversal in every spelling.
		{path: "/v0/../admin", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/..", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/./x", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/.", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/..;/admin", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/.;x/admin", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/%2e%2e/admin", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/%2E%2E/admin", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/.%2e/admin", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/x%2f..%2fadmin", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/x%2F", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/x%5c..", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/x%5C", class: ClassPolicyViolation, sub: "path traversal is not allowed"},
		{path: "/v0/..\\admin", class: ClassPolicyViolation, sub: "backslash"},
		{path: "/v0/%252e%252e/admin", class: ClassPolicyViolation, sub: "double percent-encoding"},
		{path: "/v0/%25", class: ClassPolicyViolation, sub: "double percent-encoding"},

		// Bytes.
		{path: "/v0/a\x00b", class: ClassPolicyViolation, sub: "control character 0x00"},
		{path: "/v0/a\r\nb", class: ClassPolicyViolation, sub: "control character 0x0d"},
		{path: "/v0/a\tb", class: ClassPolicyViolation, sub: "control character 0x09"},
		{path: "/v0/a\x7fb", class: ClassPolicyViolation, sub: "control character 0x7f"},
		{path: "/v0/a%00b", class: ClassPolicyViolation, sub: "encoded control character 0x00"},
		{path: "/v0/a%0Ab", class: ClassPolicyViolation, sub: "encoded control character 0x0a"},
		{path: "/v0/a%7f", class: ClassPolicyViolation, sub: "encoded control character 0x7f"},
		{path: "/v0/a b", class: ClassInvalidRequest, sub: "space is not allowed"},
		{path: "/v0/café", class: ClassInvalidRequest, sub: "non-ASCII byte"},
		{path: "/v0/a#b", class: ClassPolicyViolation, sub: "fragment"},
		{path: "/v0/a%", class: ClassInvalidRequest, sub: "invalid percent escape"},
		{path: "/v0/a%4", class: ClassInvalidRequest, sub: "invalid percent escape"},
		{path: "/v0/a%zz", class: ClassInvalidRequest, sub: "invalid percent escape"},
		{path: "/v0/a|b", class: ClassInvalidRequest, sub: "percent-encode it"},
		{path: "/v0/a\"b", class: ClassInvalidRequest, sub: "percent-encode it"},
		{path: "/v0/{x}", class: ClassInvalidRequest, sub: "percent-encode it"},

		// Query.
		{path: "/v0/x?a=1&b=%20c+d&e=[1]", wantPath: "/v0/x", wantQuery: "a=1&b=%20c+d&e=[1]"},
		{path: "/v0/x?next=/a/../b", wantPath: "/v0/x", wantQuery: "next=/a/../b"},
		{path: "/v0/x?a=b?c", wantPath: "/v0/x", wantQuery: "a=b?c"},
		{path: "/v0/x?a=1 2", class: ClassInvalidRequest, sub: "space is not allowed in a query"},
		{path: "/v0/x?a=1\r\nHost: evil", class: ClassPolicyViolation, sub: "control character 0x0d"},
		{path: "/v0/x?a=\x00", class: ClassPolicyViolation, sub: "control character 0x00"},
		{path: "/v0/x?a=1#frag", class: ClassPolicyViolation, sub: "fragment"},
		{path: "/v0/x?a=%zz", class: ClassInvalidRequest, sub: "invalid percent escape in query"},
		{path: "/v0/x?a=%", class: ClassInvalidRequest, sub: "invalid percent escape in query"},
		{path: "/v0/x?a=é", class: ClassInvalidRequest, sub: "non-ASCII"},
		{path: "/v0/x?a=" + strings.Repeat("b", MaxQueryBytes), class: ClassPolicyViolation, sub: "query is"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			c, err := CheckRequest(rqtAllow(), nil, nil, CapPolicy{}, Request{Method: "GET", Path: tc.path})
			if tc.class != "" {
				rqtWantErr(t, err, tc.class, tc.sub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Path != tc.wantPath || c.RawQuery != tc.wantQuery {
				t.Errorf("got path %q query %q, want %q %q", c.Path, c.RawQuery, tc.wantPath, tc.wantQuery)
			}
		})
	}
}

func TestPathHasPrefix(t *testing.T) {
	tests := []struct {
		prefix, path string
		want         bool
	}{
		{"/v1/chat/completions", "/v1/chat/completions", true},
		{"/v1/chat/completions", "/v1/chat/completions/x", true},
		{"/v1/chat/completions", "/v1/chat/completionsX", false},
		{"/v1/chat/completions", "/v1/chat/completions;a", false},
		{"/v1/chat/completions", "/v1/chat", false},
		{"/v0/", "/v0/", true},
		{"/v0/", "/v0/a/b", true},
		{"/v0/", "/v0", false},
		{"/", "/", true},
		{"/", "/anything/at/all", true},
		{"", "/x", false},
		{"v0", "v0/x", false},
		{"/A", "/a", false},
		{"/api/chat.", "/api/chat.postMessage", true},
		{"/api/chat.", "/api/chat.", true},
		{"/api/chat.", "/api/chat", false},
		{"/api/chat.", "/api/chatX.postMessage", false},
	}
	for _, tc := range tests {
		if got := rqPathHasPrefix(tc.path, tc.prefix); got != tc.want {
			t.Errorf("rqPathHasPrefix(%q, %q) = %v, want %v", tc.path, tc.prefix, got, tc.want)
		}
	}
}

func TestCheckRequestAllowAllAndEmptyPrefixes(t *testing.T) {
	a := Allow{Methods: []string{"GET"}, PathPrefixes: []string{"/"}}
	if _, err := CheckRequest(a, nil, nil, CapPolicy{}, Request{Method: "GET", Path: "/any/thing"}); err != nil {
		t.Fatalf("prefix / must admit everything: %v", err)
	}
	none := Allow{Methods: []string{"GET"}}
	_, err := CheckRequest(none, nil, nil, CapPolicy{}, Request{Method: "GET", Path: "/x"})
	rqtWantErr(t, err, ClassPolicyViolation, "not allowed by this capability")
	noMethods := Allow{PathPrefixes: []string{"/"}}
	_, err = CheckRequest(noMethods, nil, nil, CapPolicy{}, Request{Method: "GET", Path: "/x"})
	rqtWantErr(t, err, ClassPolicyViolation, "method GET is not allowed")
}

func TestCheckRequestHeaders(t *testing.T) {
	injected := []string{" X-Api-Key ", "PLAID-SECRET"}
	tests := []struct {
		name       string
		headers    []Header
		want       []Header
		wantCT     string
		class, sub string
	}{
		{name: "plain", headers: []Header{{"accept", "application/json"}, {"X-Custom", "  v  "}},
			want: []Header{{"Accept", "application/json"}, {"X-Custom", "v"}}},
		{name: "tab and obs-text allowed", headers: []Header{{"X-A", "a\tb\xe9"}},
			want: []Header{{"X-A", "a\tb\xe9"}}},
		{name: "content-type moves", headers: []Header{{"content-type", "application/json"}},
			wantCT: "application/json"},
		{name: "dropped", headers: []Header{
			{"Connection", "close"}, {"Keep-Alive", "1"}, {"TE", "trailers"}, {"Trailer", "x"},
			{"Transfer-Encoding", "chunked"}, {"Upgrade", "h2c"}, {"Content-Length", "5"},
			{"Host", "evil.test"}, {"Expect", "100-continue"}, {"Sec-WebSocket-Key", "x"},
			{"Proxy-Connection", "x"}, {"Forwarded", "for=1.2.3.4"}, {"X-Forwarded-For", "1.2.3.4"},
			{"x-forwarded-host", "evil"}, {"X-Real-IP", "1.2.3.4"}, {"Accept-Encoding", "gzip"},
			{"Range", "bytes=0-1"}, {"Accept", "*/*"}},
			want: []Header{{"Accept", "*/*"}}},
		{name: "authorization", headers: []Header{{"Authorization", "Bearer mine"}},
			class: ClassPolicyViolation, sub: "header Authorization is not allowed"},
		{name: "authorization lower", headers: []Header{{"authorization", "x"}},
			class: ClassPolicyViolation, sub: "not allowed"},
		{name: "proxy-authorization", headers: []Header{{"Proxy-Authorization", "x"}},
			class: ClassPolicyViolation, sub: "not allowed"},
		{name: "cookie", headers: []Header{{"Cookie", "a=b"}},
			class: ClassPolicyViolation, sub: "not allowed"},
		{name: "injected", headers: []Header{{"x-api-key", "mine"}},
			class: ClassPolicyViolation, sub: "not allowed"},
		{name: "injected upper", headers: []Header{{"Plaid-Secret", "mine"}},
			class: ClassPolicyViolation, sub: "not allowed"},
		{name: "duplicate", headers: []Header{{"X-A", "1"}, {"x-a", "2"}},
			class: ClassPolicyViolation, sub: "more than once"},
		{name: "bad name space", headers: []Header{{"X A", "1"}},
			class: ClassPolicyViolation, sub: "not a valid token"},
		{name: "bad name colon", headers: []Header{{"X-A:", "1"}},
			class: ClassPolicyViolation, sub: "not a valid token"},
		{name: "bad name CRLF", headers: []Header{{"X-A\r\nEvil", "1"}},
			class: ClassPolicyViolation, sub: "not a valid token"},
		{name: "empty name", headers: []Header{{"", "1"}},
			class: ClassPolicyViolation, sub: "not a valid token"},
		{name: "CRLF value", headers: []Header{{"X-A", "1\r\nAuthorization: x"}},
			class: ClassPolicyViolation, sub: "control character 0x0d"},
		{name: "LF value", headers: []Header{{"X-A", "1\nx"}},
			class: ClassPolicyViolation, sub: "control character 0x0a"},
		{name: "NUL value", headers: []Header{{"X-A", "1\x00"}},
			class: ClassPolicyViolation, sub: "control character 0x00"},
		{name: "DEL value", headers: []Header{{"X-A", "\x7f"}},
			class: ClassPolicyViolation, sub: "control character 0x7f"},
		{name: "method override allowed", headers: []Header{{"X-HTTP-Method-Override", "delete"}},
			want: []Header{{"X-Http-Method-Override", "delete"}}},
		{name: "method override refused", headers: []Header{{"X-HTTP-Method-Override", "PUT"}},
			class: ClassPolicyViolation, sub: "names a method this capability does not allow"},
		{name: "x-http-method refused", headers: []Header{{"X-HTTP-Method", "PATCH"}},
			class: ClassPolicyViolation, sub: "does not allow"},
		{name: "x-method-override refused", headers: []Header{{"X-Method-Override", "PUT"}},
			class: ClassPolicyViolation, sub: "does not allow"},
		{name: "CTL in dropped header still refused", headers: []Header{{"Host", "a\r\nb"}},
			class: ClassPolicyViolation, sub: "control character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := CheckRequest(rqtAllow(), injected, nil, CapPolicy{}, Request{Method: "GET", Path: "/v0/x", Headers: tc.headers})
			if tc.class != "" {
				rqtWantErr(t, err, tc.class, tc.sub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Headers) != len(tc.want) {
				t.Fatalf("headers = %q, want %q", c.Headers, tc.want)
			}
			for i := range tc.want {
				if c.Headers[i] != tc.want[i] {
					t.Errorf("header %d = %q, want %q", i, c.Headers[i], tc.want[i])
				}
			}
			if c.ContentType != tc.wantCT {
				t.Errorf("content type = %q, want %q", c.ContentType, tc.wantCT)
			}
		})
	}
}

func TestCheckRequestHeaderLimits(t *testing.T) {
	var many []Header
	for i := range MaxHeaderCount + 1 {
		many = append(many, Header{Name: "X-H" + strings.Repeat("a", i), Value: "v"})
	}
	_, err := CheckRequest(rqtAllow(), nil, nil, CapPolicy{}, Request{Method: "GET", Path: "/v0/x", Headers: many})
	rqtWantErr(t, err, ClassPolicyViolation, "at most 64")
	if _, err := CheckRequest(rqtAllow(), nil, nil, CapPolicy{}, Request{Method: "GET", Path: "/v0/x", Headers: many[:MaxHeaderCount]}); err != nil {
		t.Fatalf("64 headers must pass: %v", err)
	}

	big := []Header{{"X-A", strings.Repeat("a", MaxHeaderBytes/2)}, {"X-B", strings.Repeat("b", MaxHeaderBytes/2)}}
	_, err = CheckRequest(rqtAllow(), nil, nil, CapPolicy{}, Request{Method: "GET", Path: "/v0/x", Headers: big})
	rqtWantErr(t, err, ClassPolicyViolation, "headers total")
}

func TestCheckRequestBrokerQuery(t *testing.T) {
	broker := []string{"api_key", "token"}
	tests := []struct {
		query string
		ok    bool
	}{
		{"a=1", true},
		{"api_keys=1", true},
		{"x=api_key", true},
		{"", true},
		{"api_key=mine", false},
		{"a=1&api_key=mine", false},
		{"API_KEY=mine", false},
		{"Api_Key", false},
		{"api%5Fkey=mine", false},
		{"api%5fkey=mine", false},
		{"a=1;api_key=mine", false},
		{"+api_key=mine", false},
		{"api_key+=mine", false},
		{"%20token=mine", false},
		{"token", false},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			_, err := CheckRequest(rqtAllow(), nil, broker, CapPolicy{}, Request{Method: "GET", Path: "/v0/x?" + tc.query})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			rqtWantErr(t, err, ClassPolicyViolation, "is set by the credential")
		})
	}
}

func TestCheckRequestBody(t *testing.T) {
	mp := &Multipart{Fields: []MultipartField{{"model", "whisper-1"}}, Files: []MultipartFile{{Field: "file", Filename: "a.wav", Data: []byte("RIFF")}}}
	tests := []struct {
		name       string
		req        Request
		pol        CapPolicy
		class, sub string
	}{
		{name: "post bytes", req: Request{Method: "POST", Path: "/v0/x", Body: []byte(`{"a":1}`)}},
		{name: "post empty", req: Request{Method: "POST", Path: "/v0/x"}},
		{name: "post multipart", req: Request{Method: "POST", Path: "/v0/x", Multipart: mp}},
		{name: "get empty body ok", req: Request{Method: "GET", Path: "/v0/x", Body: []byte{}}},
		{name: "both modes", req: Request{Method: "POST", Path: "/v0/x", Body: []byte("x"), Multipart: mp},
			class: ClassInvalidRequest, sub: "not both"},
		{name: "get with body", req: Request{Method: "GET", Path: "/v0/x", Body: []byte("x")},
			class: ClassInvalidRequest, sub: "GET request cannot have a body"},
		{name: "head with multipart", req: Request{Method: "head", Path: "/v0/x", Multipart: mp},
			class: ClassInvalidRequest, sub: "HEAD request cannot have a body"},
		{name: "multipart with content-type", req: Request{Method: "POST", Path: "/v0/x", Multipart: mp, Headers: []Header{{"Content-Type", "text/plain"}}},
			class: ClassInvalidRequest, sub: "sets its own Content-Type"},
		{name: "empty multipart", req: Request{Method: "POST", Path: "/v0/x", Multipart: &Multipart{}},
			class: ClassInvalidRequest, sub: "no fields or files"},
		{name: "policy limit", req: Request{Method: "POST", Path: "/v0/x", Body: make([]byte, 11)}, pol: CapPolicy{MaxRequestBodyBytes: 10},
			class: ClassPolicyViolation, sub: "request body is 11 bytes; this capability allows at most 10"},
		{name: "policy limit exact", req: Request{Method: "POST", Path: "/v0/x", Body: make([]byte, 10)}, pol: CapPolicy{MaxRequestBodyBytes: 10}},
		{name: "default limit", req: Request{Method: "POST", Path: "/v0/x", Body: make([]byte, DefaultMaxRequestBodyBytes+1)},
			class: ClassPolicyViolation, sub: "at most 16777216"},
		{name: "multipart encoded size counts", req: Request{Method: "POST", Path: "/v0/x", Multipart: mp}, pol: CapPolicy{MaxRequestBodyBytes: 40},
			class: ClassPolicyViolation, sub: "at most 40"},
		{name: "multipart raw size precheck", req: Request{Method: "POST", Path: "/v0/x", Multipart: &Multipart{Files: []MultipartFile{{Field: "f", Data: make([]byte, 100)}}}}, pol: CapPolicy{MaxRequestBodyBytes: 50},
			class: ClassPolicyViolation, sub: "at most 50"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := CheckRequest(Allow{Methods: []string{"GET", "POST", "HEAD"}, PathPrefixes: []string{"/v0/"}}, nil, nil, tc.pol, tc.req)
			if tc.class != "" {
				rqtWantErr(t, err, tc.class, tc.sub)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch tc.req.Mode() {
			case BodyBytes:
				if !bytes.Equal(c.Body, tc.req.Body) {
					t.Errorf("body changed")
				}
			case BodyMultipart:
				mt, params, err := mime.ParseMediaType(c.ContentType)
				if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
					t.Fatalf("content type %q: %v", c.ContentType, err)
				}
				if !bytes.Contains(c.Body, []byte("whisper-1")) || !bytes.Contains(c.Body, []byte("RIFF")) {
					t.Errorf("multipart body lacks its parts")
				}
			default:
				if len(c.Body) != 0 {
					t.Errorf("body = %q, want none", c.Body)
				}
			}
		})
	}
}

func TestRequestMode(t *testing.T) {
	if m := (Request{}).Mode(); m != BodyNone {
		t.Errorf("empty: %v", m)
	}
	if m := (Request{Body: []byte{}}).Mode(); m != BodyNone {
		t.Errorf("empty body: %v", m)
	}
	if m := (Request{Body: []byte("x")}).Mode(); m != BodyBytes {
		t.Errorf("bytes: %v", m)
	}
	if m := (Request{Multipart: &Multipart{}}).Mode(); m != BodyMultipart {
		t.Errorf("multipart: %v", m)
	}
}

func TestEncodeMultipartRoundTrip(t *testing.T) {
	m := &Multipart{
		Fields: []MultipartField{{"model", "whisper-1"}, {"quote\"d", "v\r\nx"}},
		Files: []MultipartFile{
			{Field: "file", Filename: "a \"b\".wav", ContentType: "audio/wav", Data: []byte{0, 1, 2, 0xff}},
			{Field: "blob", Filename: "", Data: []byte("raw")},
		},
	}
	body, ct, err := EncodeMultipart(m)
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatal(err)
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	type part struct{ name, file, ct, data string }
	var got []part
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		d, _ := io.ReadAll(p)
		got = append(got, part{p.FormName(), p.FileName(), p.Header.Get("Content-Type"), string(d)})
	}
	want := []part{
		{"model", "", "", "whisper-1"},
		{"quote\"d", "", "", "v\r\nx"},
		{"file", "a \"b\".wav", "audio/wav", "\x00\x01\x02\xff"},
		{"blob", "", "application/octet-stream", "raw"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d parts %q, want %q", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("part %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestEncodeMultipartRefusals(t *testing.T) {
	tests := []struct {
		name string
		m    *Multipart
		sub  string
	}{
		{"nil", nil, "no fields or files"},
		{"empty", &Multipart{}, "no fields or files"},
		{"empty field name", &Multipart{Fields: []MultipartField{{"", "v"}}}, "field name is empty"},
		{"CRLF field name", &Multipart{Fields: []MultipartField{{"a\r\nContent-Type: x", "v"}}}, "control character"},
		{"empty file field", &Multipart{Files: []MultipartFile{{Field: "", Filename: "a"}}}, "file field name is empty"},
		{"CRLF filename", &Multipart{Files: []MultipartFile{{Field: "f", Filename: "a\nb"}}}, "control character"},
		{"bad content type", &Multipart{Files: []MultipartFile{{Field: "f", Filename: "a", ContentType: "not a type"}}}, "invalid content type"},
		{"CRLF content type", &Multipart{Files: []MultipartFile{{Field: "f", Filename: "a", ContentType: "text/plain\r\nX: y"}}}, "invalid content type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := EncodeMultipart(tc.m)
			rqtWantErr(t, err, ClassInvalidRequest, tc.sub)
		})
	}
}

func TestDefaultMethodPath(t *testing.T) {
	tests := []struct {
		allow        Allow
		method, path string
	}{
		{Allow{Methods: []string{"post"}, PathPrefixes: []string{"/v1/chat/completions"}}, "POST", "/v1/chat/completions"},
		{Allow{Methods: []string{"GET", "get"}, PathPrefixes: []string{"/v1/models"}}, "GET", "/v1/models"},
		{Allow{Methods: []string{"GET", "POST"}, PathPrefixes: []string{"/v1/models"}}, "", "/v1/models"},
		{Allow{Methods: []string{"GET"}, PathPrefixes: []string{"/v0/"}}, "GET", ""},
		{Allow{Methods: []string{"GET"}, PathPrefixes: []string{"/"}}, "GET", ""},
		{Allow{Methods: []string{"GET"}, PathPrefixes: []string{"/a", "/b"}}, "GET", ""},
		{Allow{Methods: []string{"GET"}, PathPrefixes: []string{"/a/../b"}}, "GET", ""},
		{Allow{Methods: []string{"G T"}, PathPrefixes: []string{"relative"}}, "", ""},
		{Allow{}, "", ""},
	}
	for _, tc := range tests {
		m, p := DefaultMethodPath(tc.allow)
		if m != tc.method || p != tc.path {
			t.Errorf("DefaultMethodPath(%v) = %q, %q; want %q, %q", tc.allow, m, p, tc.method, tc.path)
		}
	}
}

// TestRequestValidatorsEach drives each validator on its own, one passing
// and one refused state, so a validator that stops checking is noticed even
// if a later one would have caught the request.
func TestRequestValidatorsEach(t *testing.T) {
	base := func() *rqState {
		return &rqState{
			allow:    Allow{Methods: []string{"GET", "POST"}, PathPrefixes: []string{"/v1/x"}},
			injected: map[string]bool{"x-api-key": true},
			out:      Checked{Method: "GET", Path: "/v1/x"},
		}
	}
	tests := []struct {
		name string
		v    rqValidator
		ok   func(*rqState)
		bad  func(*rqState)
	}{
		{"method syntax", rqMethodSyntax{}, func(s *rqState) { s.req.Method = "get" }, func(s *rqState) { s.req.Method = "G(T" }},
		{"method allowed", rqMethodAllowed{}, func(s *rqState) { s.out.Method = "POST" }, func(s *rqState) { s.out.Method = "PUT" }},
		{"path syntax", rqPathSyntax{}, func(s *rqState) { s.out.Path = "/v1/x" }, func(s *rqState) { s.out.Path = "/v1/%2e" }},
		{"path traversal", rqPathTraversal{}, func(s *rqState) { s.out.Path = "/v1/x/..." }, func(s *rqState) { s.out.Path = "/v1/x/../y" }},
		{"path allowed", rqPathAllowed{}, func(s *rqState) { s.out.Path = "/v1/x/y" }, func(s *rqState) { s.out.Path = "/v1/xy" }},
		{"query syntax", rqQuerySyntax{}, func(s *rqState) { s.out.RawQuery = "a=b" }, func(s *rqState) { s.out.RawQuery = "a=\n" }},
		{"broker query", rqBrokerQuery{}, func(s *rqState) { s.brokerParams = []string{"key"}; s.out.RawQuery = "a=b" },
			func(s *rqState) { s.brokerParams = []string{"key"}; s.out.RawQuery = "KEY=b" }},
		{"header limits", rqHeaderLimits{}, func(s *rqState) { s.req.Headers = []Header{{"A", "b"}} },
			func(s *rqState) { s.req.Headers = make([]Header, MaxHeaderCount+1) }},
		{"header fields", rqHeaderFields{}, func(s *rqState) { s.req.Headers = []Header{{"A", "b"}} },
			func(s *rqState) { s.req.Headers = []Header{{"X-API-KEY", "b"}} }},
		{"method override", rqMethodOverride{}, func(s *rqState) { s.out.Headers = []Header{{"X-Http-Method-Override", "post"}} },
			func(s *rqState) { s.out.Headers = []Header{{"X-Http-Method-Override", "DELETE"}} }},
		{"body mode", rqBodyMode{}, func(s *rqState) { s.out.Method = "POST"; s.req.Body = []byte("x") },
			func(s *rqState) { s.req.Body = []byte("x") }},
		{"body encode", rqBodyEncode{}, func(s *rqState) { s.req.Multipart = &Multipart{Fields: []MultipartField{{"a", "b"}}} },
			func(s *rqState) { s.req.Multipart = &Multipart{Fields: []MultipartField{{"", "b"}}} }},
		{"body size", rqBodySize{}, func(s *rqState) { s.pol.MaxRequestBodyBytes = 1; s.out.Body = []byte("x") },
			func(s *rqState) { s.pol.MaxRequestBodyBytes = 1; s.out.Body = []byte("xx") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.ok(s)
			if err := tc.v.validate(s); err != nil {
				t.Errorf("passing state refused: %v", err)
			}
			s = base()
			tc.bad(s)
			if err := tc.v.validate(s); err == nil {
				t.Errorf("refused state passed")
			}
		})
	}
	// Every validator in the chain is covered above.
	if n := len(rqValidators()); n != len(tests)+1 { // +1: rqTargetSplit, tested below
		t.Errorf("chain has %d validators, test covers %d", n, len(tests)+1)
	}
	s := base()
	s.req.Path = "/a?b?c"
	if err := (rqTargetSplit{}).validate(s); err != nil || s.out.Path != "/a" || s.out.RawQuery != "b?c" {
		t.Errorf("target split: %q %q %v", s.out.Path, s.out.RawQuery, err)
	}
}

func TestCheckedOutgoing(t *testing.T) {
	c := &Checked{Method: "POST", Path: "/v1/x", RawQuery: "a=1", Headers: []Header{{"Accept", "*/*"}}, Body: []byte("hi"), ContentType: "text/plain"}
	o := c.Outgoing("api.example.test")
	if o.Method != "POST" || o.Path != "/v1/x" || o.RawQuery != "a=1" || o.Host != "api.example.test" || string(o.Body) != "hi" {
		t.Fatalf("outgoing = %+v", o)
	}
	if len(o.Headers) != 2 || o.Headers[1] != (Header{"Content-Type", "text/plain"}) {
		t.Fatalf("headers = %q", o.Headers)
	}
	o.Headers[0].Value = "changed"
	o.Body[0] = 'X'
	if c.Headers[0].Value != "*/*" || string(c.Body) != "hi" {
		t.Errorf("Outgoing shares memory with Checked")
	}
	if got := (&Checked{Method: "GET", Path: "/"}).Outgoing("h.test"); len(got.Headers) != 0 || got.Body != nil {
		t.Errorf("no content type/body: %+v", got)
	}
}

// rqtUnderPrefix is the property's notion of "under": the cleaned path is
// the prefix (without a trailing slash) or continues below it.
func rqtUnderPrefix(clean, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(clean, "/")
	}
	p := strings.TrimSuffix(prefix, "/")
	return clean == p || strings.HasPrefix(clean, p+"/")
}

// FuzzCheckPath: any accepted path, normalised the way an upstream would
// (url.PathUnescape + path.Clean), still lies under an allowed prefix, and
// contains no control characters or backslashes once decoded.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{
		"/v1/chat/completions", "/v1/chat/completions/x?y=1", "/v0/a/b", "/v0/../x", "/v0/%2e%2e/x",
		"/v0/..;/x", "/v1/chat/completionsX", "//v0/", "/v0/%252e", "/v0/a%2fb", "/v0/\\..\\x",
		"/v0//..//x", "/v0/.%2E/", "/v1/chat/completions/..", "/v0/a%00",
	} {
		f.Add(s)
	}
	allow := rqtAllow()
	f.Fuzz(func(t *testing.T, p string) {
		c, err := CheckRequest(allow, nil, nil, CapPolicy{}, Request{Method: "GET", Path: p})
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("unclassed error %T %v", err, err)
			}
			return
		}
		dec, err := url.PathUnescape(c.Path)
		if err != nil {
			t.Fatalf("accepted path %q does not unescape: %v", c.Path, err)
		}
		if strings.ContainsAny(dec, "\\\x00\r\n") {
			t.Fatalf("accepted path %q decodes to %q", c.Path, dec)
		}
		clean := path.Clean(dec)
		for _, pre := range allow.PathPrefixes {
			if rqtUnderPrefix(clean, pre) {
				return
			}
		}
		t.Fatalf("accepted path %q normalises to %q, outside %q", c.Path, clean, allow.PathPrefixes)
	})
}

// FuzzHeaders: header validation never panics and accepted headers carry no
// control characters (except HTAB in values) and never a credential header.
func FuzzHeaders(f *testing.F) {
	f.Add("Accept", "application/json", "X-A", "b")
	f.Add("X-A", "1\r\nEvil: 1", "x-b", "2")
	f.Add("authorization", "Bearer x", "Content-Type", "text/plain")
	f.Add("X-A", "a\tb", "x-a", "dup")
	f.Add("Host", "evil", "Proxy-Authorization", "x")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		c, err := CheckRequest(rqtAllow(), []string{"x-api-key"}, nil, CapPolicy{},
			Request{Method: "GET", Path: "/v0/x", Headers: []Header{{n1, v1}, {n2, v2}}})
		if err != nil {
			return
		}
		for _, h := range append(c.Headers, Header{"Content-Type", c.ContentType}) {
			if !rqIsToken(h.Name) {
				t.Fatalf("accepted bad name %q", h.Name)
			}
			for i := 0; i < len(h.Value); i++ {
				if b := h.Value[i]; (b < 0x20 && b != '\t') || b == 0x7f {
					t.Fatalf("accepted CTL in %q: %q", h.Name, h.Value)
				}
			}
			switch strings.ToLower(h.Name) {
			case "authorization", "proxy-authorization", "cookie", "x-api-key", "host", "content-length", "transfer-encoding":
				t.Fatalf("accepted header %q", h.Name)
			}
		}
	})
}
