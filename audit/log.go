package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// MinKeyLen is the shortest key Open, Verify and Prune accept.
const MinKeyLen = 16

// DefaultRefusalWindow is the Refused aggregation window when
// Options.RefusalWindow is zero.
const DefaultRefusalWindow = 60 * time.Second

// maxRefusalPeers bounds the peers tracked by Refused; beyond it all new
// peers share one overflow window.
const maxRefusalPeers = 1024

const overflowPeer = "\x00overflow"

var (
	// ErrClosed is returned by methods of a closed Log.
	ErrClosed = errors.New("audit: log is closed")
	// ErrKey is returned for a missing or too short key.
	ErrKey = errors.New("audit: key must be at least 16 bytes")
)

// Options configure Open.
type Options struct {
	// Now is the clock (default time.Now). It picks the day file, fills
	// Event.TsMs when zero and drives the Refused windows.
	Now func() time.Time
	// Disabled returns a Log that writes nothing and touches no file
	// (the caller sets it for AIVAULT_DISABLE_DISK_LOGS=1).
	Disabled bool
	// RefusalWindow is the per-peer aggregation window of Refused
	// (default DefaultRefusalWindow).
	RefusalWindow time.Duration
}

// Log appends events to the chain in one directory. Its methods are safe for
// concurrent use, and separate processes appending to the same directory
// serialise on a flock.
type Log struct {
	mu       sync.Mutex
	dir      string
	key      []byte
	mac      hash.Hash
	lock     *os.File
	now      func() time.Time
	window   time.Duration
	disabled bool
	closed   bool
	refusals map[string]*refusal

	// Group commit: concurrent AppendBatch calls queue here; one of them
	// (the leader) writes everything queued under one lock, one write and
	// one set of fsyncs, and hands each caller its own result.
	qmu     sync.Mutex
	queue   []*pendingAppend
	leader  bool
	commits int   // commits written (for tests); guarded by mu
	headErr error // a failed head update after a commit, reported by Close; guarded by mu
}

// sealError is an event that could not be sealed (nothing was written).
type sealError struct{ err error }

func (e *sealError) Error() string { return e.err.Error() }
func (e *sealError) Unwrap() error { return e.err }

// pendingAppend is one AppendBatch call waiting for its group commit.
type pendingAppend struct {
	evs  []Event
	done chan error
}

type refusal struct {
	start      time.Time
	first      Event
	suppressed int
}

func checkKey(key []byte) error {
	if len(key) < MinKeyLen {
		return ErrKey
	}
	return nil
}

