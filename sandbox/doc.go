// Package sandbox is aivault's per-request worker: spawning and pooling,
// lockdown (prctl, rlimits, Landlock, seccomp), TLS and HTTP/1.1 over a
// socket the monitor connected, response caps, header filtering and
// scrubbing of injected values.
//
// The monitor decides policy, resolves DNS, connects the TCP socket itself
// and hands a worker an ipc.Job plus that socket (SCM_RIGHTS) through a
// Pool. The worker is a re-exec of the monitor's own binary as
// "aivault-worker" (WorkerMain). Before anything else it sets
// no_new_privs, non-dumpable, a parent-death signal and rlimits (core 0,
// fsize 0, nofile 16; never nproc), enforces Landlock with every file
// right handled and no rule (no file access at all; under cgo go-landlock
// adds one read-dir rule for /proc/<pid>/task on kernels before ABI 8, for
// libpsx) and no TCP bind/connect, scoped signals and abstract sockets
// (ABI ≥ 6), and loads a seccomp allow-list with TSYNC and a kill-process
// default. It has no socket, connect, open or exec: the TLS roots come over
// a pipe and the upstream socket comes from the monitor.
//
// Before handing a worker a job the monitor reads /proc/<pid>/task/*/status
// and requires TracerPid 0, NoNewPrivs 1 and Seccomp 2 on every thread.
// Each worker serves one job and exits. What it sends back is checked
// again in the monitor (header allow-list, scrubbing, size cap).
package sandbox
