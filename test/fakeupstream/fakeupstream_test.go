package fakeupstream

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func get(t *testing.T, c *http.Client, rawURL string) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func readLog(t *testing.T, path string) []Request {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Request
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var r Request
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad log line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func TestEchoIsRecordedAndLogged(t *testing.T) {
	s := start(t, Config{})
	c := s.Client()
	req, _ := http.NewRequest("POST", "https://api.openai.com/echo/v1/x?a=1&b=%2F", strings.NewReader("hello body"))
	req.Header.Set("Authorization", "Bearer sk-echo-me")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var echo struct {
		Method, Target, Host, SNI, Body string
		Headers                         http.Header
	}
	if err := json.Unmarshal(body, &echo); err != nil {
		t.Fatal(err)
	}
	if echo.Method != "POST" || echo.Target != "/echo/v1/x?a=1&b=%2F" || echo.Host != "api.openai.com" ||
		echo.SNI != "api.openai.com" || echo.Body != "hello body" || echo.Headers.Get("Authorization") != "Bearer sk-echo-me" {
		t.Fatalf("echo = %+v", echo)
	}

	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("recorded %d requests", len(reqs))
	}
	r := reqs[0]
	if r.Seq != 1 || r.Target != "/echo/v1/x?a=1&b=%2F" || r.Body != "hello body" || r.BodyLen != 10 ||
		r.Headers.Get("Authorization") != "Bearer sk-echo-me" || r.SNI != "api.openai.com" {
		t.Fatalf("record = %+v", r)
	}
	logged := readLog(t, s.LogPath())
	if len(logged) != 1 || logged[0].Target != r.Target || logged[0].Headers.Get("Authorization") != "Bearer sk-echo-me" {
		t.Fatalf("log = %+v", logged)
	}

	var ready Ready
	data, err := os.ReadFile(filepath.Join(filepath.Dir(s.LogPath()), ReadyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &ready); err != nil {
		t.Fatal(err)
	}
	if ready.Addr != s.Addr() || ready.Port != s.Port() || ready.CAPath != s.CAPath() || ready.PID != os.Getpid() {
		t.Fatalf("ready = %+v", ready)
	}
	pem, err := os.ReadFile(ready.CAPath)
	if err != nil || !bytes.Equal(pem, s.CAPEM()) {
		t.Fatalf("ca.pem differs from CAPEM (err %v)", err)
	}
}

func TestBinaryBodyRecordedAsBase64(t *testing.T) {
	s := start(t, Config{})
	bin := []byte{0xff, 0x00, 0xfe}
	resp, err := s.Client().Post("https://localhost/echo", "application/octet-stream", bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := s.Requests()[0]
	if r.Body != "" || r.BodyBase64 != base64.StdEncoding.EncodeToString(bin) {
		t.Fatalf("record = %+v", r)
	}
}

func TestCertificateNames(t *testing.T) {
	s := start(t, Config{Names: []string{"api.github.com", "*.myshopify.com"}})
	c := s.Client()
	for _, host := range []string{"api.github.com", "shop1.myshopify.com", "localhost", "127.0.0.1"} {
		if resp, _ := get(t, c, "https://"+host+"/"); resp.StatusCode != 200 {
			t.Errorf("%s: status %d", host, resp.StatusCode)
		}
	}
	if _, err := c.Get("https://api.openai.com/"); err == nil {
		t.Fatal("certificate unexpectedly valid for a name not in the list")
	}
	// A client that does not trust the fresh CA must fail.
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "localhost"}}}
	if _, err := plain.Get("https://" + s.Addr() + "/"); err == nil {
		t.Fatal("untrusted CA accepted")
	}
}

