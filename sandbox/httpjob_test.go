package sandbox

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"

	"github.com/aivault/aivault/ipc"
)

func TestValidateJob(t *testing.T) {
	good := ipc.Job{V: ipc.ProtocolVersion, ServerName: "api.example.com", Method: "POST", Target: "/v1/x?y=1",
		Headers: []ipc.Header{{Name: "Authorization", Value: "Bearer abc\tdef"}}}
	if err := validateJob(&good); err != nil {
		t.Fatalf("good job refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*ipc.Job)
	}{
		{"version", func(j *ipc.Job) { j.V = 99 }},
		{"empty host", func(j *ipc.Job) { j.ServerName = "" }},
		{"host with port", func(j *ipc.Job) { j.ServerName = "a.example:443" }},
		{"host with slash", func(j *ipc.Job) { j.ServerName = "a.example/x" }},
		{"host empty label", func(j *ipc.Job) { j.ServerName = "a..example" }},
		{"method space", func(j *ipc.Job) { j.Method = "GET /x HTTP/1.1\r\n" }},
		{"method empty", func(j *ipc.Job) { j.Method = "" }},
		{"target relative", func(j *ipc.Job) { j.Target = "x" }},
		{"target absolute URL", func(j *ipc.Job) { j.Target = "https://evil/" }},
		{"target space", func(j *ipc.Job) { j.Target = "/a b" }},
		{"target CRLF", func(j *ipc.Job) { j.Target = "/a\r\nX: y" }},
		{"target non-ASCII", func(j *ipc.Job) { j.Target = "/é" }},
		{"target bad escape", func(j *ipc.Job) { j.Target = "/a%2" }},
		{"target bad escape hex", func(j *ipc.Job) { j.Target = "/a%zz" }},
		{"target fragment", func(j *ipc.Job) { j.Target = "/a#b" }},
		{"header name colon", func(j *ipc.Job) { j.Headers = []ipc.Header{{Name: "X:Y", Value: "1"}} }},
		{"header value CRLF", func(j *ipc.Job) { j.Headers = []ipc.Header{{Name: "X", Value: "1\r\nHost: evil"}} }},
		{"header value NUL", func(j *ipc.Job) { j.Headers = []ipc.Header{{Name: "X", Value: "1\x00"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := good
			j.Headers = append([]ipc.Header(nil), good.Headers...)
			tc.mod(&j)
			if err := validateJob(&j); err == nil || err.Class != ClassInvalidRequest {
				t.Fatalf("validateJob = %v, want InvalidRequest", err)
			}
		})
	}
}

func TestAllowedResponseHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"Content-Type": true, "content-length": true, "Retry-After": true,
		"X-RateLimit-Remaining": true, "RateLimit-Reset": true, "RateLimit": true, "RateLimit-Policy": true,
		"anthropic-ratelimit-tokens-remaining": true,
		"Set-Cookie":                           false, "WWW-Authenticate": false, "X-Request-Id": false, "Request-Id": false,
		"Location": false, "Content-Encoding": false, "x-ratelimit-": false, "Authorization": false,
		"X-Amzn-RequestId": false, "Strict-Transport-Security": false,
	} {
		if got := allowedResponseHeader(name); got != want {
			t.Errorf("allowedResponseHeader(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestBuildRequestDropsFramingHeaders(t *testing.T) {
	j := ipc.Job{ServerName: "api.example.com", Method: "POST", Target: "/v1", Body: []byte("{}"),
		Headers: []ipc.Header{
			{Name: "Host", Value: "evil.example"}, {Name: "Content-Length", Value: "0"},
			{Name: "Transfer-Encoding", Value: "chunked"}, {Name: "Connection", Value: "keep-alive"},
			{Name: "X-Api-Key", Value: "k"},
		}}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buildRequest(&j))))
	if err != nil {
		t.Fatal(err)
	}
	if req.Host != "api.example.com" || req.ContentLength != 2 || len(req.TransferEncoding) != 0 || !req.Close {
		t.Fatalf("request = host %q len %d te %v close %v", req.Host, req.ContentLength, req.TransferEncoding, req.Close)
	}
	if req.Header.Get("X-Api-Key") != "k" || req.Header.Get("Accept-Encoding") != "gzip, deflate" {
		t.Fatalf("headers = %v", req.Header)
	}
}

// FuzzBuildRequest: any job that validates produces exactly one request
// whose method, target, host and headers are the job's.
func FuzzBuildRequest(f *testing.F) {
	f.Add("GET", "/v1/models?limit=5", "api.example.com", "Authorization", "Bearer x", []byte(""))
	f.Add("POST", "/v1/chat", "api.openai.com", "Content-Type", "application/json", []byte(`{"a":1}`))
	f.Add("PATCH", "/%2F..%2F", "1.2.3.4", "X-Y", "a\tb", []byte("body\r\n\r\nGET / HTTP/1.1"))
	f.Fuzz(func(t *testing.T, method, target, host, hname, hval string, body []byte) {
		j := ipc.Job{ServerName: host, Method: method, Target: target, Body: body,
			Headers: []ipc.Header{{Name: hname, Value: hval}}}
		if validateJob(&j) != nil {
			return
		}
		raw := buildRequest(&j)
		br := bufio.NewReader(bytes.NewReader(raw))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("unparsable request %q: %v", raw, err)
		}
		if req.Method != method || req.RequestURI != target || req.Host != host {
			t.Fatalf("request line/host changed: %q %q %q", req.Method, req.RequestURI, req.Host)
		}
		got := new(bytes.Buffer)
		if _, err := got.ReadFrom(req.Body); err != nil || !bytes.Equal(got.Bytes(), body) {
			t.Fatalf("body changed: %v", err)
		}
		if _, err := br.Peek(1); err == nil {
			t.Fatalf("bytes after the request: %q", raw)
		}
		if !workerSetHeader(hname) {
			if v := req.Header.Values(hname); len(v) != 1 || v[0] != strings.Trim(hval, " \t") {
				t.Fatalf("header %q = %q, want %q", hname, v, hval)
			}
		}
	})
}

