package sandbox

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aivault/aivault/ipc"
)

// testSecret is the injected value of the end-to-end tests.
const testSecret = "sk-test-9f8e7d6c5b4a+/=?&"

func newTestPool(t *testing.T, u *upstream, size int) *Pool {
	t.Helper()
	cfg := testConfig(t, u.roots, nil)
	cfg.Size = size
	p, err := NewPool(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// assertNoSecret fails when any known form of the secret appears in c.
func assertNoSecret(t *testing.T, c *collected, secret string) {
	t.Helper()
	var all bytes.Buffer
	all.Write(c.body.Bytes())
	if c.head != nil {
		for _, h := range c.head.Headers {
			all.WriteString(h.Name + ": " + h.Value + "\n")
		}
	}
	if c.end != nil {
		all.WriteString(c.end.Error)
	}
	for _, form := range []string{
		secret, url.QueryEscape(secret), url.PathEscape(secret),
		base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret)),
	} {
		if bytes.Contains(all.Bytes(), []byte(form)) {
			t.Errorf("the response contains a form of the secret (len %d)", len(form))
		}
	}
}

// echoHandler echoes the secret back in many shapes, split across writes.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	key := r.URL.Query().Get("key")
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Set-Cookie", "session="+key)
	w.Header().Set("WWW-Authenticate", "Bearer realm=x")
	w.Header().Set("X-Request-Id", "req-123")
	w.Header().Set("Location", "https://example.com/?key="+key)
	w.Header().Set("X-RateLimit-Remaining", "41")
	w.Header().Set("Anthropic-Ratelimit-Requests-Limit", "50")
	w.Header().Set("X-Ratelimit-Echo", key)
	w.Header().Set("Retry-After", "3")
	fl := w.(http.Flusher)
	io.WriteString(w, "auth="+auth+"\n")
	io.WriteString(w, "raw uri="+r.RequestURI+"\n")
	io.WriteString(w, "b64="+base64.StdEncoding.EncodeToString([]byte(key))+"\n")
	io.WriteString(w, "basic="+base64.StdEncoding.EncodeToString([]byte("user:"+key))+"\n")
	// The secret split over two flushed writes (two chunks on the wire).
	half := len(key) / 2
	io.WriteString(w, "split="+key[:half])
	fl.Flush()
	io.WriteString(w, key[half:]+"\nend\n")
}

func TestEndToEndScrubs(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(echoHandler))
	p := newTestPool(t, u, 1)
	for _, stream := range []bool{false, true} {
		name := "buffered"
		if stream {
			name = "stream"
		}
		t.Run(name, func(t *testing.T) {
			c, err := runJobOn(t, p, u, ipc.Job{
				Target:  "/v1/echo?key=" + url.QueryEscape(testSecret),
				Headers: []ipc.Header{{Name: "Authorization", Value: "Bearer " + testSecret}},
				Scrub:   [][]byte{[]byte(testSecret)},
				Stream:  stream,
			})
			if err != nil {
				t.Fatal(err)
			}
			if c.end == nil || c.end.ErrorClass != "" {
				t.Fatalf("end = %+v", c.end)
			}
			if c.head == nil || c.head.Status != 200 {
				t.Fatalf("head = %+v", c.head)
			}
			assertNoSecret(t, c, testSecret)
			body := c.body.String()
			for _, want := range []string{"auth=Bearer [REDACTED]\n", "b64=[REDACTED]\n", "split=[REDACTED]\nend\n"} {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
			if strings.Count(body, RedactMarker) < 5 {
				t.Errorf("expected at least 5 redactions:\n%s", body)
			}
			for _, banned := range []string{"set-cookie", "www-authenticate", "x-request-id", "location", "content-length"} {
				if _, ok := c.header(banned); ok {
					t.Errorf("header %s was returned", banned)
				}
			}
			for name, want := range map[string]string{
				"content-type": "text/plain", "x-ratelimit-remaining": "41", "retry-after": "3",
				"anthropic-ratelimit-requests-limit": "50", "x-ratelimit-echo": RedactMarker,
			} {
				if got, _ := c.header(name); got != want {
					t.Errorf("header %s = %q, want %q", name, got, want)
				}
			}
			if c.end.BytesIn == 0 || c.end.BytesOut == 0 {
				t.Errorf("byte counters = %d/%d", c.end.BytesIn, c.end.BytesOut)
			}
		})
	}
}