func TestRoutes(t *testing.T) {
	s := start(t, Config{})
	c := s.Client()

	t.Run("redirect", func(t *testing.T) {
		resp, _ := get(t, c, "https://localhost/redirect?to="+url.QueryEscape("https://attacker.test/x"))
		if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://attacker.test/x" {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = get(t, c, "https://localhost/redirect?code=307&to=/y")
		if resp.StatusCode != 307 {
			t.Fatalf("code %d", resp.StatusCode)
		}
	})
	t.Run("large", func(t *testing.T) {
		for _, q := range []string{"bytes=100000", "bytes=100000&chunked=1"} {
			resp, body := get(t, c, "https://localhost/large?"+q)
			if resp.StatusCode != 200 || len(body) != 100000 {
				t.Fatalf("%s: status %d len %d", q, resp.StatusCode, len(body))
			}
			want := strings.Repeat(patternLine, 100000/len(patternLine)+1)[:100000]
			if string(body) != want {
				t.Fatalf("%s: pattern mismatch", q)
			}
		}
		if resp, _ := get(t, c, "https://localhost/large?bytes=-1"); resp.StatusCode != 400 {
			t.Fatalf("negative size: %d", resp.StatusCode)
		}
	})
	t.Run("gzipbomb", func(t *testing.T) {
		const n = 5 << 20
		resp, body := get(t, c, "https://localhost/gzipbomb?bytes=5242880")
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
		}
		if len(body) >= n/100 {
			t.Fatalf("compressed body is %d bytes; not a bomb", len(body))
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		inflated, err := io.Copy(io.Discard, zr)
		if err != nil || inflated != n {
			t.Fatalf("inflated %d bytes (err %v), want %d", inflated, err, n)
		}
	})
	t.Run("status", func(t *testing.T) {
		for code, want := range map[string]int{"418": 418, "503": 503, "99": 400, "x": 200} {
			if resp, _ := get(t, c, "https://localhost/status?code="+code); resp.StatusCode != want {
				t.Errorf("code=%s: got %d want %d", code, resp.StatusCode, want)
			}
		}
	})
	t.Run("setcookie", func(t *testing.T) {
		resp, _ := get(t, c, "https://localhost/setcookie")
		if len(resp.Header.Values("Set-Cookie")) != 2 {
			t.Fatalf("Set-Cookie = %q", resp.Header.Values("Set-Cookie"))
		}
	})
	t.Run("headers", func(t *testing.T) {
		resp, _ := get(t, c, "https://localhost/headers")
		for _, h := range []string{"Set-Cookie", "Www-Authenticate", "X-Request-Id", "X-Ratelimit-Remaining"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("missing %s", h)
			}
		}
	})
	t.Run("slow honours cancellation", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://localhost/slow?ms=600000&phase=body", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "first\n" {
			t.Fatalf("first line %q, %v", line, err)
		}
		cancel()
		resp.Body.Close()
		if resp, body := get(t, c, "https://localhost/slow?ms=1"); resp.StatusCode != 200 || !strings.Contains(string(body), "slept_ms") {
			t.Fatalf("slow: %d %s", resp.StatusCode, body)
		}
	})
}

func TestSSEFlushesEachEvent(t *testing.T) {
	s := start(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The second event is ten minutes away: reading the first proves it was
	// flushed rather than buffered until the handler returns.
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://localhost/sse?n=2&ms=600000", nil)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	var event []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading first event: %v (ctx %v)", err, ctx.Err())
		}
		if line == "\n" {
			break
		}
		event = append(event, strings.TrimSpace(line))
	}
	if strings.Join(event, "|") != `id: 1|event: message|data: {"i":1}` {
		t.Fatalf("event = %q", event)
	}

	// All events of a short stream arrive.
	resp2, body := get(t, s.Client(), "https://localhost/sse?n=4&ms=1")
	if resp2.StatusCode != 200 || strings.Count(string(body), "data: ") != 4 {
		t.Fatalf("sse body %q", body)
	}
}

