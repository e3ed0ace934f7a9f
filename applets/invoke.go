package applets

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/aivault/aivault/audit"
	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
	"github.com/aivault/aivault/sandbox"
	"golang.org/x/sys/unix"
)

// invokeArgs is an invocation as the client sends it. Files named by the
// caller were already read by the client: only bytes arrive here, and the
// monitor never opens a caller-named path.
type invokeArgs struct {
	Capability  string            `json:"capability"`
	Credential  string            `json:"credential,omitempty"`
	WorkspaceID string            `json:"workspaceId,omitempty"`
	GroupID     string            `json:"groupId,omitempty"`
	Method      string            `json:"method,omitempty"`
	Path        string            `json:"path,omitempty"`
	Headers     []policy.Header   `json:"headers,omitempty"`
	Body        []byte            `json:"body,omitempty"`
	Multipart   *policy.Multipart `json:"multipart,omitempty"`
	Stream      bool              `json:"stream,omitempty"`
	TimeoutMs   int64             `json:"timeoutMs,omitempty"`
}

const (
	defaultTimeout = 60 * time.Second
	maxTimeout     = 10 * time.Minute
)

// invoke decides, renders auth, connects and runs one request in a worker,
// relaying Result frames to emit. Every outcome is audited.
//
// The audit record is written before the final frame reaches the caller, so a
// caller that has seen its answer can rely on the record being there.
func (e *engine) invoke(ctx context.Context, p *peer, a invokeArgs, emit func(ipc.Result) error) error {
	start := e.now()
	ev := audit.Event{Kind: "invoke", Capability: a.Capability, Method: strings.ToUpper(a.Method)}
	var end *ipc.Result
	err := e.invokeInner(ctx, p, a, &ev, func(r ipc.Result) error {
		if r.Kind == ipc.ResultEnd {
			held := r
			end = &held
			return nil
		}
		return emit(r)
	})
	ev.DurationMs = e.now().Sub(start).Milliseconds()
	if err != nil {
		ev.Decision = "deny"
		if ev.Worker != "" || ev.Status != 0 {
			ev.Decision = "allow"
		}
		ev.Reason = errClassMsg(err)
	} else {
		ev.Decision = "allow"
	}
	e.record(p, ev)
	if end != nil {
		if eerr := emit(*end); eerr != nil && err == nil {
			err = eerr
		}
	}
	return err
}