func TestStreamForwardsChunksAsTheyArrive(t *testing.T) {
	release := make(chan struct{})
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	p := newTestPool(t, u, 0)
	var got []string
	sawFirst := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	job := ipc.Job{V: ipc.ProtocolVersion, ServerName: "example.com", Method: "GET", Target: "/sse", Stream: true, TimeoutMs: 10_000,
		Scrub: [][]byte{[]byte("abc")}}
	err := p.Run(context.Background(), job, u.dial(t), func(r ipc.Result) error {
		if r.Kind == ipc.ResultChunk {
			got = append(got, string(r.Data))
			// The event must arrive while the upstream is still waiting.
			if strings.Contains(strings.Join(got, ""), "first") {
				once.Do(func() { close(sawFirst); close(release) })
			}
		}
		return nil
	})
	select {
	case <-sawFirst:
	default:
		t.Fatal("the first event was not forwarded before the stream ended")
	}
	if err != nil {
		t.Fatal(err)
	}
	if all := strings.Join(got, ""); all != "data: first\n\ndata: second\n\n" {
		t.Fatalf("stream = %q", all)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	var hits atomic.Int32
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "https://elsewhere.example/steal", http.StatusFound)
	}))
	p := newTestPool(t, u, 0)
	c, err := runJobOn(t, p, u, ipc.Job{Target: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	if c.head == nil || c.head.Status != http.StatusFound {
		t.Fatalf("head = %+v", c.head)
	}
	if hits.Load() != 1 {
		t.Fatalf("upstream saw %d requests", hits.Load())
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestBodyDecodingAndLimits(t *testing.T) {
	bomb := gzipped(t, make([]byte, 64<<20)) // 64 MiB of zeros in ~64 KiB
	small := gzipped(t, []byte("hello gzip "+testSecret))
	big := bytes.Repeat([]byte("x"), 2<<20)
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bomb":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(bomb)
		case "/gzip":
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", strconv.Itoa(len(small)))
			w.Write(small)
		case "/big":
			w.Write(big)
		case "/br":
			w.Header().Set("Content-Encoding", "br")
			w.Write([]byte("whatever"))
		case "/stacked":
			w.Header().Set("Content-Encoding", "gzip, gzip")
			w.Write(gzipped(t, small))
		case "/exact":
			w.Write(big[:1<<20])
		}
	}))
	p := newTestPool(t, u, 1)
	for _, tc := range []struct {
		target, class string
		stream        bool
		body          string
		bodyLen       int
	}{
		{target: "/bomb", class: ClassResponseTooLarge},
		{target: "/bomb", class: ClassResponseTooLarge, stream: true},
		{target: "/big", class: ClassResponseTooLarge},
		{target: "/exact", bodyLen: 1 << 20},
		{target: "/gzip", body: "hello gzip " + RedactMarker},
		{target: "/br", class: ClassUnsupportedEncoding},
		{target: "/stacked", class: ClassUnsupportedEncoding},
	} {
		t.Run(strings.TrimPrefix(tc.target, "/"), func(t *testing.T) {
			c, err := runJobOn(t, p, u, ipc.Job{Target: tc.target, MaxResponseBytes: 1 << 20, Stream: tc.stream, Scrub: [][]byte{[]byte(testSecret)}})
			if err != nil {
				t.Fatal(err)
			}
			if c.end == nil || c.end.ErrorClass != tc.class {
				t.Fatalf("end = %+v, want class %q", c.end, tc.class)
			}
			if c.body.Len() > 1<<20+1 {
				t.Errorf("%d body bytes passed a 1 MiB limit", c.body.Len())
			}
			if tc.class != "" && !tc.stream && (c.head != nil || c.body.Len() > 0) {
				t.Errorf("a failed buffered response leaked a head or %d body bytes", c.body.Len())
			}
			if tc.body != "" && c.body.String() != tc.body {
				t.Errorf("body = %q, want %q", c.body.String(), tc.body)
			}
			if tc.bodyLen != 0 && c.body.Len() != tc.bodyLen {
				t.Errorf("body length = %d, want %d", c.body.Len(), tc.bodyLen)
			}
			if tc.target == "/gzip" {
				if _, ok := c.header("content-length"); ok {
					t.Error("content-length kept for a decoded body")
				}
			}
		})
	}
}

