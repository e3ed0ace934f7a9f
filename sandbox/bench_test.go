package sandbox

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/aivault/aivault/ipc"
)

func benchSpawn(b *testing.B, insecure bool) {
	u := newUpstream(b, nil)
	cfg := PoolConfig{Exe: "/proc/self/exe", RootsPEM: u.roots, Env: []string{}, Stderr: io.Discard, Insecure: insecure}.withDefaults()
	sp := newSpawner(cfg.spawnerExe())
	defer sp.close()
	for b.Loop() {
		w, err := spawn(context.Background(), cfg, sp)
		if err != nil {
			b.Fatal(err)
		}
		w.kill()
		w.wait()
	}
}

// BenchmarkSpawnReady: start a worker until its ready frame (full lockdown).
func BenchmarkSpawnReady(b *testing.B) { benchSpawn(b, false) }

// BenchmarkSpawnReadyInsecure: the same without Landlock and seccomp; the
// difference is the cost of those two layers.
func BenchmarkSpawnReadyInsecure(b *testing.B) { benchSpawn(b, true) }

// BenchmarkRunGET: one HTTPS GET through a pool of ready workers.
func BenchmarkRunGET(b *testing.B) {
	u := newUpstream(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p, err := NewPool(context.Background(), PoolConfig{Exe: "/proc/self/exe", RootsPEM: u.roots, Env: []string{}, Stderr: io.Discard, Size: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	job := ipc.Job{V: ipc.ProtocolVersion, ServerName: "example.com", Method: "GET", Target: "/", TimeoutMs: 10_000}
	for b.Loop() {
		conn := u.dial(b)
		var c collected
		if err := p.Run(context.Background(), job, conn, c.emit); err != nil || c.end == nil || c.end.ErrorClass != "" {
			b.Fatalf("err=%v end=%+v", err, c.end)
		}
		conn.Close()
	}
}
