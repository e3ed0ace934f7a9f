package applets

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aivault/aivault/applets/devhooks"
	"github.com/aivault/aivault/audit"
	"github.com/aivault/aivault/crypt"
	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
	"github.com/aivault/aivault/sandbox"
	"golang.org/x/sys/unix"
)

// peer is who is asking, as the kernel says (SO_PEERCRED/SO_PEERGROUPS) or,
// in-process, the current process.
type peer struct {
	UID, GID, PID int
	Groups        []int
	User          string
	Comm, Exe     string
	Role          string
}

// engine executes every operation on one vault. It is the monitor's core:
// the daemon runs one for its vault; without a daemon the CLI runs one
// in-process for a single command.
type engine struct {
	lay    layout
	vault  *crypt.Vault
	reg    *policy.Registry
	hooks  *devhooks.Hooks
	now    func() time.Time
	logw   io.Writer
	daemon bool
	dinfo  *daemonInfo

	keyMu    sync.Mutex
	key      *crypt.Key
	unlockFn func() (*crypt.Key, error) // in-process key source; nil in the daemon
	lockAt   time.Time                  // daemon: relock time for unlock --timeout (zero: never)

	poolCfg sandbox.PoolConfig
	pool    *sandbox.Pool

	auditMu sync.Mutex
	// pending holds audit events recorded while the vault was locked.
	pendingMu      sync.Mutex
	pending        []audit.Event
	pendingDropped int
	auditLog       *audit.Log
	noDisk         bool

	dnsMu   sync.Mutex
	dnsSeen map[string]int

	oauthMu sync.Mutex
	oauth   map[string]*oauthToken

	stateMu sync.Mutex
}

type oauthToken struct {
	access  []byte
	expires time.Time
	mu      sync.Mutex
}

func newEngine(lay layout, v *crypt.Vault, hooks *devhooks.Hooks, logw io.Writer) (*engine, error) {
	reg, err := policy.Builtin()
	if err != nil {
		return nil, fmt.Errorf("built-in registry: %w", err)
	}
	return &engine{
		lay: lay, vault: v, reg: reg, hooks: hooks, now: time.Now, logw: logw,
		dnsSeen: map[string]int{}, oauth: map[string]*oauthToken{},
		noDisk: os.Getenv("AIVAULT_DISABLE_DISK_LOGS") == "1",
	}, nil
}

// getKey returns the unlocked KEK or VaultLocked.
func (e *engine) getKey() (*crypt.Key, error) {
	e.keyMu.Lock()
	defer e.keyMu.Unlock()
	if e.key != nil && !e.lockAt.IsZero() && e.now().After(e.lockAt) {
		e.key.Destroy()
		e.key = nil
		e.lockAt = time.Time{}
		e.closeAuditLocked()
	}
	if e.key != nil {
		return e.key, nil
	}
	if e.unlockFn == nil {
		return nil, policy.Errorf(policy.ClassVaultLocked, "the vault is locked").WithHint("run 'aivault unlock' as the vault owner")
	}
	k, err := e.unlockFn()
	if err != nil {
		return nil, mapCryptErr(err)
	}
	e.key = k
	return k, nil
}

func (e *engine) locked() bool {
	e.keyMu.Lock()
	defer e.keyMu.Unlock()
	if e.key != nil && !e.lockAt.IsZero() && e.now().After(e.lockAt) {
		return true
	}
	return e.key == nil
}

func (e *engine) setKey(k *crypt.Key, timeout time.Duration) {
	e.keyMu.Lock()
	defer e.keyMu.Unlock()
	if e.key != nil && e.key != k {
		e.key.Destroy()
	}
	e.key = k
	e.lockAt = time.Time{}
	if timeout > 0 {
		e.lockAt = e.now().Add(timeout)
	}
}

func (e *engine) dropKey() {
	e.keyMu.Lock()
	defer e.keyMu.Unlock()
	if e.key != nil {
		e.key.Destroy()
		e.key = nil
	}
	e.lockAt = time.Time{}
	e.closeAuditLocked()
}

