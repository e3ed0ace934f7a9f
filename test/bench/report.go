package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aivault/aivault/test/bench/load"
)

// machine describes where a run happened.
type machine struct {
	cpu, kernel, goVersion, nginx string
	cores                         int
	memGB                         float64
	load1                         float64
	date                          string
	busy0, total0                 float64 // /proc/stat at start (seconds)
	self0                         float64 // our own CPU at start
	// otherCPU is the share of the machine's CPU used by processes outside
	// this run while it ran (0–100 %): how quiet the machine was.
	otherCPU float64
}

func describeMachine() *machine {
	m := &machine{cores: runtime.NumCPU(), goVersion: runtime.Version(), date: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.kernel = cstr(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseFloat(f[0], 64)
					m.memGB = kb / 1024 / 1024
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if out, err := exec.Command("nginx", "-v").CombinedOutput(); err == nil {
		m.nginx = strings.TrimSpace(strings.TrimPrefix(string(out), "nginx version: "))
	} else if out, err := exec.Command("/usr/sbin/nginx", "-v").CombinedOutput(); err == nil {
		m.nginx = strings.TrimSpace(strings.TrimPrefix(string(out), "nginx version: "))
	} else {
		m.nginx = "not installed"
	}
	m.busy0, m.total0 = procStat()
	m.self0 = rusage(syscall.RUSAGE_SELF)
	return m
}

func cstr(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func (m *machine) oneLine() string {
	return fmt.Sprintf("%s, %d cores, %.0f GB, Linux %s, %s, nginx %s, load %.2f", m.cpu, m.cores, m.memGB, m.kernel, m.goVersion, m.nginx, m.load1)
}

// procStat returns the machine's busy and total CPU seconds so far.
func procStat() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, x := range f[1:] {
		v, _ := strconv.ParseFloat(x, 64)
		v /= clockTicks
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

func rusage(who int) float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(who, &ru) != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

// otherCPUShare is the percentage of the machine's CPU that processes
// outside this run used since the start: busy time of the whole machine
// minus ours (this process, its reaped children, and the live processes in
// pids with their reaped children).
func otherCPUShare(m *machine, pids []int) float64 {
	busy, total := procStat()
	ours := rusage(syscall.RUSAGE_SELF) - m.self0 + rusage(syscall.RUSAGE_CHILDREN)
	for _, pid := range pids {
		if self, kids, err := load.CPUTicks(pid); err == nil {
			ours += float64(self+kids) / clockTicks
		}
	}
	if total-m.total0 <= 0 {
		return 0
	}
	return max(0, (busy-m.busy0-ours)/(total-m.total0)*100)
}

// summary is one run's results.
type summary struct {
	machine     *machine
	paths       []*pathResult
	daemonRSSMB float64
	workerRSSMB float64
	conc        int
	dur         time.Duration
	pool        int
	took        time.Duration
	asUser      bool
}

func (s *summary) get(name string) *pathResult {
	for _, p := range s.paths {
		if p.name == name {
			return p
		}
	}
	return &pathResult{name: name, skip: "not run"}
}

func (s *summary) errors() int {
	n := 0
	for _, p := range s.paths {
		n += p.errors()
	}
	return n
}

// resultLines are the exact lines the issue asks for.
func (s *summary) resultLines() string {
	d, i, c, n := s.get("direct"), s.get("invoke"), s.get("cli"), s.get("nginx")
	nginxRPS := "unavailable"
	if n.skip == "" {
		nginxRPS = fmt.Sprintf("%.0f", n.rps())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "RESULT direct_p50_ms=%.2f\n", d.p(50))
	fmt.Fprintf(&b, "RESULT invoke_p50_ms=%.2f\n", i.p(50))
	fmt.Fprintf(&b, "RESULT added_p50_ms=%.2f\n", i.p(50)-d.p(50))
	fmt.Fprintf(&b, "RESULT cli_p50_ms=%.2f\n", c.p(50))
	fmt.Fprintf(&b, "RESULT direct_c32_rps=%.0f\n", d.rps())
	fmt.Fprintf(&b, "RESULT invoke_c32_rps=%.0f\n", i.rps())
	fmt.Fprintf(&b, "RESULT nginx_c32_rps=%s\n", nginxRPS)
	fmt.Fprintf(&b, "RESULT daemon_rss_mb=%.1f\n", s.daemonRSSMB)
	fmt.Fprintf(&b, "RESULT errors=%d\n", s.errors())
	return b.String()
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func (s *summary) markdown() string {
	var b strings.Builder
	m := s.machine
	b.WriteString("# Benchmark results (generated by `make bench`)\n\n")
	b.WriteString("Absolute numbers vary from machine to machine and from run to run (2 shared cores here);\n")
	b.WriteString("compare the paths within one run. Method: [README.md](README.md).\n\n")
	fmt.Fprintf(&b, "- date: %s, took %.0f s\n", m.date, s.took.Seconds())
	fmt.Fprintf(&b, "- machine: %s, %d cores, %.0f GB RAM, Linux %s\n", m.cpu, m.cores, m.memGB, m.kernel)
	fmt.Fprintf(&b, "- software: %s, nginx %s\n", m.goVersion, m.nginx)
	quiet := "quiet"
	switch {
	case m.otherCPU > 5:
		quiet = "**not quiet**: other work ran at the same time"
	case m.load1 > 0.5:
		// The load average trails: a busy minute before the run raises it
		// although nothing else ran during the measurement.
		quiet = "quiet during the run (the load average still showed earlier work)"
	}
	fmt.Fprintf(&b, "- load average at start %.2f; other processes used %.0f%% of the CPU during the run (%s)\n", m.load1, m.otherCPU, quiet)
	who := "a non-root user (aivbench); clients as root (operator)"
	if !s.asUser {
		who = "the invoking user (clients: the same user)"
	}
	fmt.Fprintf(&b, "- daemon: `--pool %d`, run as %s\n\n", s.pool, who)

	fmt.Fprintf(&b, "| path | p50 ms (c1) | p99 ms (c1) | req/s (c%d) | CPU ms/req | client | proxy | upstream | errors |\n", s.conc)
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range s.paths {
		if p.skip != "" {
			fmt.Fprintf(&b, "| %s | – | – | – | – | – | – | – | not measured: %s |\n", p.name, p.skip)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f | %.2f | %d |\n", p.name, p.p(50), p.p(99), p.rps(),
			p.cpu.perReq(p.c32N, p.cpu.total()), p.cpu.perReq(p.c32N, p.cpu.client), p.cpu.perReq(p.c32N, p.cpu.proxy),
			p.cpu.perReq(p.c32N, p.cpu.upstream), p.errors())
	}
	for _, p := range s.paths {
		if p.skip == "" && p.cpu.workers > 0 {
			fmt.Fprintf(&b, "\n%s: proxy CPU %.2f ms/req = monitor %.2f + workers %.2f.", p.name, p.cpu.perReq(p.c32N, p.cpu.proxy),
				p.cpu.perReq(p.c32N, p.cpu.proxy-p.cpu.workers), p.cpu.perReq(p.c32N, p.cpu.workers))
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "\nCPU per request is measured over the c%d run: client = the benchmark process (and the `aivault invoke`\n", s.conc)
	b.WriteString("processes for cli), proxy = the daemon with its reaped workers, or nginx's master and workers,\n")
	b.WriteString("upstream = the TLS server. Daemon peak RSS (VmHWM) over the whole run: ")
	fmt.Fprintf(&b, "%.1f MB; one idle worker: %.1f MB.\n\n", s.daemonRSSMB, s.workerRSSMB)

	d, i, c := s.get("direct"), s.get("invoke"), s.get("cli")
	b.WriteString("| goal | measured | |\n|---|---|---|\n")
	added := i.p(50) - d.p(50)
	fmt.Fprintf(&b, "| added p50 ≤ 1.5 ms over direct | %.2f ms | %s |\n", added, yes(added <= 1.5))
	fmt.Fprintf(&b, "| cli p50 ≤ 2× direct | %.1f× (%.2f ms) | %s |\n", c.p(50)/d.p(50), c.p(50), yes(c.p(50) <= 2*d.p(50)))
	ratio := i.rps() / max(d.rps(), 1)
	fmt.Fprintf(&b, "| invoke c%d ≥ 300 req/s | %.0f req/s | %s |\n", s.conc, i.rps(), yes(i.rps() >= 300))
	fmt.Fprintf(&b, "| invoke c%d ≥ 0.3× direct | %.2f× | %s |\n", s.conc, ratio, yes(ratio >= 0.3))
	fmt.Fprintf(&b, "| daemon RSS ≤ 40 MB | %.1f MB | %s |\n", s.daemonRSSMB, yes(s.daemonRSSMB <= 40))
	fmt.Fprintf(&b, "| 0 errors | %d | %s |\n\n", s.errors(), yes(s.errors() == 0))
	b.WriteString("![latency at concurrency 1](latency.png)\n\n```\n")
	b.WriteString(s.resultLines())
	b.WriteString("```\n")
	return b.String()
}

func (s *summary) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(s.markdown()), 0o644); err != nil {
		return err
	}
	png, err := s.plot()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "latency.png"), png, 0o644)
}
