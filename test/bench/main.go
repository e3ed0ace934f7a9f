// Command bench measures what aivault's isolation costs, side by side with
// the physical limit and with what a user would otherwise run, in one run on
// this machine (`make bench`; `make soak` runs its -soak mode). See
// docs/benchmarks/README.md for the method.
//
// Every path sends the same request to the same local Go TLS upstream, which
// disables keep-alives, so every request pays for a fresh TCP connection and
// a full TLS handshake:
//
//	direct  a Go HTTPS client calling the upstream itself (the limit)
//	invoke  through the daemon's socket, as `aivault invoke` sends it, without
//	        starting a process (warm worker pool)
//	cli     the `aivault invoke` command end to end
//	nginx   an nginx reverse proxy on loopback injecting the same header
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aivault/aivault/test/bench/load"
)

const (
	capability  = "openai/chat-completions"
	requestPath = "/v1/chat/completions"
	requestBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"ping"}]}`
	// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
	clockTicks = 100
)

type options struct {
	bin      string
	out      string
	n1       int
	nCLI     int
	dur      time.Duration
	conc     int
	pool     int
	soak     int
	soakConc int
	kills    int
	only     string
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-serve-upstream" {
		if err := serveUpstream(os.Args[2], os.Getenv("BENCH_UPSTREAM_AUTH")); err != nil {
			fmt.Fprintln(os.Stderr, "upstream:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.bin, "bin", "bin/aivault-dev", "the devhooks build of aivault to measure")
	flag.StringVar(&o.out, "out", "docs/benchmarks", "where to write results.md and latency.png (empty: nowhere)")
	flag.IntVar(&o.n1, "n1", 500, "requests per path at concurrency 1 (direct, invoke, nginx)")
	flag.IntVar(&o.nCLI, "ncli", 300, "requests at concurrency 1 for the cli path")
	flag.DurationVar(&o.dur, "dur", 8*time.Second, "duration of each concurrency run")
	flag.IntVar(&o.conc, "c", 32, "concurrency of the throughput runs")
	flag.IntVar(&o.pool, "pool", 2, "the daemon's --pool")
	flag.IntVar(&o.soak, "soak", 0, "soak mode: this many invocations through the daemon, with leak checks, instead of the benchmark")
	flag.IntVar(&o.soakConc, "soak-c", 64, "soak mode: concurrency")
	flag.IntVar(&o.kills, "kills", 20, "soak mode: busy workers killed during the run")
	flag.StringVar(&o.only, "paths", "", "measure only these paths (comma-separated; for profiling)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if o.soak > 0 {
		err = soak(ctx, o)
	} else {
		err = bench(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// pathDef is one way of getting the request to the upstream.
type pathDef struct {
	name string
	do   func(ctx context.Context) error
	// proxy lists the processes doing the proxying (daemon or nginx); with
	// reaped set, their reaped children (the daemon's workers) count too.
	proxy  func() []int
	reaped bool
	skip   string
}

// pathResult is what was measured for one path.
type pathResult struct {
	name      string
	skip      string
	c1        []time.Duration // sorted
	c1Errors  int
	c32N      int
	c32Errors int
	c32Time   time.Duration
	cpu       cpuUse // over the c32 run
	errSample string
}

func (r *pathResult) p(q float64) float64 { return msf(load.Percentile(r.c1, q)) }
func (r *pathResult) rps() float64 {
	if r.c32Time <= 0 {
		return 0
	}
	return float64(r.c32N) / r.c32Time.Seconds()
}
func (r *pathResult) errors() int { return r.c1Errors + r.c32Errors }

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func bench(ctx context.Context, o options) error {
	start := time.Now()
	m := describeMachine()
	fmt.Printf("machine: %s\n", m.oneLine())
	if m.load1 > 0.5 {
		fmt.Printf("note: load average %.2f at start: the machine is not quiet; numbers will be noisy\n", m.load1)
	}
	e := &benchEnv{logw: os.Stderr, pool: o.pool}
	defer e.close()
	if err := e.setup(ctx, o.bin); err != nil {
		return err
	}
	fmt.Printf("setup: upstream %s, daemon pid %d (uid %d, --pool %d), vault %s\n", e.upAddr, e.daemonPID, e.uid, o.pool, e.vault)

	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(e.ca)
	if err != nil {
		return err
	}
	roots.AppendCertsFromPEM(caPEM)
	direct := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: upstreamHost},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", e.upAddr)
		},
		MaxConnsPerHost: 0,
	}, Timeout: 30 * time.Second}
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

	post := func(ctx context.Context, c *http.Client, url string, auth bool) error {
		req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(requestBody))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if auth {
			req.Header.Set("Authorization", "Bearer "+e.key)
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		return checkAnswer(resp.StatusCode, body)
	}
	daemonPIDs := func() []int { return []int{e.daemonPID} }
	inv := load.Request{Capability: capability, Method: "POST", Path: requestPath, Body: []byte(requestBody),
		Headers: nil}
	paths := []*pathDef{
		{name: "direct", do: func(ctx context.Context) error {
			return post(ctx, direct, "https://"+upstreamHost+requestPath, true)
		}},
		{name: "invoke", proxy: daemonPIDs, reaped: true, do: func(ctx context.Context) error {
			out, err := load.Invoke(ctx, e.sock, inv)
			if err != nil {
				return err
			}
			if out.Class != "" {
				return fmt.Errorf("%s: %s", out.Class, out.Error)
			}
			return checkAnswer(out.Status, out.Body)
		}},
		{name: "cli", proxy: daemonPIDs, reaped: true, do: func(ctx context.Context) error {
			cmd := e.asOwner(e.bin, "invoke", capability, "--method", "POST", "--path", requestPath, "--body", requestBody)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
			}
			return checkAnswer(200, out.Bytes())
		}},
	}
	ng, ngErr := startNginx(e)
	nginxPath := &pathDef{name: "nginx"}
	if ngErr != nil {
		nginxPath.skip = ngErr.Error()
		fmt.Printf("nginx: NOT MEASURED: %v\n", ngErr)
	} else {
		defer ng.stop()
		nginxPath.proxy = ng.pids
		nginxPath.do = func(ctx context.Context) error { return post(ctx, plain, "http://"+ng.addr+requestPath, false) }
		fmt.Printf("nginx: %s on %s\n", ng.version, ng.addr)
	}
	paths = append(paths, nginxPath)

	var results []*pathResult
	for _, p := range paths {
		r := &pathResult{name: p.name, skip: p.skip}
		results = append(results, r)
		if o.only != "" && !strings.Contains(","+o.only+",", ","+p.name+",") {
			r.skip = "not selected (-paths)"
		}
		if r.skip != "" {
			continue
		}
		n := o.n1
		if p.name == "cli" {
			n = o.nCLI
		}
		// Warm-up: connections, caches, the pool.
		for i := 0; i < 20; i++ {
			_ = p.do(ctx)
		}
		r.c1, r.c1Errors, r.errSample = runC1(ctx, p, n)
		fmt.Printf("%-6s c1:  %d requests, p50 %.2f ms, p99 %.2f ms, errors %d\n", p.name, n, r.p(50), r.p(99), r.c1Errors)
		r.c32N, r.c32Errors, r.c32Time, r.cpu = runConc(ctx, p, o.conc, o.dur, e, &r.errSample)
		fmt.Printf("%-6s c%d: %d requests in %.1fs = %.0f req/s, CPU %.2f ms/req (client %.2f, proxy %.2f, upstream %.2f), errors %d\n",
			p.name, o.conc, r.c32N, r.c32Time.Seconds(), r.rps(), r.cpu.perReq(r.c32N, r.cpu.total()), r.cpu.perReq(r.c32N, r.cpu.client),
			r.cpu.perReq(r.c32N, r.cpu.proxy), r.cpu.perReq(r.c32N, r.cpu.upstream), r.c32Errors)
		if r.cpu.workers > 0 {
			fmt.Printf("%-6s c%d: proxy CPU %.2f ms/req = monitor %.2f + workers %.2f\n", p.name, o.conc,
				r.cpu.perReq(r.c32N, r.cpu.proxy), r.cpu.perReq(r.c32N, r.cpu.proxy-r.cpu.workers), r.cpu.perReq(r.c32N, r.cpu.workers))
		}
		if r.errSample != "" {
			fmt.Printf("%-6s first error: %s\n", p.name, r.errSample)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	rssKB, _ := load.StatusKB(e.daemonPID, "VmHWM")
	workerKB := int64(0)
	if kids := load.Children(e.daemonPID); len(kids) > 0 {
		workerKB, _ = load.StatusKB(kids[0], "VmRSS")
	}
	ours := []int{e.daemonPID, e.upCmd.Process.Pid}
	if ng != nil {
		ours = append(ours, ng.pids()...)
	}
	m.otherCPU = otherCPUShare(m, ours)
	res := summary{machine: m, paths: results, daemonRSSMB: float64(rssKB) / 1024, workerRSSMB: float64(workerKB) / 1024,
		conc: o.conc, dur: o.dur, pool: o.pool, took: time.Since(start), asUser: e.asUser}
	if err := e.stopDaemon(); err != nil {
		fmt.Printf("daemon stop: %v\n", err)
	}
	fmt.Printf("other processes used %.0f%% of the CPU during the run\n", m.otherCPU)
	fmt.Print(res.resultLines())
	if o.out != "" {
		if err := res.write(o.out); err != nil {
			return err
		}
		fmt.Printf("wrote %s/results.md and %s/latency.png (%.0fs)\n", o.out, o.out, time.Since(start).Seconds())
	}
	return nil
}

func checkAnswer(status int, body []byte) error {
	if status != 200 {
		return fmt.Errorf("status %d: %.100s", status, body)
	}
	if !bytes.Contains(body, []byte(`"pong"`)) {
		return fmt.Errorf("unexpected answer: %.100s", body)
	}
	return nil
}

func runC1(ctx context.Context, p *pathDef, n int) ([]time.Duration, int, string) {
	lat := make([]time.Duration, 0, n)
	errs := 0
	first := ""
	for i := 0; i < n && ctx.Err() == nil; i++ {
		t0 := time.Now()
		err := p.do(ctx)
		d := time.Since(t0)
		if err != nil {
			errs++
			if first == "" {
				first = err.Error()
			}
			continue
		}
		lat = append(lat, d)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, errs, first
}

// cpuUse is CPU time in seconds, split by role.
type cpuUse struct {
	client, proxy, upstream float64
	workers                 float64 // the part of proxy spent in reaped children (the daemon's workers)
}

func (c cpuUse) total() float64 { return c.client + c.proxy + c.upstream }
func (c cpuUse) perReq(n int, sec float64) float64 {
	if n == 0 {
		return 0
	}
	return sec * 1000 / float64(n)
}

type cpuSnap struct {
	self, children  float64 // this process (the clients) and its reaped children (cli processes)
	proxy, upstream float64
	workers         float64 // reaped children of the proxy processes (included in proxy)
}

func snapCPU(p *pathDef, e *benchEnv) cpuSnap {
	var s cpuSnap
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = tv(ru.Utime) + tv(ru.Stime)
	}
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) == nil {
		s.children = tv(ru.Utime) + tv(ru.Stime)
	}
	if p.proxy != nil {
		for _, pid := range p.proxy() {
			self, kids, err := load.CPUTicks(pid)
			if err != nil {
				continue
			}
			s.proxy += float64(self) / clockTicks
			if p.reaped {
				s.proxy += float64(kids) / clockTicks
				s.workers += float64(kids) / clockTicks
			}
		}
	}
	if self, _, err := load.CPUTicks(e.upCmd.Process.Pid); err == nil {
		s.upstream = float64(self) / clockTicks
	}
	return s
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func runConc(ctx context.Context, p *pathDef, conc int, dur time.Duration, e *benchEnv, firstErr *string) (int, int, time.Duration, cpuUse) {
	var ok, bad atomic.Int64
	var mu sync.Mutex
	before := snapCPU(p, e)
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := p.do(ctx); err != nil {
					bad.Add(1)
					mu.Lock()
					if *firstErr == "" {
						*firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := snapCPU(p, e)
	use := cpuUse{
		client:   (after.self - before.self) + (after.children - before.children),
		proxy:    after.proxy - before.proxy,
		upstream: after.upstream - before.upstream,
		workers:  after.workers - before.workers,
	}
	return int(ok.Load()), int(bad.Load()), elapsed, use
}
