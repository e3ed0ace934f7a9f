package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Prune deletes the day files whose whole day lies more than maxAge before
// now, keeping the chain verifiable across the cut:
//
//  1. it refuses (ErrCorrupt) unless the whole log verifies, so pruning cannot
//     launder tampering;
//  2. it appends a "checkpoint" record (detail: action=prune, the removed
//     files, the cutoff, and the anchor's file/seq/prev);
//  3. it writes anchor.json (MACed, atomic): the oldest kept day file, the seq
//     of its first record and that record's Prev, which Verify uses instead of
//     genesis;
//  4. it deletes the files and fsyncs the directory.
//
// If it is interrupted after step 3, Verify reports the leftover files and
// the next Open or Prune deletes them. It serialises with appenders through
// the same flock. It returns the removed file names, oldest first (nil when
// nothing was old enough).
func Prune(dir string, key []byte, maxAge time.Duration, now time.Time) (removed []string, err error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if maxAge < 0 {
		return nil, fmt.Errorf("audit: negative prune age %s", maxAge)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("audit: %s is not a directory", dir)
	}
	lf, err := openLock(dir, true)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	m := hmac.New(sha256.New, key)
	err = withExclusive(lf, func() error {
		var err error
		removed, err = pruneLocked(dir, m, maxAge, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

func pruneLocked(dir string, m hash.Hash, maxAge time.Duration, now time.Time) ([]string, error) {
	if err := finishPrune(dir, m); err != nil {
		return nil, err
	}
	h, err := loadState(dir, m)
	if err != nil {
		return nil, err
	}
	rep, err := verifyLocked(dir, m)
	if err != nil {
		return nil, err
	}
	if !rep.OK {
		return nil, fmt.Errorf("%w: refusing to prune a log that does not verify: %s", ErrCorrupt, rep.FirstBad)
	}
	files := rep.Files
	target := dayName(now)
	if target < h.LastFile {
		target = h.LastFile
	}
	cutoff := now.Add(-maxAge)
	var cut []string
	for _, f := range files {
		if f >= target || dayEnd(f).After(cutoff) {
			break
		}
		cut = append(cut, f)
	}
	if len(cut) == 0 {
		return nil, nil
	}
	kept := files[len(cut):]

	// Where the kept chain starts: the first record after the cut, or the
	// checkpoint itself when no kept file has a record yet.
	firstFile, firstSeq, firstPrev := target, h.Seq+1, h.LastMAC
	if len(kept) > 0 {
		firstFile = kept[0]
	}
	for _, f := range kept {
		ev, ok, err := firstRecord(dir, f)
		if err != nil {
			return nil, err
		}
		if ok {
			firstSeq, firstPrev = ev.Seq, ev.Prev
			break
		}
	}

	cp := Event{
		TsMs: now.UnixMilli(),
		Kind: KindCheckpoint,
		Detail: map[string]string{
			"action":     "prune",
			"removed":    strings.Join(cut, ","),
			"maxAgeSec":  strconv.FormatInt(int64(maxAge/time.Second), 10),
			"cutoffMs":   strconv.FormatInt(cutoff.UnixMilli(), 10),
			"anchorFile": firstFile,
			"anchorSeq":  strconv.FormatUint(firstSeq, 10),
			"anchorPrev": firstPrev,
		},
	}
	if err := appendEvents(dir, m, []Event{cp}, now); err != nil {
		return nil, err
	}
	a := anchor{V: 1, FirstFile: firstFile, FirstSeq: firstSeq, Prev: firstPrev, Pruned: cut, TsMs: now.UnixMilli()}
	if err := writeAnchor(dir, m, a); err != nil {
		return nil, err
	}
	if err := finishPrune(dir, m); err != nil {
		return nil, err
	}
	return cut, nil
}

// firstRecord returns the first record of a day file, if it has one.
func firstRecord(dir, name string) (Event, bool, error) {
	f, err := openDayFileRead(dir, name)
	if err != nil {
		return Event{}, false, fmt.Errorf("%w: %s: %w", ErrCorrupt, name, err)
	}
	defer f.Close()
	line, err := newLineReader(f, 0).next()
	if errors.Is(err, io.EOF) {
		return Event{}, false, nil
	}
	if err != nil {
		return Event{}, false, fmt.Errorf("%w: %s line 1: %w", ErrCorrupt, name, err)
	}
	ev, err := ParseLine(line)
	if err != nil {
		return Event{}, false, fmt.Errorf("%w: %s line 1: %w", ErrCorrupt, name, err)
	}
	return ev, true, nil
}
