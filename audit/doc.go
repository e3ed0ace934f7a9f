// Package audit is aivault's append-only, keyed, hash-chained event log.
//
// # Layout
//
// The caller passes a directory (normally D/audit, mode 0700). In it:
//
//   - YYYY-MM-DD.jsonl — one file per UTC day (mode 0600), one JSON record per
//     line, in append order. A record goes to the file of the day it was
//     appended (never to a file older than the newest one, even if the clock
//     steps back), so the lexical order of the files is the chain order.
//   - head.json — the chain head: sequence number, MAC and position (file, line
//     count, byte size) of the last record, itself MACed. Written atomically
//     (temp file, fsync, rename) after every append; the rename is not
//     fsynced (a crash that loses it is the crash case below).
//   - anchor.json — written by Prune: where the chain starts after old day
//     files were deleted (first file, first sequence number and the prev MAC
//     of the first remaining record), MACed.
//   - .lock — flock(2) target serialising writers across processes.
//
// # Integrity
//
// Every record carries Seq (1, 2, …), Prev (the hex MAC of the record before
// it; 64 zeros for the first record ever) and MAC = HMAC-SHA256(key,
// label ‖ prev ‖ canonical), where canonical is encoding/json's encoding of
// the Event with MAC set to "" (fixed field order, sorted Detail keys). The
// stored line is exactly encoding/json's encoding of the Event with its MAC;
// ParseLine rejects any line that does not re-encode to the same bytes, so a
// change of any byte of a line, whitespace included, is caught either by the
// canonical-form check or by the MAC. The chain (Prev, Seq) links records
// across day files, and head.json anchors the tail, so Verify detects an
// edited, inserted, deleted, reordered or truncated record and a deleted day
// file, and names the first bad line.
//
// Limits: the key is symmetric, so anyone holding it (the daemon) can rewrite
// history; and an attacker who can write the directory can roll the whole
// directory (files and head.json together) back to an older, consistent
// state. Detecting that needs an external anchor (e.g. shipping head MACs
// off the machine), which this package does not provide.
//
// # Durability and concurrency
//
// Each Append (or AppendBatch) takes an in-process mutex and an exclusive
// flock on .lock, reloads head.json (another process may have appended),
// writes the record(s) with a single write(2), fdatasyncs the day file, then
// rewrites head.json atomically: two fsyncs per commit. Calls that arrive
// while a commit is in progress are committed together (group commit), each
// returning once its own records are durable. A crash between the record
// write and the head update (or one that loses the head's rename) leaves at
// most one commit's records beyond the head: they are MACed, so the next
// Open/Append verifies and adopts them, and a torn final line is truncated.
//
// # Secrets
//
// Event has no field for request or response bodies, headers or secret
// values, and the package never adds any. Callers must pass redacted paths
// (query strings stripped or redacted) and must not put secret values into
// Reason or Detail: what the caller passes is written verbatim.
package audit
