package crypt

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Master-key rotation (RotateMaster) and its crash recovery.
//
// Records carry a list of DEK wraps keyed by kekId and state files a list of
// MACs keyed by kekId, so a file can be valid under two keys at once. The
// rotation, all under the vault lock:
//
//  1. vault.json gets a "pending" block naming the new key (kekId, check
//     value, KDF salt/params or env variable) ("rotate-master:after-pending");
//  2. file provider: the new key is written to <KeyFile>.next
//     ("rotate-master:after-next-key");
//  3. every record gets a second wrap under the new key
//     ("rotate-master:after-rewrap:N", N = index in id order) and every state
//     file a second MAC ("rotate-master:after-remac:NAME");
//  4. vault.json switches atomically: the new key becomes current and the
//     old one "previous" ("rotate-master:after-key-switch");
//  5. file provider: <KeyFile>.next is renamed over <KeyFile>
//     ("rotate-master:after-key-file");
//  6. the old wraps and MACs are dropped ("rotate-master:after-prune:N",
//     "rotate-master:after-prune-state:NAME");
//  7. "previous" is removed from vault.json ("rotate-master:after-finish").
//
// Every file is replaced atomically, so at any instant each record opens
// with the old key (before step 4) and with the new key (from step 4 on,
// since step 3 completed). Recovery runs the next time a process holds the
// key and the lock (Unlock, or any keyed mutating method):
//   - pending set, unlocked with the old key: roll back (drop new wraps and
//     MACs, remove <KeyFile>.next, clear pending);
//   - pending set, unlocked with the new key: if step 3 had completed,
//     roll forward (steps 4–7), otherwise refuse and ask for the old key;
//   - previous set, unlocked with the new key: finish (steps 5–7);
//   - previous set, unlocked with the old key: refused (use the new key).
// Recovery steps are idempotent, so a crash during recovery is recovered
// the same way.

// RotateMaster moves the vault to a new master key and returns it (the caller
// keeps old and should destroy it). The provider stays the same (to.Provider
// must be "" or the current provider):
//   - file: the new key is newRaw (32 bytes) or, if newRaw is nil, random;
//   - passphrase: to.Passphrase, with a fresh salt and to.Argon (nil keeps
//     the current costs); newRaw must be nil;
//   - env: newRaw, or if nil the key read from to.EnvVar (default: the
//     current variable) via to.Lookup; the variable name may change.
//
// Every DEK is re-wrapped and every state file re-MACed crash-safely (see
// the package comment above). newRaw is wiped. Takes the vault lock. Note
// that keys derived with Key.DeriveKey change with the master key.
func (v *Vault) RotateMaster(old *Key, to InitOptions, newRaw []byte) (*Key, error) {
	defer clear(newRaw)
	var nk *Key
	err := v.mutate(func() error {
		if err := v.requireCurrent(old); err != nil {
			return err
		}
		m, err := v.readMeta()
		if err != nil {
			return err
		}
		if to.Provider != "" && to.Provider != m.Provider {
			return fmt.Errorf("%w: rotate-master keeps the key provider (%s); changing it to %s is not supported", ErrInvalid, m.Provider, to.Provider)
		}
		if newRaw != nil && len(newRaw) != KeySize {
			return fmt.Errorf("%w: a vault key is %d bytes, got %d", ErrInvalid, KeySize, len(newRaw))
		}
		pend := &pendingKey{StartedAt: v.now()}
		switch m.Provider {
		case ProviderFile:
			raw := make([]byte, KeySize)
			if newRaw != nil {
				copy(raw, newRaw)
			} else if _, err := rand.Read(raw); err != nil {
				return fmt.Errorf("generating vault key: %w", err)
			}
			if nk, err = keyFromRaw(raw); err != nil {
				return err
			}
		case ProviderPassphrase:
			if newRaw != nil {
				return fmt.Errorf("%w: a passphrase vault takes a new passphrase, not a raw key", ErrInvalid)
			}
			if len(to.Passphrase) == 0 {
				return fmt.Errorf("%w: a new passphrase is required", ErrInvalid)
			}
			a := m.KDF.argon()
			if to.Argon != nil {
				a = *to.Argon
			}
			if pend.KDF, err = newKDF(&a); err != nil {
				return err
			}
			if nk, err = passphraseKey(to.Passphrase, pend.KDF); err != nil {
				return err
			}
		case ProviderEnv:
			pend.EnvVar = m.EnvVar
			if to.EnvVar != "" {
				if !envVarRe().MatchString(to.EnvVar) {
					return fmt.Errorf("%w: bad environment variable name %q", ErrInvalid, to.EnvVar)
				}
				pend.EnvVar = to.EnvVar
			}
			if newRaw != nil {
				raw := slices.Clone(newRaw)
				nk, err = keyFromRaw(raw)
			} else {
				nk, err = envKey(pend.EnvVar, to.Lookup)
			}
			if err != nil {
				return err
			}
		}
		if nk.ID() == old.ID() {
			nk.Destroy()
			nk = nil
			return fmt.Errorf("%w: the new key is the same as the current key", ErrInvalid)
		}
		pend.KEKID, pend.Check = nk.ID(), nk.checkB64()
		m.Pending = pend
		if err := v.writeMeta(m, "rotate-master:pending"); err != nil {
			return v.abortRotation(old, err)
		}
		v.crash("rotate-master:after-pending")
		if m.Provider == ProviderFile {
			// The new key goes to <KeyFile>.next only once vault.json
			// names it as pending, so no stray key file can outlive a
			// crash: recovery either installs it or removes it.
			if err := v.writeNewKeyFile(nk); err != nil {
				return v.abortRotation(old, err)
			}
			v.crash("rotate-master:after-next-key")
		}
		if err := v.rewrapAll(old, nk); err != nil {
			return v.abortRotation(old, err)
		}
		return v.rollForward(nk)
	})
	if err != nil {
		if nk != nil {
			nk.Destroy()
		}
		return nil, err
	}
	return nk, nil
}

