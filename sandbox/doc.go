// Package sandbox is aivault's per-request worker: spawning and pooling,
// lockdown (prctl, rlimits, Landlock, seccomp), TLS and HTTP/1.1 over a
// socket the monitor connected, response caps, header filtering and
// scrubbing of injected values.
//
// The monitor decides policy, resolves DNS, connects the TCP socket itself
// and hands a worker an ipc.Job plus that socket (SCM_RIGHTS) through a
// Pool. The worker is a re-exec of the monitor's own binary as
// "aivault-worker" (WorkerMain), started by the pool's spawner: one locked
// OS thread that has set no_new_privs and restricted itself to a Landlock
// domain once (spawnlandlock.go), so every worker starts with both on every
// thread it will ever have: every file right handled and only reading and
// executing its own executable allowed, no TCP bind/connect, no abstract
// unix sockets outside it (ABI ≥ 6). The worker checks that it is in the
// domain, sets non-dumpable, a parent-death signal and rlimits (core 0,
// fsize 0, memlock 0, nofile 16; never nproc), then loads the seccomp
// allow-list (kill-process default) with TSYNC: a raw BPF program compiled
// with libseccomp at development time (seccompgen) and embedded, into which
// it puts its own pid. It has no socket, connect, open or exec: the TLS
// roots come in a sealed memfd it maps read-only, the upstream socket comes
// from the monitor.
//
// When a worker reports ready, and before it can be handed a job, the
// monitor reads /proc/<pid>/task/*/status and requires TracerPid 0,
// NoNewPrivs 1 and Seccomp 2 on every thread; taking a worker from the pool
// only checks that it is still alive. Each worker serves one job and exits
// (the monitor reaps it in the background). What it sends back is checked
// again in the monitor (header allow-list, scrubbing, size cap).
package sandbox