func (e *engine) closeAuditLocked() {
	e.auditMu.Lock()
	defer e.auditMu.Unlock()
	if e.auditLog != nil {
		_ = e.auditLog.Close()
		e.auditLog = nil
	}
}

func (e *engine) close() {
	e.dropKey()
	if e.pool != nil {
		_ = e.pool.Close()
	}
}

// record appends an audit event; failures are reported on the log writer,
// never fatal to the request (the decision was already made).
func (e *engine) record(p *peer, ev audit.Event) {
	if e.noDisk {
		return
	}
	ev.TsMs = e.now().UnixMilli()
	if p != nil {
		uid, gid := p.UID, p.GID
		ev.UID, ev.GID = &uid, &gid
		ev.User, ev.PID, ev.Comm, ev.Exe, ev.Role = p.User, p.PID, p.Comm, p.Exe, p.Role
	}
	l, err := e.audit()
	if err != nil {
		var pe *policy.Error
		if errors.As(err, &pe) && pe.Class == policy.ClassVaultLocked {
			// A locked passphrase vault cannot open the audit key yet: keep
			// the event (bounded) and write it, in order, at unlock.
			e.pendingMu.Lock()
			if len(e.pending) < maxPendingAudit {
				e.pending = append(e.pending, ev)
			} else {
				e.pendingDropped++
			}
			e.pendingMu.Unlock()
			return
		}
		fmt.Fprintf(e.logw, "aivault: warning: audit log unavailable: %v\n", err)
		return
	}
	e.flushPending(l)
	if ev.Kind == "connection.refused" {
		key := "unknown"
		if p != nil {
			key = fmt.Sprintf("uid=%d", p.UID)
		}
		err = l.Refused(key, ev)
	} else {
		err = l.Append(ev)
	}
	if err != nil {
		fmt.Fprintf(e.logw, "aivault: warning: audit append failed: %v\n", err)
	}
}

// maxPendingAudit bounds the events kept while a passphrase vault is locked.
const maxPendingAudit = 4096

// flushPending writes the events recorded while the vault was locked.
func (e *engine) flushPending(l *audit.Log) {
	e.pendingMu.Lock()
	evs, dropped := e.pending, e.pendingDropped
	e.pending, e.pendingDropped = nil, 0
	e.pendingMu.Unlock()
	if dropped > 0 {
		evs = append(evs, audit.Event{TsMs: e.now().UnixMilli(), Kind: "audit.dropped", Decision: "deny", Count: dropped,
			Reason: "events while the vault was locked exceeded the in-memory buffer"})
	}
	if len(evs) == 0 {
		return
	}
	if err := l.AppendBatch(evs); err != nil {
		fmt.Fprintf(e.logw, "aivault: warning: audit append failed: %v\n", err)
	}
}

func (e *engine) audit() (*audit.Log, error) {
	e.auditMu.Lock()
	defer e.auditMu.Unlock()
	if e.auditLog != nil {
		return e.auditLog, nil
	}
	ak, err := e.auditKey()
	if err != nil {
		return nil, err
	}
	defer clear(ak)
	l, err := audit.Open(e.lay.auditDir(), ak, audit.Options{Now: e.now})
	if err != nil {
		return nil, err
	}
	e.auditLog = l
	return l, nil
}

// Internal records: secrets aivault keeps for itself, hidden from lists and
// refused as names. They are re-wrapped by rotate-master like every record,
// so what they key stays verifiable across master-key rotations.
const (
	internalPrefix = "_aivault."
	auditKeyName   = internalPrefix + "audit-key"
	// stateAnchorName marks a vault that has saved broker.json at least once.
	stateAnchorName = internalPrefix + "state-anchor"
)

func isInternalSecret(name string) bool { return strings.HasPrefix(name, internalPrefix) }