func (e *engine) invokeInner(ctx context.Context, p *peer, a invokeArgs, evp *audit.Event, emit func(ipc.Result) error) (err error) {
	ev := evp
	var res ipc.Result
	if a.Capability == "" {
		return policy.Errorf(policy.ClassInvalidRequest, "no capability named").WithHint("'aivault capability list' shows what you can invoke")
	}
	st, err := e.loadState()
	if err != nil {
		return err
	}
	c, _, err := policy.ResolveCapability(e.reg, st, a.Capability)
	if err != nil {
		return err
	}
	cctx, err := e.agentContext(p, c.ID, st, policy.Context{WorkspaceID: a.WorkspaceID, GroupID: a.GroupID})
	if err != nil {
		return err
	}
	explicitCred := a.Credential
	if p.Role != ipc.RoleOperator && explicitCred != "" {
		// An agent's credential comes from its grant and the operator's
		// bindings, never from a flag it passes.
		return policy.Errorf(policy.ClassAccessDenied, "agents cannot choose a credential").WithHint("drop --credential; the operator's grant decides")
	}
	infos, err := e.secretInfos()
	if err != nil {
		return err
	}
	cred, secretIDs, err := policy.SelectCredential(e.reg, st, infos, c, cctx, explicitCred)
	if err != nil {
		return err
	}
	ev.Credential = cred.ID
	host, err := policy.EffectiveHost(cred.Hosts, c.Allow.Hosts)
	if err != nil {
		return err
	}
	ev.Host = host
	pol := st.Policies[c.ID]
	method, path := a.Method, a.Path
	if method == "" || path == "" {
		dm, dp := policy.DefaultMethodPath(c.Allow)
		if method == "" {
			method = dm
		}
		if path == "" {
			path = dp
		}
	}
	if method == "" {
		return policy.Errorf(policy.ClassInvalidRequest, "%s allows several methods; say which with --method (%s)", c.ID, strings.Join(c.Allow.Methods, ", "))
	}
	if path == "" {
		return policy.Errorf(policy.ClassInvalidRequest, "%s allows several paths; give --path under one of: %s", c.ID, strings.Join(c.Allow.PathPrefixes, " "))
	}
	ev.Method = strings.ToUpper(method)
	req := policy.Request{Method: method, Path: path, Headers: a.Headers, Body: a.Body, Multipart: a.Multipart}
	checked, err := policy.CheckRequest(c.Allow, policy.InjectedHeaderNames(cred.Auth), policy.BrokerQueryParams(cred.Auth), pol, req)
	if err != nil {
		ev.Path = redactForAudit(path)
		return err
	}
	ev.Path = joinQuery(checked.Path, checked.RawQuery)
	if err := e.rateCheck(c.ID, pol.RateLimitPerMinute); err != nil {
		return err
	}

	// The upstream connection (address checks, TCP connect) is made while
	// the secrets are decrypted and the auth rendered: the request is
	// allowed by now, and nothing is sent on the socket before the job.
	// With OAuth2 the token request comes first, as before (it looks the
	// names up in that order).
	timeout := defaultTimeout
	if a.TimeoutMs > 0 {
		timeout = min(time.Duration(a.TimeoutMs)*time.Millisecond, maxTimeout)
	}
	var dial *pendingDial
	startDial := func() {
		dial = e.dialAsync(ctx, host, timeout+5*time.Second)
	}
	defer func() {
		if dial != nil {
			dial.discard()
		}
	}()
	if cred.Auth.OAuth2 == nil {
		startDial()
	}

	// Secrets: decrypted here, injected, and wiped when the job is sent.
	k, err := e.getKey()
	if err != nil {
		return err
	}
	values := map[string][]byte{}
	defer func() {
		for _, v := range values {
			clear(v)
		}
	}()
	for ph, id := range secretIDs {
		v, err := e.vault.OpenSecret(k, id)
		if err != nil {
			return mapCryptErr(err)
		}
		values[ph] = v
	}
	if cred.Auth.OAuth2 != nil {
		tok, err := e.oauthToken(ctx, cred, values)
		if err != nil {
			return err
		}
		values["access_token"] = tok
		startDial()
	}
	out := checked.Outgoing(host)
	scrub, err := policy.RenderAuth(cred.Auth, values, out, e.now())
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range scrub {
			clear(s)
		}
	}()
	ev.Path = policy.RedactTarget(out.Path, out.RawQuery, scrub)

	job := ipc.Job{
		V: ipc.ProtocolVersion, ServerName: host, Method: out.Method, Target: joinQuery(out.Path, out.RawQuery),
		Body: out.Body, Scrub: scrub, ResponseBlock: pol.ResponseBlock, MaxResponseBytes: pol.MaxResponseBodyBytes,
		Stream: a.Stream, TimeoutMs: timeout.Milliseconds(),
	}
	for _, h := range out.Headers {
		job.Headers = append(job.Headers, ipc.Header{Name: h.Name, Value: h.Value})
	}
	var signer crypto.Signer
	if cred.Auth.Kind() == policy.AuthKindMTLS {
		if job.ClientCertPEM, signer, err = mtlsIdentity(values[policy.PlaceholderSecret]); err != nil {
			return err
		}
	}
	ev.BytesOut = int64(len(out.Body))
	return e.runJob(ctx, job, signer, ev, &res, emit, dial)
}

// pendingDial is an upstream connection being made in the background.
type pendingDial struct {
	done   chan struct{}
	cancel context.CancelFunc
	conn   *os.File
	err    error
	taken  bool
}

// dialAsync starts e.connect(host), bounded by limit, and returns at once.
func (e *engine) dialAsync(ctx context.Context, host string, limit time.Duration) *pendingDial {
	dctx, cancel := context.WithTimeout(ctx, limit)
	d := &pendingDial{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(d.done)
		d.conn, d.err = e.connect(dctx, host)
	}()
	return d
}

// take waits for the connection; the caller then owns it.
func (d *pendingDial) take() (*os.File, error) {
	<-d.done
	d.taken = true
	d.cancel()
	return d.conn, d.err
}

// discard abandons the connection unless it was taken: the dial is
// cancelled and its socket closed in the background, so an early error
// never waits for a slow upstream.
func (d *pendingDial) discard() {
	if d.taken {
		return
	}
	d.cancel()
	go func() {
		<-d.done
		if d.conn != nil {
			_ = d.conn.Close()
		}
	}()
}

// runJob connects to the policy host (after the address check) and runs the
// job in a worker, relaying its frames.
func (e *engine) runJob(ctx context.Context, job ipc.Job, signer crypto.Signer, ev *audit.Event, res *ipc.Result, emit func(ipc.Result) error, dial *pendingDial) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(job.TimeoutMs)*time.Millisecond+5*time.Second)
	defer cancel()
	conn, err := dial.take()
	if err != nil {
		return err
	}
	defer conn.Close()
	pool, err := e.getPool(ctx)
	if err != nil {
		return err
	}
	var endErr error
	err = pool.RunSigned(ctx, job, conn, signer, func(r ipc.Result) error {
		switch r.Kind {
		case ipc.ResultHead:
			ev.Status = r.Status
		case ipc.ResultEnd:
			ev.BytesIn = r.BytesIn
			ev.Worker = "ok"
			if r.ErrorClass != "" {
				endErr = policy.Errorf(r.ErrorClass, "%s", r.Error)
			}
		}
		return emit(r)
	})
	if err != nil {
		var se *sandbox.Error
		if errors.As(err, &se) {
			switch se.Class {
			case sandbox.ClassUpstreamTimeout:
				ev.Worker = "timeout"
			case sandbox.ClassWorkerFailed:
				ev.Worker = "killed"
			default:
				if ev.Worker == "" {
					ev.Worker = "failed"
				}
			}
			return &policy.Error{Class: se.Class, Msg: se.Msg, Hint: workerHint(se.Class)}
		}
		if ev.Worker == "" {
			ev.Worker = "failed"
			if errors.Is(err, context.DeadlineExceeded) {
				ev.Worker = "timeout"
			}
		}
		return err
	}
	return endErr
}

