package crypt

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// DefaultScope is the scope given to a secret created with an empty Scope.
const DefaultScope = "global"

func (v *Vault) recordPath(id string) string {
	return filepath.Join(v.secretsDir(), id+".json")
}

// loadRecord reads and parses one record. It does not authenticate it.
func (v *Vault) loadRecord(id string) (*record, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %q is not a secret id", ErrSecretNotFound, id)
	}
	path := v.recordPath(id)
	data, err := readFileLimited(path, maxRecordSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrSecretNotFound, id)
	}
	if err != nil {
		if errors.Is(err, errTooLarge) || errors.Is(err, ErrInvalid) || errors.Is(err, syscall.ELOOP) {
			return nil, &TamperedError{ID: id, File: path, Problem: err.Error()}
		}
		return nil, fmt.Errorf("reading secret %s: %w", id, err)
	}
	if r, ok := v.parsedRecord(id, data); ok {
		return r, nil
	}
	r, err := parseRecord(data)
	if err != nil {
		return nil, &TamperedError{ID: id, File: path, Problem: err.Error()}
	}
	if r.ID != id {
		return nil, &TamperedError{ID: id, File: path, Problem: "record id does not match its file name"}
	}
	v.rememberRecord(id, data, r)
	return r, nil
}

// parsedRecord returns a copy of the record parsed from exactly data for
// id, if it is the last one parsed. The file is read every time; only the
// strict JSON decoding (most of the daemon's per-request work on records)
// is skipped for unchanged bytes. Records hold only ciphertext and wrapped
// keys.
func (v *Vault) parsedRecord(id string, data []byte) (*record, bool) {
	v.recMu.Lock()
	defer v.recMu.Unlock()
	c, ok := v.records[id]
	if !ok || !bytes.Equal(c.data, data) {
		return nil, false
	}
	return c.rec.clone(), true
}

func (v *Vault) rememberRecord(id string, data []byte, r *record) {
	v.recMu.Lock()
	defer v.recMu.Unlock()
	if v.records == nil {
		v.records = map[string]parsedRecord{}
	}
	v.records[id] = parsedRecord{data: bytes.Clone(data), rec: r.clone()}
}

// forgetRecordsExcept drops remembered records whose ids are not in ids.
func (v *Vault) forgetRecordsExcept(ids []string) {
	v.recMu.Lock()
	defer v.recMu.Unlock()
	for id := range v.records {
		if !slices.Contains(ids, id) {
			delete(v.records, id)
		}
	}
}

// parsedRecord is a record file's bytes and what they parsed to.
type parsedRecord struct {
	data []byte
	rec  *record
}

