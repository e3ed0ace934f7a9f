// Package devhooks holds every test-only knob of aivault. In a release build
// (no "devhooks" tag) Enabled is false, every accessor returns nothing, and
// Refuse reports any AIVAULT_DEV_* variable so that every applet exits with a
// clear message instead of silently ignoring it.
package devhooks

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
)

// Prefix is the prefix of every test-only environment variable.
const Prefix = "AIVAULT_DEV_"

// Names of the knobs.
const (
	EnvResolve = "AIVAULT_DEV_RESOLVE"      // host=ip:port[,…]: trusted local upstream, skips the address check
	EnvCACert  = "AIVAULT_DEV_CA_CERT_PATH" // extra trusted root (PEM)
	EnvDNS     = "AIVAULT_DEV_DNS"          // name=ip[|ip…][,…]: fake answers that DO go through the address check (a name also in EnvResolve then connects there)
	EnvCrashAt = "AIVAULT_DEV_CRASH_AT"     // crash point name[@N]: the process exits abruptly there (at the Nth time it is reached)
	// EnvCrashTrace names a file to which every crash point reached is
	// appended, one name a line, so tests can enumerate a command's steps.
	EnvCrashTrace = "AIVAULT_DEV_CRASH_TRACE"
)

// Hooks is the parsed set of knobs, read once by the process that holds
// secrets (the daemon, or the CLI executing in-process) from its own
// environment at start.
type Hooks struct {
	Resolve    map[string]netip.AddrPort
	CACert     string
	DNS        map[string][]netip.Addr
	CrashAt    string
	CrashTrace string

	crashMu   sync.Mutex
	crashHits map[string]int
}

// DevVars lists the AIVAULT_DEV_* variables present in env.
func DevVars(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, Prefix) {
			name, _, _ := strings.Cut(kv, "=")
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Load parses the knobs from env. In a release build it fails when any is
// set; in a devhooks build it fails on malformed values.
func Load(env []string) (*Hooks, error) {
	vars := DevVars(env)
	if !Enabled {
		if len(vars) > 0 {
			return nil, fmt.Errorf("%s is set, but this is a release build without test hooks; unset it (test hooks exist only in the devhooks build, bin/aivault-dev)", strings.Join(vars, ", "))
		}
		return &Hooks{}, nil
	}
	h := &Hooks{Resolve: map[string]netip.AddrPort{}, DNS: map[string][]netip.Addr{}}
	get := func(name string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v
			}
		}
		return ""
	}
	if v := get(EnvResolve); v != "" {
		for _, item := range strings.Split(v, ",") {
			host, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
			ap, err := netip.ParseAddrPort(addr)
			if !ok || host == "" || err != nil {
				return nil, fmt.Errorf("%s: %q is not host=ip:port", EnvResolve, item)
			}
			h.Resolve[strings.ToLower(host)] = ap
		}
	}
	if v := get(EnvDNS); v != "" {
		for _, item := range strings.Split(v, ",") {
			host, ips, ok := strings.Cut(strings.TrimSpace(item), "=")
			if !ok || host == "" {
				return nil, fmt.Errorf("%s: %q is not name=ip[|ip…]", EnvDNS, item)
			}
			for _, s := range strings.Split(ips, "|") {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return nil, fmt.Errorf("%s: %q is not an IP address", EnvDNS, s)
				}
				h.DNS[strings.ToLower(host)] = append(h.DNS[strings.ToLower(host)], a)
			}
		}
	}
	h.CACert = get(EnvCACert)
	h.CrashAt = get(EnvCrashAt)
	h.CrashTrace = get(EnvCrashTrace)
	return h, nil
}

// Crash is a crypt.Options.CrashPoint: when name (or name@N, N counting
// from 1 the times this process reached name) equals the configured crash
// point the process exits at once with status 86, as a kill -9 would leave
// it. With a trace file every point reached is appended to it first.
func (h *Hooks) Crash(name string) {
	if h == nil || h.CrashAt == "" && h.CrashTrace == "" {
		return
	}
	h.crashMu.Lock()
	defer h.crashMu.Unlock()
	if h.crashHits == nil {
		h.crashHits = map[string]int{}
	}
	h.crashHits[name]++
	if h.CrashTrace != "" {
		if f, err := os.OpenFile(h.CrashTrace, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			fmt.Fprintln(f, name)
			f.Close()
		}
	}
	if h.CrashAt == name || h.CrashAt == fmt.Sprintf("%s@%d", name, h.crashHits[name]) {
		fmt.Fprintf(os.Stderr, "aivault: devhooks: crashing at %s\n", h.CrashAt)
		os.Exit(86)
	}
}