// Open opens (creating it 0700 if needed) the log in dir. It copies key
// (wiped on Close), completes an interrupted Prune, and recovers the head:
// records fsynced after the last head update are verified and adopted, a
// torn final line is truncated. It fails with ErrCorrupt when head.json,
// anchor.json or the tail does not check out; it does not verify the whole
// chain (see Verify).
func Open(dir string, key []byte, o Options) (*Log, error) {
	l := &Log{
		dir:      dir,
		now:      o.Now,
		window:   o.RefusalWindow,
		disabled: o.Disabled,
		refusals: make(map[string]*refusal),
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.window <= 0 {
		l.window = DefaultRefusalWindow
	}
	if o.Disabled {
		return l, nil
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	lf, err := openLock(dir, true)
	if err != nil {
		return nil, err
	}
	l.lock = lf
	l.key = bytes.Clone(key)
	l.mac = hmac.New(sha256.New, l.key)
	err = withExclusive(lf, func() error {
		if err := finishPrune(dir, l.mac); err != nil {
			return err
		}
		removeStaleTemps(dir)
		_, err := loadState(dir, l.mac)
		return err
	})
	if err != nil {
		l.wipe()
		lf.Close()
		return nil, err
	}
	return l, nil
}

// removeStaleTemps removes temp files left by an interrupted writeAtomic.
// The caller holds the exclusive lock, so none is in use. Best effort.
func removeStaleTemps(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		for _, pat := range []string{"." + headName + ".*.tmp", "." + anchorName + ".*.tmp"} {
			if ok, _ := filepath.Match(pat, e.Name()); ok && e.Type().IsRegular() {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}

// ensureDir creates dir 0700 (and parents) and refuses a symlink or a
// non-directory; group/other permission bits are removed.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("audit: create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("audit: stat %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("audit: %s is not a directory (symlinks are refused)", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("audit: chmod %s: %w", dir, err)
		}
	}
	return nil
}

// Append seals ev into the chain (filling Seq, Prev, MAC, and TsMs when
// zero) and makes it durable before returning: the day file and head.json
// are fsynced. Kind must be set. Any Refused windows that have closed are
// flushed first.
func (l *Log) Append(ev Event) error {
	return l.AppendBatch([]Event{ev})
}

// AppendBatch is Append for several events under one lock and one fsync of
// the day file and of head.json. The events are written with a single
// write(2), in order.
//
// Calls that arrive while another commit is in progress are committed
// together (group commit) by a background committer: each call's events stay
// contiguous and in order, and every call returns once its own records are
// durable (the day file is fdatasynced). The committer then rewrites
// head.json before it releases the lock, so the next commit, a Close or
// another process never sees the head lag; a crash in between is the case
// loadState already recovers from (MACed records beyond the head are
// adopted). A failure is reported to the calls it concerns: a batch with an
// event that cannot be sealed is retried call by call, so one call's bad
// event does not fail the others.
func (l *Log) AppendBatch(evs []Event) error {
	for i := range evs {
		if evs[i].Kind == "" {
			return fmt.Errorf("audit: event %d has no kind", i)
		}
	}
	p := &pendingAppend{evs: evs, done: make(chan error, 1)}
	l.qmu.Lock()
	l.queue = append(l.queue, p)
	if !l.leader {
		l.leader = true
		go l.commitLoop()
	}
	l.qmu.Unlock()
	return <-p.done
}

// commitLoop commits what is queued until the queue is empty.
func (l *Log) commitLoop() {
	l.qmu.Lock()
	for len(l.queue) > 0 {
		batch := l.queue
		l.queue = nil
		l.qmu.Unlock()
		l.commit(batch)
		l.qmu.Lock()
	}
	l.leader = false
	l.qmu.Unlock()
}

// commit writes the events of batch and answers each call as soon as its
// records are durable, then updates head.json.
func (l *Log) commit(batch []*pendingAppend) {
	l.mu.Lock()
	defer l.mu.Unlock()
	answer := func(ps []*pendingAppend, err error) {
		for _, p := range ps {
			p.done <- err
		}
	}
	if l.closed {
		answer(batch, ErrClosed)
		return
	}
	if l.disabled {
		answer(batch, nil)
		return
	}
	now := l.now()
	l.commits++
	evs := l.expiredLocked(now, false)
	for _, p := range batch {
		evs = append(evs, p.evs...)
	}
	err := withExclusive(l.lock, func() error {
		h, err := appendRecords(l.dir, l.mac, evs, now)
		var se *sealError
		if err != nil && len(batch) > 1 && errors.As(err, &se) {
			// Nothing was written: commit call by call.
			for _, p := range batch {
				p.done <- appendEvents(l.dir, l.mac, p.evs, now)
			}
			return nil
		}
		answer(batch, err)
		if err != nil {
			return nil
		}
		return writeHead(l.dir, l.mac, h)
	})
	// On error the records are durable and their callers answered; the
	// next commit adopts them from the day file (loadState) and writes a
	// new head. Only the head update failed: Close reports it unless a
	// later commit succeeded.
	l.headErr = err
}

// writeLocked appends evs; l.mu is held.
func (l *Log) writeLocked(evs []Event, now time.Time) error {
	if len(evs) == 0 {
		return nil
	}
	return withExclusive(l.lock, func() error {
		return appendEvents(l.dir, l.mac, evs, now)
	})
}

// appendEvents seals and writes evs and updates the head; the caller holds
// the exclusive lock.
func appendEvents(dir string, m hash.Hash, evs []Event, now time.Time) error {
	h, err := appendRecords(dir, m, evs, now)
	if err != nil {
		return err
	}
	return writeHead(dir, m, h)
}

// appendRecords seals evs, writes them to the day file with one write(2) and
// makes them durable; it returns the head to write next. The caller holds the
// exclusive lock.
func appendRecords(dir string, m hash.Hash, evs []Event, now time.Time) (head, error) {
	h, err := loadState(dir, m)
	if err != nil {
		return head{}, err
	}
	target := dayName(now)
	if target < h.LastFile {
		target = h.LastFile // never write behind the newest file
	}
	f, err := os.OpenFile(filepath.Join(dir, target), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return head{}, fmt.Errorf("audit: open %s: %w", target, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return head{}, fmt.Errorf("audit: stat %s: %w", target, err)
	}
	if !fi.Mode().IsRegular() {
		return head{}, fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, target)
	}
	size := fi.Size()
	lines := 0
	if target == h.LastFile {
		if size != h.Size {
			return head{}, fmt.Errorf("%w: %s changed size under the lock", ErrCorrupt, target)
		}
		lines = h.Lines
	} else if size != 0 {
		return head{}, fmt.Errorf("%w: %s has content not in the chain", ErrCorrupt, target)
	}
	var buf bytes.Buffer
	seq, prev := h.Seq, h.LastMAC
	for _, ev := range evs {
		if ev.TsMs == 0 {
			ev.TsMs = now.UnixMilli()
		}
		sealed, line, err := sealEvent(m, ev, seq+1, prev)
		if err != nil {
			return head{}, &sealError{err}
		}
		buf.Write(line)
		buf.WriteByte('\n')
		seq, prev = sealed.Seq, sealed.MAC
		lines++
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		_ = f.Truncate(size) // best effort: do not leave a torn line behind
		return head{}, fmt.Errorf("audit: write %s: %w", target, err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil { // an append: the size is flushed too
		return head{}, fmt.Errorf("audit: fsync %s: %w", target, err)
	}
	if size == 0 {
		if err := syncDir(dir); err != nil {
			return head{}, err
		}
	}
	return head{V: 1, Seq: seq, LastMAC: prev, LastFile: target, Lines: lines, Size: size + int64(buf.Len())}, nil
}

// Refused records a refused connection from peerKey with flood control:
// the first refusal of a peer in a window (Options.RefusalWindow) is
// written at once; later ones in the same window are only counted, and when
// the window has closed (checked on every Refused, Append and
// FlushRefusals call) or on Close one record is written with Count set to the
// number of suppressed refusals and detail aggregated=true, windowStartMs,
// windowEndMs. ev.Kind defaults to "connection.refused".
func (l *Log) Refused(peerKey string, ev Event) error {
	if ev.Kind == "" {
		ev.Kind = KindConnectionRefused
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.disabled {
		return nil
	}
	now := l.now()
	pending := l.expiredLocked(now, false)
	if _, ok := l.refusals[peerKey]; !ok && len(l.refusals) >= maxRefusalPeers {
		peerKey = overflowPeer
	}
	if r, ok := l.refusals[peerKey]; ok {
		r.suppressed++
	} else {
		l.refusals[peerKey] = &refusal{start: now, first: ev}
		pending = append(pending, ev)
	}
	return l.writeLocked(pending, now)
}

// FlushRefusals writes the aggregate records of Refused windows that have
// closed. Callers may run it from a ticker so counts are not held back until
// the next event.
func (l *Log) FlushRefusals() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.disabled {
		return nil
	}
	now := l.now()
	return l.writeLocked(l.expiredLocked(now, false), now)
}

// expiredLocked removes closed windows (all windows with force) and returns
// the aggregate records to write for those that suppressed refusals.
func (l *Log) expiredLocked(now time.Time, force bool) []Event {
	var keys []string
	for k, r := range l.refusals {
		if force || !now.Before(r.start.Add(l.window)) {
			keys = append(keys, k)
		}
	}
	// Deterministic order: by window start, then peer.
	slices.SortFunc(keys, func(a, b string) int {
		if c := l.refusals[a].start.Compare(l.refusals[b].start); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	var out []Event
	for _, k := range keys {
		r := l.refusals[k]
		delete(l.refusals, k)
		if r.suppressed == 0 {
			continue
		}
		end := r.start.Add(l.window)
		ev := r.first
		ev.TsMs = now.UnixMilli()
		ev.Count = r.suppressed
		d := make(map[string]string, len(ev.Detail)+3)
		maps.Copy(d, ev.Detail)
		d["aggregated"] = "true"
		d["windowStartMs"] = strconv.FormatInt(r.start.UnixMilli(), 10)
		if now.Before(end) {
			end = now // closed early by Close
		}
		d["windowEndMs"] = strconv.FormatInt(end.UnixMilli(), 10)
		ev.Detail = d
		out = append(out, ev)
	}
	return out
}

// Close flushes pending Refused counts, wipes the key copy and releases the
// lock file. A Log cannot be used after Close.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.disabled {
		return nil
	}
	now := l.now()
	err := l.writeLocked(l.expiredLocked(now, true), now)
	if err == nil && l.headErr != nil {
		err = fmt.Errorf("audit: the last head update failed (the next writer adopts the records): %w", l.headErr)
	}
	l.wipe()
	if cerr := l.lock.Close(); cerr != nil && err == nil && !errors.Is(cerr, fs.ErrClosed) {
		err = fmt.Errorf("audit: close lock: %w", cerr)
	}
	return err
}

// wipe zeroes the key copy. The HMAC state derived from it (unexported in
// crypto/hmac) is dropped for the garbage collector.
func (l *Log) wipe() {
	clear(l.key)
	l.key = nil
	l.mac = nil
}

// Dir returns the directory passed to Open.
func (l *Log) Dir() string { return l.dir }

// Disabled reports whether the Log writes nothing.
func (l *Log) Disabled() bool { return l.disabled }