// abortRotation rolls back after an ordinary error and returns err.
func (v *Vault) abortRotation(old *Key, err error) error {
	if rerr := v.rollback(old); rerr != nil {
		return fmt.Errorf("%w (and rolling back failed: %v; unlock with the current key to retry the roll-back)", err, rerr)
	}
	return err
}

// rewrapAll adds a wrap under nk to every record and a MAC under nk to every
// state file (step 3), checking each under old first.
func (v *Vault) rewrapAll(old, nk *Key) error {
	recs, err := v.loadAll()
	if err != nil {
		return err
	}
	owk, err := old.derive(labelWrap)
	if err != nil {
		return err
	}
	defer clear(owk)
	nwk, err := nk.derive(labelWrap)
	if err != nil {
		return err
	}
	defer clear(nwk)
	for i, r := range recs {
		if r.wrapFor(nk.ID()) == nil {
			if len(r.Wraps) >= maxWraps {
				return &TamperedError{ID: r.ID, File: v.recordPath(r.ID), Problem: "too many key wraps"}
			}
			dek, err := r.unwrapDEK(owk, old.ID())
			if err != nil {
				return v.withFile(err, r.ID)
			}
			w, err := r.wrapDEK(nwk, nk.ID(), dek)
			clear(dek)
			if err != nil {
				return err
			}
			r.Wraps = append(r.Wraps, w)
			if err := v.writeRecord(r, "rotate-master:rewrap"); err != nil {
				return err
			}
		}
		v.crash(fmt.Sprintf("rotate-master:after-rewrap:%d", i))
	}
	names, err := v.stateNames()
	if err != nil {
		return err
	}
	for _, base := range names {
		sf, err := v.readState(base)
		if err != nil {
			return err
		}
		if err := verifyStateMAC(old, base, sf); err != nil {
			return err
		}
		if !slices.ContainsFunc(sf.MACs, func(m stateMAC) bool { return m.KEKID == nk.ID() }) {
			if len(sf.MACs) >= maxStateMACs {
				return stateTampered(base, "too many MACs")
			}
			mac, err := stateMACFor(nk, base, sf.Body)
			if err != nil {
				return err
			}
			sf.MACs = append(sf.MACs, stateMAC{KEKID: nk.ID(), MAC: mac})
			if err := v.writeState(sf, "rotate-master:remac"); err != nil {
				return err
			}
		}
		v.crash("rotate-master:after-remac:" + base)
	}
	return nil
}

