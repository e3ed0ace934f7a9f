package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// DefaultQueryLimit is the number of events Query returns when Limit is 0.
const DefaultQueryLimit = 200

// MaxQueryLimit caps QueryOptions.Limit.
const MaxQueryLimit = 10000

// QueryOptions select events for Query. Empty fields do not filter.
type QueryOptions struct {
	// Limit is the maximum number of events returned (default
	// DefaultQueryLimit, at most MaxQueryLimit).
	Limit int
	// BeforeTsMs keeps only events with TsMs < BeforeTsMs (for paging).
	BeforeTsMs int64
	// Capability keeps only events for this capability.
	Capability string
	// User keeps only events of this user name.
	User string
	// Kind keeps only events of this kind.
	Kind string
	// Decision keeps only events with this decision (allow | deny).
	Decision string
}

func (q QueryOptions) match(ev *Event) bool {
	return (q.BeforeTsMs == 0 || ev.TsMs < q.BeforeTsMs) &&
		(q.Capability == "" || ev.Capability == q.Capability) &&
		(q.User == "" || ev.User == q.User) &&
		(q.Kind == "" || ev.Kind == q.Kind) &&
		(q.Decision == "" || ev.Decision == q.Decision)
}

// Query returns the events in dir that match q, newest (last appended)
// first. It needs no key and does not check MACs (use Verify); reading the
// log is an operator privilege the caller enforces. A line that is not a
// canonical record is an error wrapping ErrCorrupt; a torn final line of the
// newest file (an interrupted write) is skipped.
func Query(dir string, q QueryOptions) ([]Event, error) {
	if q.Limit < 0 {
		return nil, fmt.Errorf("audit: negative query limit %d", q.Limit)
	}
	if q.Limit == 0 {
		q.Limit = DefaultQueryLimit
	}
	q.Limit = min(q.Limit, MaxQueryLimit)
	lf, err := openLock(dir, false)
	switch {
	case err == nil:
		defer lf.Close()
		if err := flock(lf, unix.LOCK_SH); err != nil {
			return nil, err
		}
		defer func() { _ = flock(lf, unix.LOCK_UN) }()
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	default:
		return nil, err
	}
	files, err := listDayFiles(dir)
	if err != nil {
		return nil, err
	}
	out := []Event{}
	for i := len(files) - 1; i >= 0 && len(out) < q.Limit; i-- {
		evs, err := readDayFile(dir, files[i], i == len(files)-1)
		if err != nil {
			return nil, err
		}
		for j := len(evs) - 1; j >= 0 && len(out) < q.Limit; j-- {
			if q.match(&evs[j]) {
				out = append(out, evs[j])
			}
		}
	}
	return out, nil
}

// readDayFile parses every record of one day file, in file order.
func readDayFile(dir, name string, newest bool) ([]Event, error) {
	f, err := openDayFileRead(dir, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, name, err)
	}
	defer f.Close()
	lr := newLineReader(f, 0)
	var evs []Event
	for n := 1; ; n++ {
		line, err := lr.next()
		if errors.Is(err, io.EOF) || newest && errors.Is(err, errTorn) {
			return evs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %w", ErrCorrupt, name, n, err)
		}
		ev, err := ParseLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %w", ErrCorrupt, name, n, err)
		}
		evs = append(evs, ev)
	}
}