// auditKey returns the audit chain's MAC key (caller wipes), creating it on
// first use. Two processes racing to create it settle on one: names are unique.
func (e *engine) auditKey() ([]byte, error) {
	k, err := e.getKey()
	if err != nil {
		return nil, err
	}
	for range 2 {
		m, err := e.vault.FindSecret(auditKeyName, policy.ScopeGlobal, "", "")
		if err == nil {
			v, err := e.vault.OpenSecret(k, m.ID)
			return v, mapCryptErr(err)
		}
		if !errors.Is(err, crypt.ErrSecretNotFound) {
			return nil, mapCryptErr(err)
		}
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		_, err = e.vault.CreateSecret(k, crypt.SecretMeta{Name: auditKeyName, Scope: policy.ScopeGlobal}, raw)
		clear(raw)
		if err != nil && !errors.Is(err, crypt.ErrNameTaken) {
			return nil, mapCryptErr(err)
		}
	}
	return nil, errors.New("could not create the audit key")
}

// ---- state (broker.json) ----

const stateName = "broker.json"

func (e *engine) stateLock() (func(), error) {
	e.stateMu.Lock()
	f, err := os.OpenFile(filepath.Join(e.lay.Dir, "broker.lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		e.stateMu.Unlock()
		return nil, fmt.Errorf("lock broker state: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		e.stateMu.Unlock()
		return nil, fmt.Errorf("lock broker state: %w", err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
		e.stateMu.Unlock()
	}, nil
}

func (e *engine) loadState() (*policy.State, error) {
	k, err := e.getKey()
	if err != nil {
		return nil, err
	}
	st := policy.NewState()
	if err := e.vault.LoadState(k, stateName, st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// A vault that ever saved broker state carries an internal
			// anchor record: a missing broker.json is then a deletion (it
			// would silently drop every grant and policy), not a fresh vault.
			if _, ferr := e.vault.FindSecret(stateAnchorName, policy.ScopeGlobal, "", ""); ferr == nil {
				return nil, &policy.Error{Class: "StateTampered", Msg: "broker.json is missing, but this vault has saved credentials and policy before",
					Hint: "restore broker.json from a backup; deleting it would silently drop every grant, binding and policy"}
			}
			return policy.NewState(), nil
		}
		return nil, mapCryptErr(err)
	}
	st.Normalize()
	return st, nil
}

// ensureStateAnchor records (once) that this vault has broker state.
func (e *engine) ensureStateAnchor(k *crypt.Key) error {
	if _, err := e.vault.FindSecret(stateAnchorName, policy.ScopeGlobal, "", ""); err == nil {
		return nil
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	_, err := e.vault.CreateSecret(k, crypt.SecretMeta{Name: stateAnchorName, Scope: policy.ScopeGlobal}, raw)
	clear(raw)
	if err != nil && !errors.Is(err, crypt.ErrNameTaken) {
		return mapCryptErr(err)
	}
	return nil
}

// mutateState loads, changes and saves broker.json under its lock.
func (e *engine) mutateState(fn func(st *policy.State, infos []policy.SecretInfo) error) error {
	unlock, err := e.stateLock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := e.loadState()
	if err != nil {
		return err
	}
	infos, err := e.secretInfos()
	if err != nil {
		return err
	}
	if err := fn(st, infos); err != nil {
		return err
	}
	k, err := e.getKey()
	if err != nil {
		return err
	}
	st.Normalize()
	if err := e.vault.SaveState(k, stateName, st); err != nil {
		return mapCryptErr(err)
	}
	return e.ensureStateAnchor(k)
}

func (e *engine) secretInfos() ([]policy.SecretInfo, error) {
	metas, err := e.vault.ListSecrets()
	if err != nil {
		return nil, mapCryptErr(err)
	}
	out := make([]policy.SecretInfo, 0, len(metas))
	for _, m := range metas {
		if isInternalSecret(m.Name) {
			continue
		}
		out = append(out, secretInfo(m))
	}
	return out, nil
}

func secretInfo(m crypt.SecretMeta) policy.SecretInfo {
	return policy.SecretInfo{ID: m.ID, Name: m.Name, Scope: m.Scope, WorkspaceID: m.WorkspaceID, GroupID: m.GroupID, Pinned: m.Pinned}
}

// mapCryptErr turns crypt's sentinel errors into classed errors with hints.
func mapCryptErr(err error) error {
	if err == nil {
		return nil
	}
	var pe *policy.Error
	if errors.As(err, &pe) {
		return err
	}
	switch {
	case errors.Is(err, crypt.ErrVaultLocked):
		return &policy.Error{Class: policy.ClassVaultLocked, Msg: err.Error(), Hint: "run 'aivault unlock' (passphrase vaults) or provide the key the vault was initialised with"}
	case errors.Is(err, crypt.ErrWrongKey):
		return &policy.Error{Class: policy.ClassAccessDenied, Msg: err.Error(), Hint: "check the passphrase or key; 'aivault status' shows the key provider"}
	case errors.Is(err, crypt.ErrSecretNotFound):
		return &policy.Error{Class: policy.ClassSecretNotFound, Msg: err.Error(), Hint: "'aivault secrets list' shows the stored secrets"}
	case errors.Is(err, crypt.ErrNameTaken):
		return &policy.Error{Class: policy.ClassConflict, Msg: err.Error(), Hint: "use 'aivault secrets rotate' to change a value, or another --name"}
	case errors.Is(err, crypt.ErrAmbiguous):
		return &policy.Error{Class: policy.ClassAmbiguous, Msg: err.Error(), Hint: "name the secret by --id"}
	case errors.Is(err, crypt.ErrStateTampered):
		return &policy.Error{Class: "StateTampered", Msg: err.Error(), Hint: "restore broker.json from a backup, or remove it to reset credentials and policy ('aivault doctor' reports it)"}
	case errors.Is(err, crypt.ErrTampered):
		return &policy.Error{Class: "RecordTampered", Msg: err.Error(), Hint: "restore the named record from a backup; 'aivault doctor' lists every bad record"}
	case errors.Is(err, crypt.ErrNoVault):
		return &policy.Error{Class: "NoVault", Msg: err.Error(), Hint: "run 'aivault init' (or any command as the vault owner) to create the vault"}
	case errors.Is(err, crypt.ErrVaultExists):
		return &policy.Error{Class: policy.ClassConflict, Msg: err.Error(), Hint: "the vault already exists; 'aivault rotate-master' changes its key"}
	case errors.Is(err, crypt.ErrInvalid):
		return &policy.Error{Class: policy.ClassInvalidRequest, Msg: err.Error()}
	case errors.Is(err, crypt.ErrMemlock):
		return &policy.Error{Class: "MemlockLimit", Msg: err.Error(), Hint: "raise the locked-memory limit (ulimit -l, or LimitMEMLOCK= in the systemd unit)"}
	}
	return err
}

// ---- operations table ----

// agentOps are the only operations an agent may run.
var agentOps = map[string]bool{
	"invoke": true, "capability.list": true, "capability.describe": true, "health": true, "status": true,
}

type opFunc func(ctx context.Context, e *engine, p *peer, args json.RawMessage) (any, error)

func (e *engine) handle(ctx context.Context, p *peer, op string, args json.RawMessage) (any, error) {
	fn, ok := opTable()[op]
	if !ok {
		return nil, policy.Errorf(policy.ClassInvalidRequest, "unknown operation %q", op).WithHint("the client and daemon may be different versions; run 'aivault restart'")
	}
	if p.Role != ipc.RoleOperator && !agentOps[op] {
		e.record(p, audit.Event{Kind: "operator.denied", Decision: "deny", Reason: "AccessDenied: " + op})
		return nil, policy.Errorf(policy.ClassAccessDenied, "%q is an operator command; this connection's role is %s", op, p.Role).WithHint("run it as the vault owner (with the vault key) or as root")
	}
	return fn(ctx, e, p, args)
}

func decodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	if err := ipc.DecodeStrict(raw, v); err != nil {
		return policy.Errorf(policy.ClassInvalidRequest, "%v", err)
	}
	return nil
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}
