package sandbox

import (
	"bytes"
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aivault/aivault/ipc"
)

// TestMain doubles the test binary as the worker: spawned as
// "aivault-worker" (argv[0]) it runs WorkerMain instead of the tests.
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case DefaultArgv0:
		os.Exit(WorkerMain())
	case landlockInheritArgv0:
		os.Exit(landlockInheritMain())
	case landlockCheckArgv0:
		os.Exit(landlockCheckMain())
	case evilArgv0:
		os.Exit(evilWorkerMain())
	}
	os.Exit(m.Run())
}

// lockedBuffer collects worker stderr from the copy goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// upstream is a local TLS server standing in for a third-party API.
type upstream struct {
	srv   *httptest.Server
	roots []byte
}

func newUpstream(t testing.TB, h http.Handler) *upstream {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = false
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return &upstream{srv: srv, roots: roots}
}

// dial connects to the upstream the way the monitor does and returns the
// socket as a file to hand to a worker.
func (u *upstream) dial(t testing.TB) *os.File {
	t.Helper()
	c, err := net.Dial("tcp", u.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.(*net.TCPConn).File()
	_ = c.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func testConfig(t *testing.T, roots []byte, stderr *lockedBuffer) PoolConfig {
	t.Helper()
	if stderr == nil {
		stderr = &lockedBuffer{}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker stderr:\n%s", stderr.String())
		}
	})
	return PoolConfig{Exe: "/proc/self/exe", RootsPEM: roots, Env: []string{}, Stderr: stderr}
}

// collected is one job's relayed frames.
type collected struct {
	head   *ipc.Result
	body   bytes.Buffer
	end    *ipc.Result
	chunks int
}

func (c *collected) emit(r ipc.Result) error {
	switch r.Kind {
	case ipc.ResultHead:
		c.head = &r
	case ipc.ResultChunk:
		c.chunks++
		c.body.Write(r.Data)
	case ipc.ResultEnd:
		c.end = &r
	}
	return nil
}

func (c *collected) header(name string) (string, bool) {
	if c.head == nil {
		return "", false
	}
	for _, h := range c.head.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

func runJobOn(t *testing.T, p *Pool, u *upstream, job ipc.Job) (*collected, error) {
	t.Helper()
	if job.ServerName == "" {
		job.ServerName = "example.com"
	}
	if job.Method == "" {
		job.Method = "GET"
	}
	if job.TimeoutMs == 0 {
		job.TimeoutMs = 10_000
	}
	job.V = ipc.ProtocolVersion
	var c collected
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.Run(ctx, job, u.dial(t), c.emit)
	return &c, err
}

// waitABit is the pause between two polls of a condition.
func waitABit() { time.Sleep(5 * time.Millisecond) }
