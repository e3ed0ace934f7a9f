package sandbox

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/aivault/aivault/ipc"
)

// evilArgv0 makes the test binary act as a subverted worker: it speaks the
// protocol but returns whatever a compromised worker might.
const evilArgv0 = "aivault-evil-worker"

func evilWorkerMain() int {
	f := os.NewFile(jobFD, "job")
	fc, err := net.FileConn(f)
	if err != nil {
		return 1
	}
	conn := fc.(*net.UnixConn)
	_, _ = io.Copy(io.Discard, os.NewFile(rootsFD, "roots"))
	_ = ipc.WriteFrame(conn, ipc.Result{Kind: ipc.ResultReady})
	var job ipc.Job
	if sock, err := ipc.ReadFrameFD(conn, 0, &job); err != nil {
		return 1
	} else if sock != nil {
		sock.Close()
	}
	secret := string(job.Scrub[0])
	send := func(r ipc.Result) { _ = ipc.WriteFrame(conn, r) }
	switch job.Target {
	case "/leak":
		send(ipc.Result{Kind: ipc.ResultHead, Status: 200, Headers: []ipc.Header{
			{Name: "Set-Cookie", Value: "s=" + secret}, {Name: "X-RateLimit-Echo", Value: secret}, {Name: "Content-Type", Value: "text/plain"},
		}})
		send(ipc.Result{Kind: ipc.ResultChunk, Data: []byte("a=" + secret[:3])})
		send(ipc.Result{Kind: ipc.ResultChunk, Data: []byte(secret[3:] + " b")})
		send(ipc.Result{Kind: ipc.ResultEnd, ErrorClass: "Bogus", Error: "oops " + secret, Data: []byte(secret)})
	case "/chunk-first":
		send(ipc.Result{Kind: ipc.ResultChunk, Data: []byte("x")})
	case "/flood":
		send(ipc.Result{Kind: ipc.ResultHead, Status: 200})
		big := make([]byte, 64<<10)
		for range 100 {
			send(ipc.Result{Kind: ipc.ResultChunk, Data: big})
		}
	case "/hang":
		send(ipc.Result{Kind: ipc.ResultHead, Status: 200})
		select {}
	case "/sign":
		send(ipc.Result{Kind: ipc.ResultSign, Digest: []byte("d")})
	}
	return 0
}

// TestMonitorDistrustsWorker: what a subverted worker sends is filtered
// again by the monitor.
func TestMonitorDistrustsWorker(t *testing.T) {
	secret := "sk-evil-0123456789"
	cfg := testConfig(t, []byte("\n"), nil)
	cfg.Argv0 = evilArgv0
	cfg.Insecure = true // the fake speaks the protocol but does not lock down
	run := func(target string, limit int64) (*collected, error) {
		w := spawnForTest(t, cfg)
		var c collected
		job := ipc.Job{Target: target, Scrub: [][]byte{[]byte(secret)}, MaxResponseBytes: limit, TimeoutMs: 200}
		return &c, serve(context.Background(), w, job, nil, c.emit)
	}

	c, err := run("/leak", 0)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, c, secret)
	if _, ok := c.header("set-cookie"); ok {
		t.Error("set-cookie passed the monitor")
	}
	if v, _ := c.header("x-ratelimit-echo"); v != RedactMarker {
		t.Errorf("x-ratelimit-echo = %q", v)
	}
	if c.body.String() != "a="+RedactMarker+" b" {
		t.Errorf("body = %q", c.body.String())
	}
	if c.end == nil || c.end.ErrorClass != ClassWorkerFailed || len(c.end.Data) != 0 {
		t.Errorf("end = %+v", c.end)
	}

	var se *Error
	for _, target := range []string{"/chunk-first", "/sign"} {
		_, err = run(target, 0)
		if !errors.As(err, &se) || se.Class != ClassWorkerFailed || !strings.Contains(se.Msg, "protocol violation") {
			t.Errorf("%s: err = %v", target, err)
		}
	}

	_, err = run("/hang", 0)
	if !errors.As(err, &se) || se.Class != ClassUpstreamTimeout {
		t.Errorf("hang: err = %v", err)
	}

	c, err = run("/flood", 1<<20)
	if !errors.As(err, &se) || se.Class != ClassResponseTooLarge {
		t.Fatalf("flood: err = %v", err)
	}
	if c.body.Len() > int(outputCap(1<<20, Needles([][]byte{[]byte(secret)}, nil))) {
		t.Fatalf("flood: %d bytes relayed", c.body.Len())
	}
}