func TestTokenEndpoint(t *testing.T) {
	s := start(t, Config{})
	c := s.Client()
	post := func(q string, form url.Values) (int, map[string]any) {
		resp, err := c.PostForm("https://oauth2.googleapis.com/token"+q, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}
	code, m := post("", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-secret"}})
	if code != 200 || m["access_token"] != "at-1" || m["expires_in"] != 3600.0 || m["token_type"] != "Bearer" {
		t.Fatalf("%d %v", code, m)
	}
	code, m = post("?expires_in=5&rotate=1", url.Values{"grant_type": {"refresh_token"}})
	if code != 200 || m["access_token"] != "at-2" || m["expires_in"] != 5.0 || m["refresh_token"] != "rt-2" {
		t.Fatalf("%d %v", code, m)
	}
	code, m = post("", url.Values{"grant_type": {"client_credentials"}, "client_id": {"id"}})
	if code != 200 || m["access_token"] != "at-3" {
		t.Fatalf("%d %v", code, m)
	}
	if code, m = post("", url.Values{"grant_type": {"password"}}); code != 400 || m["error"] != "unsupported_grant_type" {
		t.Fatalf("%d %v", code, m)
	}
	if code, m = post("?fail=1", url.Values{"grant_type": {"refresh_token"}}); code != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("%d %v", code, m)
	}
	if got := s.Requests()[0].Body; got != "grant_type=refresh_token&refresh_token=rt-secret" {
		t.Fatalf("recorded token body %q", got)
	}
}

func TestEchoAuthReflectsAllForms(t *testing.T) {
	s := start(t, Config{})
	const secret = "sk-Secret/Value+1"
	req, _ := http.NewRequest("GET", "https://localhost/echo-auth?key="+url.QueryEscape(secret), nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, form := range []string{secret, url.QueryEscape(secret), base64.StdEncoding.EncodeToString([]byte(secret))} {
		if !bytes.Contains(body, []byte(form)) {
			t.Errorf("body lacks form %q", form)
		}
	}
	if resp.Header.Get("X-Echo-Authorization") != "Bearer "+secret {
		t.Errorf("X-Echo-Authorization %q", resp.Header.Get("X-Echo-Authorization"))
	}
}

func TestClientCertificates(t *testing.T) {
	dir := t.TempDir()
	b, err := WriteClientBundle(dir, "agent-client")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(b.KeyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi, err)
	}
	pair, err := tls.LoadX509KeyPair(b.CertPath, b.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	clientWith := func(s *Server, certs []tls.Certificate) *http.Client {
		c := s.Client()
		c.Transport.(*http.Transport).TLSClientConfig.Certificates = certs
		return c
	}

	t.Run("recorded when presented", func(t *testing.T) {
		s := start(t, Config{})
		get(t, clientWith(s, []tls.Certificate{pair}), "https://localhost/")
		get(t, s.Client(), "https://localhost/")
		reqs := s.Requests()
		if reqs[0].ClientCertSubject != b.Subject || !strings.Contains(b.Subject, "CN=agent-client") || reqs[1].ClientCertSubject != "" {
			t.Fatalf("subjects %q %q (want %q)", reqs[0].ClientCertSubject, reqs[1].ClientCertSubject, b.Subject)
		}
	})
	t.Run("verified against client CA", func(t *testing.T) {
		s := start(t, Config{ClientCAFile: b.CAPath, RequireClientCert: true})
		if resp, _ := get(t, clientWith(s, []tls.Certificate{pair}), "https://localhost/"); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		if _, err := s.Client().Get("https://localhost/"); err == nil {
			t.Fatal("request without a client certificate accepted")
		}
		other, err := WriteClientBundle(t.TempDir(), "stranger")
		if err != nil {
			t.Fatal(err)
		}
		op, _ := tls.LoadX509KeyPair(other.CertPath, other.KeyPath)
		if _, err := clientWith(s, []tls.Certificate{op}).Get("https://localhost/"); err == nil {
			t.Fatal("certificate from another CA accepted")
		}
	})
	if _, err := WriteClientBundle(dir, "../escape"); err == nil {
		t.Fatal("path-like common name accepted")
	}
}

func TestHTTP1OnlyAndCAIsCA(t *testing.T) {
	s := start(t, Config{HTTP1Only: true})
	resp, _ := get(t, s.Client(), "https://localhost/")
	if resp.Proto != "HTTP/1.1" {
		t.Fatalf("proto %s", resp.Proto)
	}
	cert, err := x509.ParseCertificate(s.ca.cert.Raw)
	if err != nil || !cert.IsCA || cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CA cert: %v", err)
	}
}
