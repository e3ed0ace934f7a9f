// Package crypt is the only code in aivault that touches key material: the
// key providers that produce the vault's key-encryption key (KEK), the
// memguard enclave that holds it, envelope encryption of secret records,
// MACs over state files, and the crash-safe on-disk store.
//
// # Keys
//
// The KEK is 32 bytes from one of three providers (vault.json records which):
//   - file (default): random, stored base64 in Paths.KeyFile (0600, its
//     directory 0700), created race-free on first use;
//   - passphrase: Argon2id(passphrase, salt) with the salt and costs in
//     vault.json (default t=2, 64 MiB);
//   - env: base64 in a named environment variable, read at each unlock and
//     never written anywhere.
//
// vault.json also holds the KEK's public id (kekId) and a check value (an
// HMAC of a label under a KEK-derived key) that detects a wrong key
// (ErrWrongKey); never the KEK. An unlocked KEK is a *Key: a memguard
// Enclave opened only to derive a subkey. CheckMemlock runs before the first
// memguard object is created, so a low RLIMIT_MEMLOCK is reported as
// ErrMemlock instead of a memguard panic.
//
// Subkeys are HKDF-SHA256(KEK, label) with one label per purpose: DEK
// wrapping, state MACs (per state name), the key id, the check value,
// operator proofs (Key.Prove) and callers' own purposes (Key.DeriveKey).
//
// # Records
//
// Each secret is D/secrets/<id>.json, with its own random DEK. The value is
// XChaCha20-Poly1305 under the DEK; the DEK is wrapped with
// XChaCha20-Poly1305 under the KEK's wrapping key. Both carry AAD binding
// them to the format version, secret id, scope, workspace, group and pinned
// provider, so swapping ciphertexts between records or editing those fields
// on disk yields a *TamperedError naming the record. See record.go.
//
// # Writes
//
// Every file is written to a temporary file in the same directory
// (O_EXCL|O_NOFOLLOW, mode set explicitly), fsynced, renamed into place, and
// the directory fsynced, so a kill -9 at any moment leaves each file either
// old or new. Writers serialise with flock on D/.lock (Vault.Lock); the
// mutating methods take it themselves. Options.CrashPoint names each write
// step so tests can simulate a crash there.
//
// # Master-key rotation
//
// Vault.RotateMaster re-wraps every DEK and re-MACs every state file under a
// new key so that an interruption at any point leaves the vault usable with
// the old or the new key; the next Unlock rolls the rotation back or
// finishes it. See rotate.go for the protocol.
//
// # State files
//
// Vault.SaveState/LoadState keep JSON state (broker.json, …) with an
// HMAC-SHA256 under a KEK-derived key, so an edit by a process without the
// key is refused with ErrStateTampered.
package crypt