// recordIDs lists the ids of the record files in D/secrets, sorted. Files
// that are not records (temporaries) are skipped; other stray names are
// returned in strays. A record name that is not a regular file (a symlink)
// is listed, so that reading it reports the record as tampered.
func (v *Vault) recordIDs() (ids, strays []string, err error) {
	ents, err := os.ReadDir(v.secretsDir())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("listing secrets: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if isTemp(name) {
			continue
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || !ValidID(id) {
			strays = append(strays, name)
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, strays, nil
}

// loadAll reads every record, sorted by id. A record that cannot be parsed
// fails the whole call (fail closed); one deleted meanwhile is skipped.
func (v *Vault) loadAll() ([]*record, error) {
	ids, _, err := v.recordIDs()
	if err != nil {
		return nil, err
	}
	v.forgetRecordsExcept(ids)
	out := make([]*record, 0, len(ids))
	for _, id := range ids {
		r, err := v.loadRecord(id)
		if errors.Is(err, ErrSecretNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// writeRecord atomically writes r to its file.
func (v *Vault) writeRecord(r *record, step string) error {
	data, err := r.encode()
	if err != nil {
		return fmt.Errorf("encoding secret %s: %w", r.ID, err)
	}
	return writeAtomic(v.recordPath(r.ID), data, 0o600, v.opts.CrashPoint, step)
}

// cleanTemps removes leftovers of interrupted writes: every temporary file
// in D/secrets, and those of vault.json and of state files in D. Only called
// with the lock held: every writer of those files holds it, so none of them
// is in use. (Temporaries of other files in D, written by other packages
// with WriteFileAtomic, are left alone.)
func (v *Vault) cleanTemps() {
	if ents, err := os.ReadDir(v.secretsDir()); err == nil {
		for _, e := range ents {
			if isTemp(e.Name()) {
				os.Remove(filepath.Join(v.secretsDir(), e.Name()))
			}
		}
	}
	ents, err := os.ReadDir(v.paths.Dir)
	if err != nil {
		return
	}
	ours := map[string]bool{metaName: true}
	if names, err := v.stateNames(); err == nil {
		for _, n := range names {
			ours[n+".json"] = true
		}
	}
	for _, e := range ents {
		name := e.Name()
		if !isTemp(name) {
			continue
		}
		rest := strings.TrimPrefix(name, tempPrefix)
		if i := strings.LastIndexByte(rest, '-'); i > 0 && ours[rest[:i]] {
			os.Remove(filepath.Join(v.paths.Dir, name))
		}
	}
}

// requireCurrent (lock held) finishes any interrupted rotation with k and
// checks that k is the vault's current key.
func (v *Vault) requireCurrent(k *Key) error {
	if k == nil {
		return ErrKeyDestroyed
	}
	m, err := v.readMeta()
	if err != nil {
		return err
	}
	if m.Pending != nil || m.Previous != nil {
		if err := v.recoverLocked(k); err != nil {
			return err
		}
		if m, err = v.readMeta(); err != nil {
			return err
		}
	}
	if k.ID() != m.KEKID {
		return fmt.Errorf("%w: the key is not the vault's current key (was the master key rotated? unlock again)", ErrWrongKey)
	}
	v.cleanTemps()
	return nil
}

// scopeKey groups secrets whose names must be unique.
func scopeKey(scope, ws, grp string) string { return scope + "\x00" + ws + "\x00" + grp }

// checkNames returns ErrNameTaken if any of names is already a name or alias
// of another secret (not id) with the same scope, workspace and group.
func checkNames(recs []*record, id string, m *SecretMeta, names []string) error {
	sk := scopeKey(m.Scope, m.WorkspaceID, m.GroupID)
	for _, r := range recs {
		if r.ID == id || scopeKey(r.Scope, r.WorkspaceID, r.GroupID) != sk {
			continue
		}
		for _, n := range names {
			if r.Name == n || slices.Contains(r.Aliases, n) {
				return fmt.Errorf("%w: %q is already used by secret %s in scope %s", ErrNameTaken, n, r.ID, describeScope(r))
			}
		}
	}
	return nil
}

func describeScope(r *record) string {
	s := r.Scope
	if r.WorkspaceID != "" {
		s += " workspace=" + r.WorkspaceID
	}
	if r.GroupID != "" {
		s += " group=" + r.GroupID
	}
	return s
}

// CreateSecret stores value as a new secret with metadata m (ID, timestamps
// and ValueVersion are assigned; an empty Scope means DefaultScope) and
// returns the stored metadata. The value gets its own random DEK. Names and
// aliases must be unique within the scope/workspace/group (ErrNameTaken).
// The caller keeps ownership of value (and wipes it). Takes the vault lock.
func (v *Vault) CreateSecret(k *Key, m SecretMeta, value []byte) (SecretMeta, error) {
	if m.Scope == "" {
		m.Scope = DefaultScope
	}
	m.Aliases = slices.Clone(m.Aliases)
	if err := validateMeta(&m); err != nil {
		return SecretMeta{}, err
	}
	if len(value) == 0 || len(value) > MaxSecretSize {
		return SecretMeta{}, fmt.Errorf("%w: a secret value must be 1..%d bytes", ErrInvalid, MaxSecretSize)
	}
	var out SecretMeta
	err := v.mutate(func() error {
		if err := v.requireCurrent(k); err != nil {
			return err
		}
		recs, err := v.loadAll()
		if err != nil {
			return err
		}
		if err := checkNames(recs, "", &m, append([]string{m.Name}, m.Aliases...)); err != nil {
			return err
		}
		var id string
		for {
			if id, err = newSecretID(); err != nil {
				return err
			}
			if _, err := os.Lstat(v.recordPath(id)); errors.Is(err, fs.ErrNotExist) {
				break
			}
		}
		now := v.now()
		r := &record{
			Format: recordFormat, Version: recordVersion, ID: id,
			Name: m.Name, Aliases: m.Aliases, Scope: m.Scope, WorkspaceID: m.WorkspaceID,
			GroupID: m.GroupID, Pinned: m.Pinned, CreatedAt: now, UpdatedAt: now, ValueVersion: 1,
		}
		wk, err := k.derive(labelWrap)
		if err != nil {
			return err
		}
		defer clear(wk)
		if err := r.sealValue(wk, k.ID(), value); err != nil {
			return err
		}
		if err := v.writeRecord(r, "secrets-create"); err != nil {
			return err
		}
		v.crash("secrets-create:after-rename")
		out = r.meta()
		return nil
	})
	return out, err
}

// ListSecrets returns the metadata of every secret, sorted by id. It needs no
// key and takes no lock (records are replaced atomically). A malformed
// record fails the call with a *TamperedError (run Verify for details).
func (v *Vault) ListSecrets() ([]SecretMeta, error) {
	recs, err := v.loadAll()
	if err != nil {
		return nil, err
	}
	out := make([]SecretMeta, len(recs))
	for i, r := range recs {
		out[i] = r.meta()
	}
	return out, nil
}

// FindSecret resolves an id, name or alias among the secrets matching the
// filters; an empty scope, ws or grp matches any value. An id is matched
// first, then names, then aliases. ErrSecretNotFound if nothing matches,
// ErrAmbiguous if several secrets match at the same level (e.g. the same
// name in two workspaces when ws is empty).
func (v *Vault) FindSecret(idOrName string, scope, ws, grp string) (SecretMeta, error) {
	recs, err := v.loadAll()
	if err != nil {
		return SecretMeta{}, err
	}
	match := func(r *record) bool {
		return (scope == "" || r.Scope == scope) && (ws == "" || r.WorkspaceID == ws) && (grp == "" || r.GroupID == grp)
	}
	levels := []func(*record) bool{
		func(r *record) bool { return r.ID == idOrName },
		func(r *record) bool { return r.Name == idOrName },
		func(r *record) bool { return slices.Contains(r.Aliases, idOrName) },
	}
	for _, level := range levels {
		var found []*record
		for _, r := range recs {
			if match(r) && level(r) {
				found = append(found, r)
			}
		}
		switch len(found) {
		case 0:
			continue
		case 1:
			return found[0].meta(), nil
		default:
			ids := make([]string, len(found))
			for i, r := range found {
				ids[i] = r.ID + " (" + describeScope(r) + ")"
			}
			return SecretMeta{}, fmt.Errorf("%w: %q matches %s; use an id or narrow the scope", ErrAmbiguous, idOrName, strings.Join(ids, ", "))
		}
	}
	return SecretMeta{}, fmt.Errorf("%w: %q", ErrSecretNotFound, idOrName)
}

// UpdateSecret changes a secret's name and aliases (metadata only; no key is
// needed because names are not part of the authenticated data). newName nil
// keeps the name; clearAliases drops all aliases first; then aliases are
// added (duplicates ignored). Takes the vault lock.
func (v *Vault) UpdateSecret(id string, newName *string, aliases []string, clearAliases bool) (SecretMeta, error) {
	var out SecretMeta
	err := v.mutate(func() error {
		r, err := v.loadRecord(id)
		if err != nil {
			return err
		}
		m := r.meta()
		if newName != nil {
			m.Name = *newName
		}
		if clearAliases {
			m.Aliases = nil
		}
		for _, a := range aliases {
			if !slices.Contains(m.Aliases, a) && a != m.Name {
				m.Aliases = append(m.Aliases, a)
			}
		}
		if err := validateMeta(&m); err != nil {
			return err
		}
		recs, err := v.loadAll()
		if err != nil {
			return err
		}
		if err := checkNames(recs, id, &m, append([]string{m.Name}, m.Aliases...)); err != nil {
			return err
		}
		r.Name, r.Aliases, r.UpdatedAt = m.Name, m.Aliases, v.now()
		if len(r.Aliases) == 0 {
			r.Aliases = nil
		}
		if err := v.writeRecord(r, "secrets-update"); err != nil {
			return err
		}
		v.crash("secrets-update:after-rename")
		out = r.meta()
		return nil
	})
	return out, err
}

// RotateSecret replaces a secret's value under a fresh DEK and increments
// its ValueVersion. The existing record's binding (its DEK wrap, which
// authenticates id, scope, workspace, group and pinned provider) must
// authenticate under k, so a tampered scope is never re-sealed; a corrupt
// old value ciphertext, on the other hand, is simply replaced. Takes the
// vault lock.
func (v *Vault) RotateSecret(k *Key, id string, value []byte) (SecretMeta, error) {
	if len(value) == 0 || len(value) > MaxSecretSize {
		return SecretMeta{}, fmt.Errorf("%w: a secret value must be 1..%d bytes", ErrInvalid, MaxSecretSize)
	}
	var out SecretMeta
	err := v.mutate(func() error {
		if err := v.requireCurrent(k); err != nil {
			return err
		}
		r, err := v.loadRecord(id)
		if err != nil {
			return err
		}
		wk, err := k.derive(labelWrap)
		if err != nil {
			return err
		}
		defer clear(wk)
		dek, err := r.unwrapDEK(wk, k.ID())
		if err != nil {
			return v.withFile(err, id)
		}
		clear(dek)
		if err := r.sealValue(wk, k.ID(), value); err != nil {
			return err
		}
		r.ValueVersion++
		r.UpdatedAt = v.now()
		if err := v.writeRecord(r, "secrets-rotate"); err != nil {
			return err
		}
		v.crash("secrets-rotate:after-rename")
		out = r.meta()
		return nil
	})
	return out, err
}

// DeleteSecret removes a secret's record (unlink + directory fsync). Takes
// the vault lock.
func (v *Vault) DeleteSecret(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: %q is not a secret id", ErrSecretNotFound, id)
	}
	return v.mutate(func() error {
		path := v.recordPath(id)
		if _, err := os.Lstat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: %s", ErrSecretNotFound, id)
			}
			return fmt.Errorf("deleting secret %s: %w", id, err)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("deleting secret %s: %w", id, err)
		}
		v.crash("secrets-delete:after-unlink")
		if err := syncDir(v.secretsDir()); err != nil {
			return err
		}
		v.crash("secrets-delete:after-remove")
		return nil
	})
}

// withFile fills in the record path of a *TamperedError.
func (v *Vault) withFile(err error, id string) error {
	var te *TamperedError
	if errors.As(err, &te) && te.File == "" {
		te.File = v.recordPath(id)
	}
	return err
}

// OpenSecret decrypts and returns a secret's value; the caller must wipe it
// (clear) as soon as it is used. This is the only decrypt path. A record
// that fails authentication returns a *TamperedError naming it.
func (v *Vault) OpenSecret(k *Key, id string) ([]byte, error) {
	r, err := v.loadRecord(id)
	if err != nil {
		return nil, err
	}
	wk, err := k.derive(labelWrap)
	if err != nil {
		return nil, err
	}
	defer clear(wk)
	dek, err := r.unwrapDEK(wk, k.ID())
	if err != nil {
		return nil, v.withFile(err, id)
	}
	defer clear(dek)
	pt, err := r.openValue(dek)
	if err != nil {
		return nil, v.withFile(err, id)
	}
	return pt, nil
}

// RecordProblem is one finding of Verify. It never contains a value.
type RecordProblem struct {
	ID      string // secret id, state name or "vault.json"
	File    string
	Problem string
}

// Verify checks, without printing or returning any value, that every record
// parses, sits in the right file, is wrapped under k and authenticates, that
// names are unique per scope, that every state file's MAC is valid, and that
// no master-key rotation is left half-done. The error is for failures that
// prevent checking at all (ErrWrongKey if k is not the vault's key).
func (v *Vault) Verify(k *Key) ([]RecordProblem, error) {
	m, err := v.readMeta()
	if err != nil {
		return nil, err
	}
	if k == nil || (k.ID() != m.KEKID && (m.Pending == nil || k.ID() != m.Pending.KEKID)) {
		return nil, fmt.Errorf("%w: the key is not the vault's current key", ErrWrongKey)
	}
	var probs []RecordProblem
	if m.Pending != nil || m.Previous != nil {
		probs = append(probs, RecordProblem{ID: metaName, File: v.metaPath(), Problem: "a master-key rotation was interrupted; unlock the vault to finish or roll it back"})
	}
	ids, strays, err := v.recordIDs()
	if err != nil {
		return nil, err
	}
	for _, s := range strays {
		probs = append(probs, RecordProblem{File: filepath.Join(v.secretsDir(), s), Problem: "unexpected file in the secrets directory"})
	}
	wk, err := k.derive(labelWrap)
	if err != nil {
		return nil, err
	}
	defer clear(wk)
	seen := map[string]string{} // scope key + name → id
	for _, id := range ids {
		path := v.recordPath(id)
		r, err := v.loadRecord(id)
		if errors.Is(err, ErrSecretNotFound) {
			continue
		}
		if err != nil {
			var te *TamperedError
			if errors.As(err, &te) {
				probs = append(probs, RecordProblem{ID: id, File: path, Problem: te.Problem})
				continue
			}
			return nil, err
		}
		for _, n := range append([]string{r.Name}, r.Aliases...) {
			key := scopeKey(r.Scope, r.WorkspaceID, r.GroupID) + "\x00" + n
			if other, dup := seen[key]; dup {
				probs = append(probs, RecordProblem{ID: id, File: path, Problem: fmt.Sprintf("name %q is also used by %s in the same scope", n, other)})
			}
			seen[key] = id
		}
		dek, err := r.unwrapDEK(wk, k.ID())
		if err != nil {
			probs = append(probs, RecordProblem{ID: id, File: path, Problem: problemText(err)})
			continue
		}
		pt, err := r.openValue(dek)
		clear(dek)
		clear(pt)
		if err != nil {
			probs = append(probs, RecordProblem{ID: id, File: path, Problem: problemText(err)})
		}
	}
	sprobs, err := v.verifyStates(k)
	if err != nil {
		return nil, err
	}
	return append(probs, sprobs...), nil
}

func problemText(err error) string {
	var te *TamperedError
	if errors.As(err, &te) {
		return te.Problem
	}
	return err.Error()
}
