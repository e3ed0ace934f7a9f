package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

const (
	headName   = "head.json"
	anchorName = "anchor.json"
	lockName   = ".lock"
	dayLayout  = "2006-01-02"
	daySuffix  = ".jsonl"

	headLabel   = "aivault-audit-head-v1\x00"
	anchorLabel = "aivault-audit-anchor-v1\x00"

	maxDocBytes = 1 << 20
)

// ErrCorrupt is returned (wrapped) when the log's files are not what the
// chain and head.json say they must be: a record, head.json or anchor.json
// was edited, removed or truncated, or a write was interrupted in a way that
// cannot be repaired automatically. Run Verify for the first bad line.
var ErrCorrupt = errors.New("audit: log is corrupt or has been tampered with")

// head is head.json: where the chain ends.
type head struct {
	V        int    `json:"v"`
	Seq      uint64 `json:"seq"`      // seq of the last record; 0 for an empty log
	LastMAC  string `json:"lastMac"`  // MAC of the last record; zeroMAC for an empty log
	LastFile string `json:"lastFile"` // day file holding the last record; "" for an empty log
	Lines    int    `json:"lines"`    // records in LastFile
	Size     int64  `json:"size"`     // bytes of LastFile
	MAC      string `json:"mac"`
}

// anchor is anchor.json: where the chain starts after a Prune.
type anchor struct {
	V         int      `json:"v"`
	FirstFile string   `json:"firstFile"` // oldest day file kept
	FirstSeq  uint64   `json:"firstSeq"`  // seq of its first record
	Prev      string   `json:"prev"`      // that record's Prev
	Pruned    []string `json:"pruned"`    // day files removed by the last Prune
	TsMs      int64    `json:"tsMs"`
	MAC       string   `json:"mac"`
}

func genesisHead() head {
	return head{V: 1, LastMAC: zeroMAC}
}

func docMAC(m hash.Hash, label string, body []byte) string {
	m.Reset()
	m.Write([]byte(label))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func (h head) seal(m hash.Hash) ([]byte, error) {
	h.MAC = ""
	body, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("audit: encode head: %w", err)
	}
	h.MAC = docMAC(m, headLabel, body)
	return json.Marshal(h)
}

func (a anchor) seal(m hash.Hash) ([]byte, error) {
	a.MAC = ""
	body, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("audit: encode anchor: %w", err)
	}
	a.MAC = docMAC(m, anchorLabel, body)
	return json.Marshal(a)
}

func (h head) valid() error {
	switch {
	case h.V != 1:
		return fmt.Errorf("unsupported version %d", h.V)
	case !isMACHex(h.LastMAC):
		return errors.New("lastMac is not 64 lowercase hex digits")
	case h.Seq == 0 && (h.LastFile != "" || h.Lines != 0 || h.Size != 0 || h.LastMAC != zeroMAC):
		return errors.New("empty head with a position")
	case h.Seq != 0 && (!isDayFile(h.LastFile) || h.Lines < 1 || h.Size < 1):
		return errors.New("bad position")
	}
	return nil
}

func (a anchor) valid() error {
	switch {
	case a.V != 1:
		return fmt.Errorf("unsupported version %d", a.V)
	case !isDayFile(a.FirstFile):
		return errors.New("bad firstFile")
	case a.FirstSeq == 0:
		return errors.New("bad firstSeq")
	case !isMACHex(a.Prev):
		return errors.New("prev is not 64 lowercase hex digits")
	}
	for _, p := range a.Pruned {
		if !isDayFile(p) || p >= a.FirstFile {
			return fmt.Errorf("bad pruned file name %q", p)
		}
	}
	return nil
}

// decodeStrict decodes exactly one JSON object with no unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