func TestRelayResponseDecodesDeflateVariants(t *testing.T) {
	for _, tc := range []struct{ name, raw string }{
		{"zlib", "HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: 13\r\n\r\nx\x9c\xcbH\xcd\xc9\xc9\a\x00\x06,\x02\x15"},
		{"raw deflate", "HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: 7\r\n\r\n\xcbH\xcd\xc9\xc9\a\x00"},
		{"identity", "HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c collected
			job := ipc.Job{Method: "GET"}
			if e := relayResponse(bufio.NewReader(strings.NewReader(tc.raw)), &job, NewScrubber(nil), c.emit, func() {}); e != nil {
				t.Fatal(e)
			}
			if c.body.String() != "hello" {
				t.Fatalf("body = %q", c.body.String())
			}
		})
	}
}

func TestRelayResponseSkipsInterim(t *testing.T) {
	raw := "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
	var c collected
	job := ipc.Job{Method: "POST"}
	if e := relayResponse(bufio.NewReader(strings.NewReader(raw)), &job, NewScrubber(nil), c.emit, func() {}); e != nil {
		t.Fatal(e)
	}
	if c.head == nil || c.head.Status != 201 || c.body.String() != "ok" {
		t.Fatalf("head=%+v body=%q", c.head, c.body.String())
	}
	if e := relayResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 101 Switching Protocols\r\n\r\n")), &job, NewScrubber(nil), c.emit, func() {}); e == nil || e.Class != ClassUpstreamProtocol {
		t.Fatalf("101 = %v", e)
	}
}

// FuzzRelayResponse feeds arbitrary upstream bytes through the response
// path: it never panics, sends at most one head before any chunk, returns
// only allow-listed headers, respects the size cap and never returns the
// injected value.
func FuzzRelayResponse(f *testing.F) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("SECRET"), 2000))
	zw.Close()
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 11\r\nSet-Cookie: a=SECRET\r\n\r\nhello SECRET"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-RateLimit-Limit: SECRET\r\n\r\n3\r\nSEC\r\n3\r\nRET\r\n0\r\n\r\n"), true)
	f.Add(append([]byte("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"), gz.Bytes()...), false)
	f.Add([]byte("HTTP/1.1 302 Found\r\nLocation: https://x/?k=SECRET\r\n\r\n"), true)
	f.Add([]byte("HTTP/1.0 200\r\n\r\nU0VDUkVU and %53ECRET"), false)
	f.Fuzz(func(t *testing.T, raw []byte, stream bool) {
		const limit = 4096
		job := ipc.Job{Method: "GET", MaxResponseBytes: limit, Stream: stream}
		sc := NewScrubber(Needles([][]byte{[]byte("SECRET")}, nil))
		var frames []ipc.Result
		emit := func(r ipc.Result) error {
			r.Data = bytes.Clone(r.Data)
			frames = append(frames, r)
			return nil
		}
		_ = relayResponse(bufio.NewReader(bytes.NewReader(raw)), &job, sc, emit, func() {})
		var body bytes.Buffer
		for i, r := range frames {
			switch r.Kind {
			case ipc.ResultHead:
				if i != 0 {
					t.Fatalf("head at frame %d", i)
				}
				if r.Status < 100 || r.Status > 999 {
					t.Fatalf("status %d", r.Status)
				}
				for _, h := range r.Headers {
					if !allowedResponseHeader(h.Name) {
						t.Fatalf("header %q returned", h.Name)
					}
					if strings.Contains(h.Value, "SECRET") || strings.Contains(h.Value, "U0VDUkVU") {
						t.Fatalf("secret in header %q", h.Value)
					}
				}
			case ipc.ResultChunk:
				if i == 0 {
					t.Fatal("chunk before head")
				}
				body.Write(r.Data)
			default:
				t.Fatalf("unexpected frame kind %q", r.Kind)
			}
		}
		if bytes.Contains(body.Bytes(), []byte("SECRET")) || bytes.Contains(body.Bytes(), []byte("U0VDUkVU")) {
			t.Fatalf("secret in body %q", body.Bytes())
		}
		if int64(body.Len()) > outputCap(limit, [][]byte{[]byte("SECRET")}) {
			t.Fatalf("body of %d bytes passed the cap", body.Len())
		}
	})
}
