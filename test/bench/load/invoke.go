// Package load drives a running aivaultd the way `aivault invoke` does (the
// framed JSON protocol of package ipc over its unix socket, without starting
// a process per request), and watches the daemon while it does: its open
// descriptors, its resident memory and its worker processes. It is shared by
// the benchmark (test/bench), `make soak` and the load script that runs in
// `make test` (test/testdata/load_daemon.txtar).
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/aivault/aivault/ipc"
)

// Request is one invocation, as `aivault invoke CAP --method M --path P
// --header H --body B` sends it.
type Request struct {
	Capability string
	Method     string
	Path       string
	Headers    []ipc.Header
	Body       []byte
	TimeoutMs  int64
}

// invokeArgs mirrors the JSON object the CLI sends as the invoke call's
// arguments (applets.invokeArgs; the daemon decodes it strictly, so an
// unknown field here would be refused, not ignored).
type invokeArgs struct {
	Capability string       `json:"capability"`
	Method     string       `json:"method,omitempty"`
	Path       string       `json:"path,omitempty"`
	Headers    []ipc.Header `json:"headers,omitempty"`
	Body       []byte       `json:"body,omitempty"`
	TimeoutMs  int64        `json:"timeoutMs,omitempty"`
}

// Outcome is how one invocation ended. Class is empty when the daemon
// relayed an upstream response (whatever its status); otherwise it is the
// daemon's error class (PolicyViolation, WorkerFailed, …).
type Outcome struct {
	Status int
	Body   []byte
	Class  string
	Error  string
}

// connWaitLimit bounds how long Invoke waits for a connection slot when the
// daemon's per-uid connection limit answers "too many connections" (the CLI
// waits its turn the same way).
const connWaitLimit = 30 * time.Second

// Invoke runs one request through the daemon listening on sock. A transport
// failure (no daemon, a connection cut before the end frame) is an error;
// a refusal or a failed request is an Outcome with a Class.
func Invoke(ctx context.Context, sock string, r Request) (Outcome, error) {
	c, err := dial(ctx, sock)
	if err != nil {
		return Outcome{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	args, err := json.Marshal(invokeArgs{Capability: r.Capability, Method: r.Method, Path: r.Path, Headers: r.Headers, Body: r.Body, TimeoutMs: r.TimeoutMs})
	if err != nil {
		return Outcome{}, err
	}
	if err := ipc.WriteFrame(c, ipc.Call{V: ipc.ProtocolVersion, Op: "invoke", Args: args}); err != nil {
		return Outcome{}, fmt.Errorf("send invoke: %w", err)
	}
	var out Outcome
	var body bytes.Buffer
	for {
		var res ipc.Result
		if err := ipc.ReadFrame(c, ipc.DefaultMaxFrame, &res); err != nil {
			return Outcome{}, fmt.Errorf("daemon closed the connection mid-response: %w", err)
		}
		switch res.Kind {
		case ipc.ResultHead:
			out.Status = res.Status
		case ipc.ResultChunk:
			body.Write(res.Data)
		case ipc.ResultEnd:
			out.Body = body.Bytes()
			out.Class, out.Error = res.ErrorClass, res.Error
			return out, nil
		default:
			return Outcome{}, fmt.Errorf("unexpected %q frame", res.Kind)
		}
	}
}

// dial connects and reads the greeting, waiting for a slot while the daemon
// answers "too many connections".
func dial(ctx context.Context, sock string) (*net.UnixConn, error) {
	deadline := time.Now().Add(connWaitLimit)
	wait := 2 * time.Millisecond
	for {
		c, err := dialOnce(ctx, sock)
		var busy *busyError
		if err == nil || !errors.As(err, &busy) || time.Now().After(deadline) {
			return c, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

type busyError struct{ msg string }

func (e *busyError) Error() string { return e.msg }

func dialOnce(ctx context.Context, sock string) (*net.UnixConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	c := nc.(*net.UnixConn)
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	payload, err := ipc.ReadRawFrame(c, ipc.DefaultMaxFrame)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("daemon did not greet: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	var hello ipc.ServerHello
	if err := json.Unmarshal(payload, &hello); err != nil || hello.V == 0 {
		c.Close()
		var r ipc.Reply
		if json.Unmarshal(payload, &r) == nil && r.Class != "" {
			if r.Class == "RateLimited" && strings.Contains(r.Error, "too many connections") {
				return nil, &busyError{msg: r.Error}
			}
			return nil, fmt.Errorf("daemon refused the connection: %s: %s", r.Class, r.Error)
		}
		return nil, errors.New("daemon sent a malformed greeting")
	}
	if hello.V != ipc.ProtocolVersion {
		c.Close()
		return nil, fmt.Errorf("daemon speaks protocol v%d, this driver v%d", hello.V, ipc.ProtocolVersion)
	}
	return c, nil
}