// connect resolves host, checks every answer, and connects to exactly the
// checked address on port 443. It returns the connected socket as a file.
func (e *engine) connect(ctx context.Context, host string) (*os.File, error) {
	if err := policy.CheckHostName(host); err != nil {
		return nil, err
	}
	var target netip.AddrPort
	local, trusted := e.hooks.Resolve[host]
	if _, faked := e.hooks.DNS[host]; trusted && !faked {
		target = local // devhooks: a trusted local test upstream
	} else {
		addrs, err := e.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		own := policy.HostAddrs()
		for _, a := range addrs {
			if err := policy.CheckAddr(a, own); err != nil {
				return nil, policy.Errorf(policy.ClassPolicyViolation, "%s resolves to a forbidden address: %s", host, (err.(*policy.Error)).Msg)
			}
		}
		if len(addrs) == 0 {
			return nil, policy.Errorf(policy.ClassUpstreamUnreachable, "%s has no addresses", host)
		}
		target = netip.AddrPortFrom(addrs[0], 443)
		if trusted {
			// devhooks: a name in both AIVAULT_DEV_DNS and AIVAULT_DEV_RESOLVE
			// is decided by its (checked) fake answer, then reaches the local
			// test upstream, so rebinding tests stay on loopback.
			target = local
		}
	}
	d := net.Dialer{Timeout: 15 * time.Second}
	d.SetMultipathTCP(false)
	c, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return nil, policy.Errorf(policy.ClassUpstreamUnreachable, "cannot connect to %s: %v", host, stripAddrErr(err))
	}
	defer c.Close()
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", host, err)
	}
	return f, nil
}

func workerHint(class string) string {
	switch class {
	case sandbox.ClassWorkerFailed:
		return "the sandboxed worker died; the request was not completed (retry; 'aivault doctor --sandbox' checks the sandbox)"
	case sandbox.ClassUpstreamTimeout:
		return "raise --timeout-ms, or check the upstream"
	case sandbox.ClassSandboxUnavailable:
		return "the worker sandbox is not available on this kernel; see 'aivault doctor --sandbox'"
	}
	return ""
}

func stripAddrErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// lookup resolves host (fake answers from AIVAULT_DEV_DNS in devhooks builds:
// one answer per lookup, in order, still checked).
func (e *engine) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if answers, ok := e.hooks.DNS[host]; ok && len(answers) > 0 {
		e.dnsMu.Lock()
		i := e.dnsSeen[host]
		e.dnsSeen[host] = i + 1
		e.dnsMu.Unlock()
		if i >= len(answers) {
			i = len(answers) - 1
		}
		return []netip.Addr{answers[i]}, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, policy.Errorf(policy.ClassUpstreamUnreachable, "cannot resolve %s: %v", host, err)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

func joinQuery(path, q string) string {
	if q == "" {
		return path
	}
	return path + "?" + q
}

// redactForAudit keeps a refused path printable without its query string
// (which may carry anything the caller typed).
func redactForAudit(p string) string {
	p, _, _ = strings.Cut(p, "?")
	if len(p) > 256 {
		p = p[:256] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, p)
}

// ---- rate limits: one flock'ed counter file per vault ----

type rateFile struct {
	V    int                `json:"v"`
	Hits map[string][]int64 `json:"hits"`
}

func (e *engine) rateCheck(capID string, perMinute int) error {
	if perMinute <= 0 {
		return nil
	}
	path := e.lay.ratePath()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("rate-limit counter: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("rate-limit counter: %w", err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	var rf rateFile
	if data, _ := os.ReadFile(path); len(data) > 0 {
		if json.Unmarshal(data, &rf) != nil {
			rf = rateFile{}
		}
	}
	if rf.Hits == nil {
		rf.Hits = map[string][]int64{}
	}
	now := e.now().UnixMilli()
	for k, hs := range rf.Hits {
		kept := hs[:0]
		for _, h := range hs {
			if now-h < 60_000 {
				kept = append(kept, h)
			}
		}
		if len(kept) == 0 {
			delete(rf.Hits, k)
		} else {
			rf.Hits[k] = kept
		}
	}
	if len(rf.Hits[capID]) >= perMinute {
		return policy.Errorf(policy.ClassRateLimited, "%s allows %d calls per minute and that many were made in the last minute", capID, perMinute).WithHint("wait and retry, or ask the operator to raise --rate-limit-per-minute")
	}
	rf.Hits[capID] = append(rf.Hits[capID], now)
	rf.V = 1
	data, _ := json.Marshal(rf)
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return err
	}
	return f.Sync()
}