func TestUpstreamErrors(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "ok")
	}))
	p := newTestPool(t, u, 0)
	c, err := runJobOn(t, p, u, ipc.Job{Target: "/x", ServerName: "wrong.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if c.end == nil || c.end.ErrorClass != ClassUpstreamTLS {
		t.Fatalf("wrong name: end = %+v", c.end)
	}
	c, err = runJobOn(t, p, u, ipc.Job{Target: "/slow", TimeoutMs: 300})
	if err != nil {
		t.Fatal(err)
	}
	if c.end == nil || c.end.ErrorClass != ClassUpstreamTimeout {
		t.Fatalf("slow: end = %+v", c.end)
	}
	c, err = runJobOn(t, p, u, ipc.Job{Target: "/x", Headers: []ipc.Header{{Name: "X-Evil", Value: "a\r\nHost: evil"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.end == nil || c.end.ErrorClass != ClassInvalidRequest {
		t.Fatalf("header injection: end = %+v", c.end)
	}
	c, err = runJobOn(t, p, u, ipc.Job{Target: "/x", ClientCertPEM: []byte("not a PEM certificate")})
	if err != nil {
		t.Fatal(err)
	}
	if c.end == nil || c.end.ErrorClass != ClassInvalidRequest {
		t.Fatalf("bad client certificate: end = %+v", c.end)
	}
}

// TestKillMidRequest kills one worker while two requests are in flight:
// only that request fails and the pool keeps serving.
func TestKillMidRequest(t *testing.T) {
	hold := make(chan struct{})
	releaseOnce := sync.Once{}
	t.Cleanup(func() { releaseOnce.Do(func() { close(hold) }) })
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "start "+r.URL.Path+"\n")
		w.(http.Flusher).Flush()
		<-hold
		io.WriteString(w, "done\n")
	}))
	p := newTestPool(t, u, 1)
	pids := make(chan int, 2)
	p.hookTake = func(pid int) { pids <- pid }

	type outcome struct {
		c   *collected
		err error
	}
	started := make(chan string, 2)
	results := map[string]chan outcome{"/a": make(chan outcome, 1), "/b": make(chan outcome, 1)}
	for path, ch := range results {
		go func() {
			c := &collected{}
			job := ipc.Job{V: ipc.ProtocolVersion, ServerName: "example.com", Method: "GET", Target: path, Stream: true, TimeoutMs: 20_000}
			var once sync.Once
			err := p.Run(context.Background(), job, u.dial(t), func(r ipc.Result) error {
				if r.Kind == ipc.ResultChunk {
					once.Do(func() { started <- path })
				}
				return c.emit(r)
			})
			ch <- outcome{c, err}
		}()
	}
	// Wait until both requests are streaming, then kill the first worker.
	<-started
	<-started
	victim := <-pids
	<-pids
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Exactly one request fails with WorkerFailed; release the other.
	var failed, ok int
	deadline := time.After(20 * time.Second)
	for range 2 {
		select {
		case o := <-results["/a"]:
			failed, ok = tally(t, o.err, o.c, failed, ok)
			results["/a"] = nil
		case o := <-results["/b"]:
			failed, ok = tally(t, o.err, o.c, failed, ok)
			results["/b"] = nil
		case <-deadline:
			t.Fatal("requests did not finish")
		}
		releaseOnce.Do(func() { close(hold) })
	}
	if failed != 1 || ok != 1 {
		t.Fatalf("failed=%d ok=%d, want 1 and 1", failed, ok)
	}
	// The pool recovers: a new request works and the idle worker is back.
	p.hookTake = nil
	c, err := runJobOn(t, p, u, ipc.Job{Target: "/c"})
	if err != nil || c.end == nil || c.end.ErrorClass != "" {
		t.Fatalf("after the kill: err=%v end=%+v", err, c.end)
	}
	pollTrue(t, func() bool { return p.Stats().Idle == 1 })
	if st := p.Stats(); st.Failed < 1 || st.Served < 2 {
		t.Errorf("stats = %+v", st)
	}
}