// writeNewKeyFile writes nk's raw key to <KeyFile>.next (0600).
func (v *Vault) writeNewKeyFile(nk *Key) error {
	e := nk.enc.Load()
	if e == nil {
		return ErrKeyDestroyed
	}
	buf, err := e.Open()
	if err != nil {
		return fmt.Errorf("opening key enclave: %w", err)
	}
	defer buf.Destroy()
	return writeKeyFile(v.nextKeyPath(), buf.Bytes(), true)
}

func (v *Vault) writeState(sf *stateFile, step string) error {
	data, err := encodeState(sf)
	if err != nil {
		return fmt.Errorf("encoding state %s: %w", sf.Name, err)
	}
	return writeAtomic(v.statePath(sf.Name), data, 0o600, v.opts.CrashPoint, step)
}

// complete reports whether every record and state file carries a wrap/MAC
// under kekID (step 3 finished).
func (v *Vault) complete(kekID string) (bool, error) {
	recs, err := v.loadAll()
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if r.wrapFor(kekID) == nil {
			return false, nil
		}
	}
	names, err := v.stateNames()
	if err != nil {
		return false, err
	}
	for _, base := range names {
		sf, err := v.readState(base)
		if err != nil {
			return false, err
		}
		if !slices.ContainsFunc(sf.MACs, func(m stateMAC) bool { return m.KEKID == kekID }) {
			return false, nil
		}
	}
	return true, nil
}

// rollForward performs steps 4–7 with the new key nk (lock held, vault.json
// pending = nk).
func (v *Vault) rollForward(nk *Key) error {
	m, err := v.readMeta()
	if err != nil {
		return err
	}
	p := m.Pending
	if p == nil || p.KEKID != nk.ID() {
		return fmt.Errorf("%w: no rotation to this key is pending", ErrWrongKey)
	}
	prev := m.KEKID
	m.KEKID, m.Check = p.KEKID, p.Check
	if p.KDF != nil {
		m.KDF = p.KDF
	}
	if p.EnvVar != "" {
		m.EnvVar = p.EnvVar
	}
	m.Pending = nil
	m.Previous = &previousKey{KEKID: prev}
	if err := v.writeMeta(m, "rotate-master:switch"); err != nil {
		return err
	}
	v.crash("rotate-master:after-key-switch")
	return v.finish(nk)
}

