package load

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config is one load run against a daemon.
type Config struct {
	Socket      string
	N           int // invocations
	Concurrency int
	// Request returns the i-th request (0 ≤ i < N).
	Request func(i int) Request
	// Validate checks a relayed answer (Class == ""); nil accepts status 200.
	Validate func(i int, o Outcome) error
	// DaemonPID, when set, is sampled (descriptors, RSS, workers) while the
	// run goes, and its workers are the ones Kills picks from.
	DaemonPID int
	// PoolSize is the daemon's --pool: after the run exactly this many idle
	// workers must remain.
	PoolSize int
	// Kills is how many busy workers (ones holding an upstream socket) are
	// SIGKILLed during the run, at evenly spaced points.
	Kills int
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Sample is one reading of the daemon during a run.
type Sample struct {
	Done    int // invocations finished when it was taken
	FDs     int
	RSSKB   int64
	Workers int
}

// Report is what a run measured.
type Report struct {
	N, Concurrency int
	OK             int
	// WorkerFailed counts invocations that ended with class WorkerFailed
	// (expected only for the workers killed on purpose).
	WorkerFailed int
	// Errors counts every other failure: transport errors, other classes,
	// answers that failed Validate.
	Errors       int
	ErrorSamples []string
	Kills        int
	Elapsed      time.Duration
	Latencies    []time.Duration // of the OK invocations, in completion order
	Samples      []Sample
	FDBefore     int
	FDAfter      int
	// WorkersAfter are the daemon's children once the run settled.
	WorkersAfter []int
	SettleErr    string
	RSSPeakKB    int64
}

// Run performs cfg.N invocations with cfg.Concurrency in flight.
func Run(ctx context.Context, cfg Config) *Report {
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	r := &Report{N: cfg.N, Concurrency: cfg.Concurrency}
	if cfg.DaemonPID > 0 {
		r.settle(cfg, 15*time.Second)
		r.FDBefore, _ = FDCount(cfg.DaemonPID)
		r.SettleErr = ""
	}
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		wg         sync.WaitGroup
	)
	tenth := make(chan struct{}, 16)
	killAt := make(chan struct{}, cfg.Kills+1)
	fail := func(msg string) {
		mu.Lock()
		r.Errors++
		if len(r.ErrorSamples) < 8 {
			r.ErrorSamples = append(r.ErrorSamples, msg)
		}
		mu.Unlock()
	}
	start := time.Now()
	stopAux := make(chan struct{})
	var aux sync.WaitGroup
	if cfg.DaemonPID > 0 {
		aux.Add(1)
		go func() {
			defer aux.Done()
			t := time.NewTicker(25 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopAux:
					return
				case <-t.C:
				case <-tenth:
				}
				s := Sample{Done: int(done.Load())}
				var err error
				if s.FDs, err = FDCount(cfg.DaemonPID); err != nil {
					continue
				}
				s.RSSKB, _ = StatusKB(cfg.DaemonPID, "VmRSS")
				s.Workers = len(Children(cfg.DaemonPID))
				mu.Lock()
				r.Samples = append(r.Samples, s)
				mu.Unlock()
			}
		}()
		if cfg.Kills > 0 {
			aux.Add(1)
			go func() {
				defer aux.Done()
				for {
					select {
					case <-stopAux:
						return
					case <-killAt:
					}
					if killBusyWorker(cfg.DaemonPID, stopAux) {
						mu.Lock()
						r.Kills++
						mu.Unlock()
					}
				}
			}()
		}
	}
	for w := 0; w < max(cfg.Concurrency, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.N || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				o, err := Invoke(rctx, cfg.Socket, cfg.Request(i))
				cancel()
				lat := time.Since(t0)
				switch {
				case err != nil:
					fail(fmt.Sprintf("#%d: %v", i, err))
				case o.Class == "WorkerFailed":
					mu.Lock()
					r.WorkerFailed++
					mu.Unlock()
				case o.Class != "":
					fail(fmt.Sprintf("#%d: %s: %s", i, o.Class, o.Error))
				default:
					var verr error
					if cfg.Validate != nil {
						verr = cfg.Validate(i, o)
					} else if o.Status != 200 {
						verr = fmt.Errorf("status %d", o.Status)
					}
					if verr != nil {
						fail(fmt.Sprintf("#%d: %v", i, verr))
						break
					}
					mu.Lock()
					r.OK++
					r.Latencies = append(r.Latencies, lat)
					mu.Unlock()
				}
				d := int(done.Add(1))
				if cfg.N >= 10 && d%(cfg.N/10) == 0 {
					select {
					case tenth <- struct{}{}:
					default:
					}
					fmt.Fprintf(logw, "load: %d/%d done (%.1fs)\n", d, cfg.N, time.Since(start).Seconds())
				}
				if cfg.Kills > 0 && d%(cfg.N/(cfg.Kills+1)+1) == 0 {
					select {
					case killAt <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	close(stopAux)
	aux.Wait()
	if cfg.DaemonPID > 0 {
		r.settle(cfg, 15*time.Second)
		r.FDAfter, _ = FDCount(cfg.DaemonPID)
		r.RSSPeakKB, _ = StatusKB(cfg.DaemonPID, "VmHWM")
	}
	return r
}

// killBusyWorker SIGKILLs one randomly chosen worker that holds an upstream
// socket (so it has a job); it looks for up to a second.
func killBusyWorker(daemonPID int, stop <-chan struct{}) bool {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		kids := Children(daemonPID)
		rand.Shuffle(len(kids), func(i, j int) { kids[i], kids[j] = kids[j], kids[i] })
		for _, k := range kids {
			if SocketCount(k) >= 2 && syscall.Kill(k, syscall.SIGKILL) == nil {
				return true
			}
		}
		select {
		case <-stop:
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return false
}

// settle waits until the daemon has exactly cfg.PoolSize children, all
// idle, and records them.
func (r *Report) settle(cfg Config, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		kids := Children(cfg.DaemonPID)
		busy := 0
		for _, k := range kids {
			if SocketCount(k) != 1 {
				busy++
			}
		}
		r.WorkersAfter = kids
		if len(kids) == cfg.PoolSize && busy == 0 {
			r.SettleErr = ""
			return
		}
		if time.Now().After(deadline) {
			r.SettleErr = fmt.Sprintf("after %v the daemon has %d children (%d not idle), want %d idle workers", timeout, len(kids), busy, cfg.PoolSize)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Tenths returns the peak descriptor count and RSS seen in the first and in
// the last tenth of the run (by invocations finished).
func (r *Report) Tenths() (firstFD, lastFD int, firstRSS, lastRSS int64) {
	for _, s := range r.Samples {
		switch t := s.Done * 10 / max(r.N, 1); {
		case t == 0:
			firstFD, firstRSS = max(firstFD, s.FDs), max(firstRSS, s.RSSKB)
		case t >= 9:
			lastFD, lastRSS = max(lastFD, s.FDs), max(lastRSS, s.RSSKB)
		}
	}
	return
}

// Problems lists what makes the run a failure: any error other than the
// killed workers' own requests, more WorkerFailed answers than kills,
// descriptors or memory growing from the first to the last tenth beyond a
// generous tolerance (a leak check, not a timing threshold), descriptors
// not back to where they were once idle, and workers left behind.
func (r *Report) Problems() []string {
	var p []string
	if r.Errors > 0 {
		p = append(p, fmt.Sprintf("%d invocations failed: %s", r.Errors, strings.Join(r.ErrorSamples, "; ")))
	}
	if r.WorkerFailed > r.Kills {
		p = append(p, fmt.Sprintf("%d invocations ended WorkerFailed but only %d workers were killed", r.WorkerFailed, r.Kills))
	}
	if r.OK+r.WorkerFailed+r.Errors != r.N {
		p = append(p, fmt.Sprintf("%d ok + %d worker-failed + %d errors != %d invocations", r.OK, r.WorkerFailed, r.Errors, r.N))
	}
	if len(r.Samples) > 0 {
		f0, f1, m0, m1 := r.Tenths()
		if f0 == 0 || f1 == 0 {
			p = append(p, "no daemon samples in the first or last tenth")
		} else {
			if f1 > f0+max(32, f0/2) {
				p = append(p, fmt.Sprintf("daemon descriptors grew from %d (first tenth) to %d (last tenth)", f0, f1))
			}
			if m1 > m0+max(16<<10, m0/3) {
				p = append(p, fmt.Sprintf("daemon RSS grew from %d kB (first tenth) to %d kB (last tenth)", m0, m1))
			}
		}
	}
	if r.FDBefore > 0 && r.FDAfter > r.FDBefore+4 {
		p = append(p, fmt.Sprintf("daemon descriptors when idle: %d before the run, %d after", r.FDBefore, r.FDAfter))
	}
	if r.SettleErr != "" {
		p = append(p, "workers left behind: "+r.SettleErr)
	}
	return p
}

// Summary is a short human-readable account of the run.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d invocations at concurrency %d in %.1fs (%.0f/s): %d ok, %d WorkerFailed (%d workers killed), %d errors\n",
		r.N, r.Concurrency, r.Elapsed.Seconds(), float64(r.N)/r.Elapsed.Seconds(), r.OK, r.WorkerFailed, r.Kills, r.Errors)
	if len(r.Latencies) > 0 {
		l := append([]time.Duration(nil), r.Latencies...)
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		fmt.Fprintf(&b, "latency p50 %.1fms p99 %.1fms max %.1fms\n", ms(Percentile(l, 50)), ms(Percentile(l, 99)), ms(l[len(l)-1]))
	}
	if len(r.Samples) > 0 {
		f0, f1, m0, m1 := r.Tenths()
		fmt.Fprintf(&b, "daemon peak fds first/last tenth %d/%d, peak RSS first/last tenth %.1f/%.1f MB, VmHWM %.1f MB; idle fds before/after %d/%d; %d workers after\n",
			f0, f1, float64(m0)/1024, float64(m1)/1024, float64(r.RSSPeakKB)/1024, r.FDBefore, r.FDAfter, len(r.WorkersAfter))
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Percentile returns the p-th percentile (nearest rank) of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(float64(len(sorted))*p/100+0.999999) - 1
	k = min(max(k, 0), len(sorted)-1)
	return sorted[k]
}