func tally(t *testing.T, err error, c *collected, failed, ok int) (int, int) {
	t.Helper()
	var se *Error
	switch {
	case err == nil && c.end != nil && c.end.ErrorClass == "" && strings.HasSuffix(c.body.String(), "done\n"):
		return failed, ok + 1
	case errors.As(err, &se) && se.Class == ClassWorkerFailed && strings.Contains(se.Msg, "SIGKILL"):
		return failed + 1, ok
	default:
		t.Errorf("unexpected outcome: err=%v end=%+v body=%q", err, c.end, c.body.String())
		return failed, ok
	}
}

// pollTrue waits until f returns true.
func pollTrue(t *testing.T, f func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if f() {
			return
		}
		waitABit()
	}
	t.Fatal("condition not reached")
}

func TestEmitErrorAbortsAndKills(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") }))
	p := newTestPool(t, u, 0)
	stop := errors.New("client went away")
	job := ipc.Job{V: ipc.ProtocolVersion, ServerName: "example.com", Method: "GET", Target: "/", TimeoutMs: 10_000}
	err := p.Run(context.Background(), job, u.dial(t), func(r ipc.Result) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v", err)
	}
}

func TestClosedPoolRefuses(t *testing.T) {
	u := newUpstream(t, nil)
	p := newTestPool(t, u, 2)
	pollTrue(t, func() bool { return p.Stats().Idle == 2 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Idle != 0 {
		t.Fatalf("idle after close = %d", st.Idle)
	}
	err := p.Run(context.Background(), ipc.Job{}, nil, func(ipc.Result) error { return nil })
	var se *Error
	if !errors.As(err, &se) || se.Class != ClassWorkerFailed {
		t.Fatalf("Run after Close = %v", err)
	}
}

// TestIdleWorkerSurvives keeps a locked-down worker idle long enough for the
// Go runtime's periodic work (sysmon) to run under the filter.
func TestIdleWorkerSurvives(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 2.5s")
	}
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "alive") }))
	p := newTestPool(t, u, 1)
	pollTrue(t, func() bool { return p.Stats().Idle == 1 })
	time.Sleep(2500 * time.Millisecond) // nothing to poll: the point is elapsed time
	c, err := runJobOn(t, p, u, ipc.Job{Target: "/"})
	if err != nil || c.body.String() != "alive" {
		t.Fatalf("err=%v body=%q", err, c.body.String())
	}
	if st := p.Stats(); st.Failed != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestDeadIdleWorkerIsReplaced: an idle worker that died (OOM killer, an
// operator's kill) is noticed by the check before the job and replaced.
func TestDeadIdleWorkerIsReplaced(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p := newTestPool(t, u, 1)
	pollTrue(t, func() bool { return p.Stats().Idle == 1 })
	kids := childWorkers(t)
	if len(kids) != 1 {
		t.Fatalf("expected one idle worker, found %v", kids)
	}
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pollTrue(t, func() bool { // SIGKILL is asynchronous: wait for the zombie
		st, err := readStatus("/proc/" + strconv.Itoa(kids[0]) + "/status")
		return err == nil && strings.HasPrefix(st["State"], "Z")
	})
	c, err := runJobOn(t, p, u, ipc.Job{Target: "/"})
	if err != nil || c.body.String() != "ok" {
		t.Fatalf("err=%v body=%q", err, c.body.String())
	}
	if st := p.Stats(); st.Failed != 1 || st.Served != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

// childWorkers lists this process's worker children (live or zombie).
func childWorkers(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStatus("/proc/" + e.Name() + "/status")
		if err != nil || st["PPid"] != strconv.Itoa(os.Getpid()) {
			continue
		}
		if cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.HasPrefix(string(cmd), DefaultArgv0+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}