// finish performs steps 5–7 (lock held, vault.json current = nk, previous
// set).
func (v *Vault) finish(nk *Key) error {
	m, err := v.readMeta()
	if err != nil {
		return err
	}
	if m.Provider == ProviderFile {
		next, err := readKeyFile(v.nextKeyPath())
		switch {
		case err == nil:
			same := next.ID() == nk.ID()
			next.Destroy()
			if same {
				if err := os.Rename(v.nextKeyPath(), v.paths.KeyFile); err != nil {
					return fmt.Errorf("installing the new key file: %w", err)
				}
				if err := syncDir(filepath.Dir(v.paths.KeyFile)); err != nil {
					return err
				}
			}
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		v.crash("rotate-master:after-key-file")
	}
	if err := v.prune(nk.ID(), "rotate-master"); err != nil {
		return err
	}
	m.Previous = nil
	if err := v.writeMeta(m, "rotate-master:finish"); err != nil {
		return err
	}
	v.crash("rotate-master:after-finish")
	return nil
}

// rollback undoes an unfinished rotation (lock held, vault.json current =
// old, pending set).
func (v *Vault) rollback(old *Key) error {
	if err := v.prune(old.ID(), "rotate-master-rollback"); err != nil {
		return err
	}
	m, err := v.readMeta()
	if err != nil {
		return err
	}
	if m.Provider == ProviderFile {
		if err := os.Remove(v.nextKeyPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the abandoned new key file: %w", err)
		}
		if err := syncDir(filepath.Dir(v.paths.KeyFile)); err != nil {
			return err
		}
	}
	m.Pending = nil
	if err := v.writeMeta(m, "rotate-master-rollback:meta"); err != nil {
		return err
	}
	v.crash("rotate-master-rollback:after-meta")
	return nil
}

// prune drops every wrap and MAC not under keep from records and state
// files that have one under keep. Crash points: step+":after-prune:N" and
// step+":after-prune-state:NAME".
func (v *Vault) prune(keep, step string) error {
	recs, err := v.loadAll()
	if err != nil {
		return err
	}
	for i, r := range recs {
		if w := r.wrapFor(keep); w != nil && len(r.Wraps) > 1 {
			r.Wraps = []wrap{*w}
			if err := v.writeRecord(r, step+":prune"); err != nil {
				return err
			}
		}
		v.crash(fmt.Sprintf("%s:after-prune:%d", step, i))
	}
	names, err := v.stateNames()
	if err != nil {
		return err
	}
	for _, base := range names {
		sf, err := v.readState(base)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(sf.MACs, func(m stateMAC) bool { return m.KEKID == keep })
		if i >= 0 && len(sf.MACs) > 1 {
			sf.MACs = []stateMAC{sf.MACs[i]}
			if err := v.writeState(sf, step+":prune-state"); err != nil {
				return err
			}
		}
		v.crash(step + ":after-prune-state:" + base)
	}
	return nil
}

// recoverLocked finishes or rolls back an interrupted rotation using k (lock
// held). It is a no-op when no rotation is in progress and k is current.
func (v *Vault) recoverLocked(k *Key) error {
	m, err := v.readMeta()
	if err != nil {
		return err
	}
	switch {
	case m.Pending != nil && k.ID() == m.KEKID:
		if err := v.rollback(k); err != nil {
			return fmt.Errorf("rolling back an interrupted master-key rotation: %w", err)
		}
		v.setRecovery("an interrupted master-key rotation was rolled back; the vault still uses the previous key")
	case m.Pending != nil && k.ID() == m.Pending.KEKID:
		ok, err := v.complete(k.ID())
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: a master-key rotation to this key was interrupted before every secret was re-wrapped; unlock with the previous key to roll it back, then rotate again", ErrWrongKey)
		}
		if err := v.rollForward(k); err != nil {
			return fmt.Errorf("finishing an interrupted master-key rotation: %w", err)
		}
		v.setRecovery("an interrupted master-key rotation was completed; the vault now uses the new key")
	case m.Previous != nil && k.ID() == m.KEKID:
		if err := v.finish(k); err != nil {
			return fmt.Errorf("finishing an interrupted master-key rotation: %w", err)
		}
		v.setRecovery("an interrupted master-key rotation was completed; the vault now uses the new key")
	case m.Pending == nil && m.Previous == nil && k.ID() == m.KEKID:
	case m.Previous != nil && k.ID() == m.Previous.KEKID:
		return fmt.Errorf("%w: this is the key the vault had before its master key was rotated; use the new key", ErrWrongKey)
	default:
		return fmt.Errorf("%w: the key is not the vault's current key (was the master key rotated? unlock again)", ErrWrongKey)
	}
	return nil
}

// setRecovery records what the last recovery did (for LastRecovery).
func (v *Vault) setRecovery(note string) {
	v.metaMu.Lock()
	defer v.metaMu.Unlock()
	v.recovery = note
}

// LastRecovery describes the interrupted master-key rotation this Vault
// value last rolled back or completed, or "" if none. The CLI prints it
// after Unlock.
func (v *Vault) LastRecovery() string {
	v.metaMu.Lock()
	defer v.metaMu.Unlock()
	return v.recovery
}
