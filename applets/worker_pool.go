package applets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/aivault/aivault/crypt"
	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
	"github.com/aivault/aivault/sandbox"
)

// systemRootFiles are the fixed places the monitor reads TLS roots from (never
// a caller-named path). Workers get the bytes over a pipe.
var systemRootFiles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}

func (e *engine) rootsPEM() ([]byte, error) {
	var buf bytes.Buffer
	for _, f := range systemRootFiles {
		if b, err := os.ReadFile(f); err == nil {
			buf.Write(b)
			buf.WriteByte('\n')
			break
		}
	}
	if e.hooks.CACert != "" {
		b, err := os.ReadFile(e.hooks.CACert)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", "AIVAULT_DEV_CA_CERT_PATH", err)
		}
		buf.Write(b)
	}
	if buf.Len() == 0 {
		return nil, fmt.Errorf("no TLS root certificates found in %s; install ca-certificates", strings.Join(systemRootFiles, " or "))
	}
	return buf.Bytes(), nil
}

// workerEnv is the whole environment a worker gets: never the monitor's
// (an env-provider KEK must not reach it). containermaxprocs=0 stops the Go
// runtime from keeping /sys/fs/cgroup/cpu files open for the worker's life:
// a locked-down worker holds no file at all. memprofilerate=0: a single-use
// process has no use for allocation sampling (its profiling buckets were
// page faults in every worker).
func workerEnv() []string {
	return []string{"LANG=C", "GOTRACEBACK=none", "GODEBUG=containermaxprocs=0,updatemaxprocs=0,memprofilerate=0", "GOMAXPROCS=1"}
}

func (e *engine) basePoolConfig(size int, insecure bool) (sandbox.PoolConfig, error) {
	roots, err := e.rootsPEM()
	if err != nil {
		return sandbox.PoolConfig{}, err
	}
	return sandbox.PoolConfig{Exe: "/proc/self/exe", Argv0: "aivault-worker", Size: size, RootsPEM: roots, Insecure: insecure, Env: workerEnv(), Stderr: e.logw}, nil
}

func (e *engine) getPool(ctx context.Context) (*sandbox.Pool, error) {
	if e.pool != nil {
		return e.pool, nil
	}
	cfg := e.poolCfg
	if cfg.RootsPEM == nil {
		var err error
		if cfg, err = e.basePoolConfig(0, false); err != nil {
			return nil, err
		}
	}
	p, err := sandbox.NewPool(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e.pool = p
	return p, nil
}

// ---- OAuth2: tokens fetched through a worker, cached until expiry ----

func (e *engine) oauthToken(ctx context.Context, cred *policy.Credential, values map[string][]byte) ([]byte, error) {
	a := cred.Auth.OAuth2
	ids := make([]string, 0, len(cred.Secrets))
	for _, id := range cred.Secrets {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	cacheKey := cred.ID + "|" + strings.Join(ids, ",")
	e.oauthMu.Lock()
	t, ok := e.oauth[cacheKey]
	if !ok {
		t = &oauthToken{}
		e.oauth[cacheKey] = t
	}
	e.oauthMu.Unlock()
	t.mu.Lock() // one refresh at a time per credential
	defer t.mu.Unlock()
	if t.access != nil && e.now().Before(t.expires) {
		return bytes.Clone(t.access), nil
	}
	u, err := url.Parse(a.TokenEndpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Port() != "" || u.User != nil {
		return nil, policy.Errorf(policy.ClassPolicyViolation, "the OAuth2 token endpoint must be an https URL on port 443")
	}
	host, err := policy.NormalizeHost(u.Hostname(), false)
	if err != nil {
		return nil, err
	}
	within := false
	for _, h := range cred.Hosts {
		if policy.MatchHostPattern(h, host) {
			within = true
		}
	}
	if !within {
		return nil, policy.Errorf(policy.ClassPolicyViolation, "the OAuth2 token endpoint host %s is not one of the credential's hosts", host)
	}
	secretJSON := values["secret"]
	body, ct, err := policy.OAuth2TokenRequest(a, secretJSON)
	if err != nil {
		return nil, err
	}
	defer clear(body)
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	job := ipc.Job{V: ipc.ProtocolVersion, ServerName: host, Method: "POST", Target: joinQuery(path, u.RawQuery),
		Headers: []ipc.Header{{Name: "Content-Type", Value: ct}, {Name: "Accept", Value: "application/json"}},
		Body:    body, MaxResponseBytes: 1 << 20, TimeoutMs: 30_000}
	var resp bytes.Buffer
	status := 0
	var endErr error
	conn, err := e.connect(ctx, host)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	pool, err := e.getPool(ctx)
	if err != nil {
		return nil, err
	}
	err = pool.Run(ctx, job, conn, func(r ipc.Result) error {
		switch r.Kind {
		case ipc.ResultHead:
			status = r.Status
		case ipc.ResultChunk:
			resp.Write(r.Data)
		case ipc.ResultEnd:
			if r.ErrorClass != "" {
				endErr = policy.Errorf(r.ErrorClass, "token endpoint: %s", r.Error)
			}
		}
		return nil
	})
	defer clear(resp.Bytes())
	if err == nil {
		err = endErr
	}
	if err != nil {
		return nil, err
	}
	if status != 200 {
		// RFC 6749 §5.2: a refused grant is a 400 with {"error": code}.
		var pe *policy.Error
		if _, _, _, perr := policy.ParseOAuth2TokenResponse(resp.Bytes()); errors.As(perr, &pe) && pe.Class == policy.ClassAccessDenied {
			return nil, perr
		}
		return nil, policy.Errorf(policy.ClassUpstreamUnreachable, "the OAuth2 token endpoint answered HTTP %d", status).WithHint("the stored grant may be revoked; store a fresh one with 'aivault secrets rotate'")
	}
	access, refresh, expiresIn, err := policy.ParseOAuth2TokenResponse(resp.Bytes())
	if err != nil {
		return nil, err
	}
	if expiresIn <= 0 {
		expiresIn = 300
	}
	clear(t.access)
	t.access = access
	// Refresh a minute early so a cached token never expires in flight.
	t.expires = e.now().Add(time.Duration(expiresIn)*time.Second - time.Minute)
	if len(refresh) > 0 {
		if err := e.storeRefreshToken(cred, refresh); err != nil {
			fmt.Fprintf(e.logw, "aivault: warning: could not store the new refresh token for %s: %v\n", cred.ID, err)
		}
		clear(refresh)
	}
	return bytes.Clone(access), nil
}

// storeRefreshToken writes a rotated refresh token back into the grant secret.
func (e *engine) storeRefreshToken(cred *policy.Credential, refresh []byte) error {
	id := cred.Secrets["secret"]
	if id == "" {
		return nil
	}
	k, err := e.getKey()
	if err != nil {
		return err
	}
	old, err := e.vault.OpenSecret(k, id)
	if err != nil {
		return err
	}
	defer clear(old)
	var m map[string]any
	if err := json.Unmarshal(old, &m); err != nil {
		return fmt.Errorf("the grant secret is not a JSON object")
	}
	if m["refreshToken"] == string(refresh) || m["refresh_token"] == string(refresh) {
		return nil
	}
	if _, ok := m["refresh_token"]; ok {
		m["refresh_token"] = string(refresh)
	} else {
		m["refreshToken"] = string(refresh)
	}
	nv, err := json.Marshal(m)
	if err != nil {
		return err
	}
	defer clear(nv)
	_, err = e.vault.RotateSecret(k, id, nv)
	return err
}

var _ = crypt.ProviderFile