// readHead returns (nil, nil) when head.json does not exist. Any other
// problem is an error wrapping ErrCorrupt (or an I/O error).
func readHead(dir string, m hash.Hash) (*head, error) {
	b, err := readSmallFile(filepath.Join(dir, headName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var h head
	if err := decodeStrict(b, &h); err != nil {
		return nil, fmt.Errorf("%w: %s: unparsable: %w", ErrCorrupt, headName, err)
	}
	if err := h.valid(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, headName, err)
	}
	want, err := h.seal(m)
	if err != nil {
		return nil, err
	}
	if !macEqual(string(want), string(b)) {
		return nil, fmt.Errorf("%w: %s: bad MAC (edited, or written under another key)", ErrCorrupt, headName)
	}
	return &h, nil
}

// readAnchor returns (nil, nil) when anchor.json does not exist.
func readAnchor(dir string, m hash.Hash) (*anchor, error) {
	b, err := readSmallFile(filepath.Join(dir, anchorName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a anchor
	if err := decodeStrict(b, &a); err != nil {
		return nil, fmt.Errorf("%w: %s: unparsable: %w", ErrCorrupt, anchorName, err)
	}
	if err := a.valid(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, anchorName, err)
	}
	want, err := a.seal(m)
	if err != nil {
		return nil, err
	}
	if !macEqual(string(want), string(b)) {
		return nil, fmt.Errorf("%w: %s: bad MAC (edited, or written under another key)", ErrCorrupt, anchorName)
	}
	return &a, nil
}

func writeHead(dir string, m hash.Hash, h head) error {
	b, err := h.seal(m)
	if err != nil {
		return err
	}
	// No fsync of the directory after the rename: if a crash loses it, the
	// previous head.json is back and the records written after it are
	// adopted by the next loadState (they are MACed and chain from it),
	// exactly as after a crash between the record write and the head
	// update. That saves one of the three fsyncs of every append.
	return writeAtomicOpt(dir, headName, b, false)
}

func writeAnchor(dir string, m hash.Hash, a anchor) error {
	b, err := a.seal(m)
	if err != nil {
		return err
	}
	return writeAtomic(dir, anchorName, b)
}

// readSmallFile reads a regular file without following a symlink.
func readSmallFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: stat %s: %w", filepath.Base(path), err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, filepath.Base(path))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDocBytes+1))
	if err != nil {
		return nil, fmt.Errorf("audit: read %s: %w", filepath.Base(path), err)
	}
	if len(b) > maxDocBytes {
		return nil, fmt.Errorf("%w: %s is too large", ErrCorrupt, filepath.Base(path))
	}
	return b, nil
}

// writeAtomic replaces dir/name with data: temp file in dir, fsync, rename,
// fsync dir. The temp file is created 0600 by os.CreateTemp.
func writeAtomic(dir, name string, data []byte) error {
	return writeAtomicOpt(dir, name, data, true)
}

// writeAtomicOpt is writeAtomic; syncDirAfter false skips the fsync of dir.
func writeAtomicOpt(dir, name string, data []byte, syncDirAfter bool) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return fmt.Errorf("audit: write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("audit: write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("audit: fsync %s: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("audit: close %s: %w", name, err)
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("audit: rename %s: %w", name, err)
	}
	if !syncDirAfter {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit: fsync dir: %w", err)
	}
	return nil
}

// isDayFile reports whether name is a well-formed YYYY-MM-DD.jsonl name.
func isDayFile(name string) bool {
	if len(name) != len(dayLayout)+len(daySuffix) || name[len(dayLayout):] != daySuffix {
		return false
	}
	t, err := time.Parse(dayLayout, name[:len(dayLayout)])
	return err == nil && t.Format(dayLayout) == name[:len(dayLayout)]
}

func dayName(t time.Time) string {
	return t.UTC().Format(dayLayout) + daySuffix
}

// dayEnd is the first instant after the day named by a day file.
func dayEnd(name string) time.Time {
	t, _ := time.Parse(dayLayout, name[:len(dayLayout)])
	return t.AddDate(0, 0, 1)
}

// listDayFiles returns the day file names in dir, oldest first.
func listDayFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: read dir: %w", err)
	}
	var out []string
	for _, e := range ents {
		if isDayFile(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil // os.ReadDir sorts by name, which is chronological
}

func openDayFileRead(dir, name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("not a regular file")
	}
	return f, nil
}

// lineReader yields the lines of a day file.
type lineReader struct {
	r   *bufio.Reader
	off int64 // offset of the next line
}

func newLineReader(r io.Reader, off int64) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, MaxRecordBytes+1), off: off}
}

var (
	errTorn    = errors.New("incomplete final line (interrupted write)")
	errTooLong = fmt.Errorf("line longer than %d bytes", MaxRecordBytes)
)

// next returns the next line without its newline, io.EOF at a clean end,
// errTorn for trailing bytes without a newline, errTooLong, or an I/O error.
// The returned slice is valid until the next call.
func (lr *lineReader) next() ([]byte, error) {
	line, err := lr.r.ReadSlice('\n')
	switch {
	case err == nil:
		lr.off += int64(len(line))
		return line[:len(line)-1], nil
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, errTooLong
	case errors.Is(err, io.EOF):
		if len(line) == 0 {
			return nil, io.EOF
		}
		return nil, errTorn
	default:
		return nil, err
	}
}

// openLock opens dir/.lock; with create it is created 0600 if missing.
func openLock(dir string, create bool) (*os.File, error) {
	flags := os.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if create {
		flags = os.O_RDWR | os.O_CREATE | unix.O_NOFOLLOW | unix.O_CLOEXEC
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open lock: %w", err)
	}
	return f, nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return fmt.Errorf("audit: flock: %w", err)
			}
			return nil
		}
	}
}

// withExclusive runs fn holding the exclusive flock on lf.
func withExclusive(lf *os.File, fn func() error) error {
	if err := flock(lf, unix.LOCK_EX); err != nil {
		return err
	}
	defer func() { _ = flock(lf, unix.LOCK_UN) }()
	return fn()
}

