package crypt

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package that belongs to one
// of these classes wraps the sentinel, so callers test with errors.Is.
// No error message ever contains key material or a secret value.
var (
	// ErrNoVault: the vault directory has no vault.json (not initialised).
	ErrNoVault = errors.New("no vault here")
	// ErrVaultExists: Init was asked to create a vault that already exists.
	ErrVaultExists = errors.New("a vault already exists here")
	// ErrVaultLocked: the key cannot be obtained from what the caller has
	// (no passphrase, env variable unset, key file missing).
	ErrVaultLocked = errors.New("vault is locked")
	// ErrWrongKey: a key was obtained but it is not this vault's key.
	ErrWrongKey = errors.New("wrong vault key")
	// ErrTampered: a secret record failed authentication or is malformed.
	// The concrete error is a *TamperedError naming the record.
	ErrTampered = errors.New("record failed authentication")
	// ErrStateTampered: a state file's MAC is missing or wrong.
	ErrStateTampered = errors.New("state file failed authentication")
	// ErrSecretNotFound: no secret matches the id or name.
	ErrSecretNotFound = errors.New("secret not found")
	// ErrNameTaken: the name or alias is already used in that scope.
	ErrNameTaken = errors.New("name already taken")
	// ErrAmbiguous: more than one secret matches the name.
	ErrAmbiguous = errors.New("name is ambiguous")
	// ErrMemlock: RLIMIT_MEMLOCK is too low to keep keys in locked memory.
	ErrMemlock = errors.New("locked-memory limit too low")
	// ErrKeyDestroyed: the Key was destroyed with Key.Destroy.
	ErrKeyDestroyed = errors.New("key was destroyed")
	// ErrInvalid: an argument (name, scope, size, option) is not acceptable.
	ErrInvalid = errors.New("invalid argument")
)

// TamperedError reports a secret record that failed authentication or could
// not be parsed. It matches ErrTampered with errors.Is.
type TamperedError struct {
	ID      string // record id (from the file name when the record is unreadable)
	File    string // path of the record file
	Problem string // what failed; never contains secret material
}

// Error implements error.
func (e *TamperedError) Error() string {
	return fmt.Sprintf("secret %s (%s): %s: it was modified without the vault key or is corrupt; restore it from a backup or delete it", e.ID, e.File, e.Problem)
}

// Is reports whether target is ErrTampered.
func (e *TamperedError) Is(target error) bool { return target == ErrTampered }
