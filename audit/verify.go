package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// BadLine names the first place where verification failed. Line is 1-based;
// 0 means the file as a whole (head.json, anchor.json, a stray day file).
type BadLine struct {
	File string
	Line int
	Why  string
}

// String renders "file:line: why".
func (b *BadLine) String() string {
	if b.Line == 0 {
		return b.File + ": " + b.Why
	}
	return fmt.Sprintf("%s:%d: %s", b.File, b.Line, b.Why)
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	// Records is the number of records verified (up to the first bad one).
	Records int
	// Files are the day files found, oldest first.
	Files []string
	// OK is true when the whole log verified.
	OK bool
	// FirstBad names the first problem when OK is false.
	FirstBad *BadLine
	// HeadSeq is the seq recorded in head.json.
	HeadSeq uint64
	// BeyondHead counts valid records after head.json's position (a crash
	// between a record's fsync and the head update; the next Open adopts
	// them).
	BeyondHead int
	// Anchored is true when the chain starts at a prune anchor rather than
	// at genesis; FirstSeq is then the seq of the oldest record kept.
	Anchored bool
	FirstSeq uint64
}

// Verify checks the whole log in dir under key: every line must be a
// canonical record (ParseLine) with a valid MAC, chained by Prev and Seq
// across the day files from genesis (or from the anchor left by Prune), and
// the chain must reach the position recorded in head.json. It names the first
// bad line in the report; the error is only for failures to run at all (bad
// key, unreadable directory). It takes a shared lock, so it sees no
// half-finished append.
func Verify(dir string, key []byte) (*VerifyReport, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	lf, err := openLock(dir, false)
	switch {
	case err == nil:
		defer lf.Close()
		if err := flock(lf, unix.LOCK_SH); err != nil {
			return nil, err
		}
		defer func() { _ = flock(lf, unix.LOCK_UN) }()
	case errors.Is(err, fs.ErrNotExist):
		// Never written by Open: nothing to serialise with.
	default:
		return nil, err
	}
	return verifyLocked(dir, hmac.New(sha256.New, key))
}

func verifyLocked(dir string, m hash.Hash) (*VerifyReport, error) {
	rep := &VerifyReport{}
	bad := func(file string, line int, why string) (*VerifyReport, error) {
		rep.OK = false
		rep.FirstBad = &BadLine{File: file, Line: line, Why: why}
		return rep, nil
	}
	files, err := listDayFiles(dir)
	if err != nil {
		return nil, err
	}
	rep.Files = files

	a, err := readAnchor(dir, m)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return bad(anchorName, 0, err.Error())
		}
		return nil, err
	}
	h, headErr := readHead(dir, m)
	if headErr != nil && !errors.Is(headErr, ErrCorrupt) {
		return nil, headErr
	}
	if h != nil {
		rep.HeadSeq = h.Seq
	}

	prev, seq := zeroMAC, uint64(0)
	if a != nil {
		rep.Anchored = true
		if len(files) > 0 && files[0] < a.FirstFile {
			why := "day file older than the prune anchor: not part of the chain"
			if slices.Contains(a.Pruned, files[0]) {
				why = "day file was pruned but still exists (interrupted prune: open the log or run prune again)"
			}
			return bad(files[0], 0, why)
		}
		if len(files) == 0 || files[0] != a.FirstFile {
			return bad(a.FirstFile, 1, "missing: anchor.json starts the chain in this day file")
		}
		prev, seq = a.Prev, a.FirstSeq-1
	}
	rep.FirstSeq = seq + 1

	lines := make(map[string]int, len(files))
	for _, name := range files {
		f, err := openDayFileRead(dir, name)
		if err != nil {
			return bad(name, 0, "unreadable: "+err.Error())
		}
		lr := newLineReader(f, 0)
		n := 0
		for {
			line, err := lr.next()
			if errors.Is(err, io.EOF) {
				break
			}
			n++
			if err != nil {
				f.Close()
				return bad(name, n, err.Error())
			}
			ev, err := ParseLine(line)
			if err != nil {
				f.Close()
				return bad(name, n, "unparsable: "+err.Error())
			}
			if why := checkRecord(m, ev, prev, seq); why != "" {
				f.Close()
				return bad(name, n, why)
			}
			prev, seq = ev.MAC, ev.Seq
			rep.Records++
			if h != nil {
				switch {
				case ev.Seq == h.Seq:
					if name != h.LastFile || n != h.Lines || !macEqual(ev.MAC, h.LastMAC) {
						f.Close()
						return bad(name, n, "does not match head.json (head.json or the log was altered)")
					}
				case ev.Seq > h.Seq:
					rep.BeyondHead++
				}
			}
		}
		f.Close()
		lines[name] = n
	}

	switch {
	case headErr != nil:
		return bad(headName, 0, headErr.Error())
	case h == nil:
		if len(files) > 0 || a != nil {
			return bad(headName, 0, "missing while the log has day files")
		}
	case seq < h.Seq:
		n, ok := lines[h.LastFile]
		switch {
		case !ok:
			return bad(h.LastFile, 1, fmt.Sprintf("missing after head: head.json ends the chain at seq %d in this day file, which does not exist", h.Seq))
		case n < h.Lines:
			return bad(h.LastFile, n+1, fmt.Sprintf("missing after head: head.json records %d lines, the file has %d (tail truncated)", h.Lines, n))
		default:
			return bad(h.LastFile, 0, fmt.Sprintf("missing after head: the chain ends at seq %d, head.json says %d", seq, h.Seq))
		}
	}
	rep.OK = true
	return rep, nil
}