// loadState returns the chain head, adopting records written after the last
// head update (a crash between the record's fsync and the head rename): they
// must chain from the head and carry valid MACs. A torn final line is
// truncated away. On a fresh directory (no head, no day files, no anchor) a
// genesis head is written. The caller holds the exclusive lock.
func loadState(dir string, m hash.Hash) (head, error) {
	hp, err := readHead(dir, m)
	if err != nil {
		return head{}, err
	}
	files, err := listDayFiles(dir)
	if err != nil {
		return head{}, err
	}
	if hp == nil {
		if len(files) > 0 {
			return head{}, fmt.Errorf("%w: %s is missing but day files exist", ErrCorrupt, headName)
		}
		if _, err := os.Lstat(filepath.Join(dir, anchorName)); err == nil {
			return head{}, fmt.Errorf("%w: %s is missing but %s exists", ErrCorrupt, headName, anchorName)
		}
		h := genesisHead()
		if err := writeHead(dir, m, h); err != nil {
			return head{}, err
		}
		return h, nil
	}
	h := *hp
	type seg struct {
		name  string
		off   int64
		lines int
	}
	var segs []seg
	if h.LastFile != "" {
		fi, err := os.Lstat(filepath.Join(dir, h.LastFile))
		if err != nil {
			return head{}, fmt.Errorf("%w: %s named by %s: %w", ErrCorrupt, h.LastFile, headName, err)
		}
		if !fi.Mode().IsRegular() {
			return head{}, fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, h.LastFile)
		}
		if fi.Size() < h.Size {
			return head{}, fmt.Errorf("%w: %s is shorter than %s records (tail truncated)", ErrCorrupt, h.LastFile, headName)
		}
		if fi.Size() > h.Size {
			segs = append(segs, seg{h.LastFile, h.Size, h.Lines})
		}
	}
	for _, f := range files {
		if f > h.LastFile {
			segs = append(segs, seg{f, 0, 0})
		}
	}
	if len(segs) == 0 {
		return h, nil
	}
	adopted := h
	for i, s := range segs {
		last := i == len(segs)-1
		f, err := os.OpenFile(filepath.Join(dir, s.name), os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return head{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, s.name, err)
		}
		nh, err := adoptTail(f, s.name, s.off, s.lines, adopted, m, last)
		f.Close()
		if err != nil {
			return head{}, err
		}
		adopted = nh
	}
	if adopted != h {
		if err := writeHead(dir, m, adopted); err != nil {
			return head{}, err
		}
	}
	return adopted, nil
}

// adoptTail checks the records of f from off on against the chain state h
// and returns the advanced head. canTruncate allows removing a torn final
// line (only in the newest file).
func adoptTail(f *os.File, name string, off int64, lines int, h head, m hash.Hash, canTruncate bool) (head, error) {
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return head{}, fmt.Errorf("audit: seek %s: %w", name, err)
	}
	lr := newLineReader(f, off)
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return h, nil
		}
		if errors.Is(err, errTorn) && canTruncate {
			if err := f.Truncate(lr.off); err != nil {
				return head{}, fmt.Errorf("audit: truncate torn line in %s: %w", name, err)
			}
			if err := f.Sync(); err != nil {
				return head{}, fmt.Errorf("audit: fsync %s: %w", name, err)
			}
			return h, nil
		}
		if err != nil {
			return head{}, fmt.Errorf("%w: %s line %d: %w", ErrCorrupt, name, lines+1, err)
		}
		lines++
		ev, err := ParseLine(line)
		if err != nil {
			return head{}, fmt.Errorf("%w: %s line %d: %w", ErrCorrupt, name, lines, err)
		}
		if why := checkRecord(m, ev, h.LastMAC, h.Seq); why != "" {
			return head{}, fmt.Errorf("%w: %s line %d: %s", ErrCorrupt, name, lines, why)
		}
		if h.LastFile != name {
			h.LastFile = name
		}
		h.Seq, h.LastMAC, h.Lines, h.Size = ev.Seq, ev.MAC, lines, lr.off
	}
}

// checkRecord returns "" when ev has a valid MAC and follows (prev, seq) in
// the chain, otherwise the reason.
func checkRecord(m hash.Hash, ev Event, prev string, seq uint64) string {
	want, err := computeMAC(m, ev)
	if err != nil {
		return "unparsable: " + err.Error()
	}
	if !macEqual(want, ev.MAC) {
		return "bad MAC (record edited, or written under another key)"
	}
	if ev.Prev != prev {
		return "broken chain: prev does not match the previous record's MAC (a record or day file before it was removed, inserted or reordered)"
	}
	if ev.Seq != seq+1 {
		return fmt.Sprintf("broken chain: seq %d, expected %d", ev.Seq, seq+1)
	}
	return ""
}

// finishPrune removes day files that a completed anchor.json lists as pruned
// but that still exist (a Prune interrupted after writing the anchor). The
// caller holds the exclusive lock.
func finishPrune(dir string, m hash.Hash) error {
	a, err := readAnchor(dir, m)
	if err != nil || a == nil {
		return err
	}
	removed := false
	for _, p := range a.Pruned {
		err := os.Remove(filepath.Join(dir, p))
		if err == nil {
			removed = true
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("audit: finish prune: remove %s: %w", p, err)
		}
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}
