package applets

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestTuneGC: the daemon's collector settings apply unless the operator
// chose their own through GOGC / GOMEMLIMIT.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(math.MaxInt64)
	tuneGC()
	if got := debug.SetGCPercent(100); got != daemonGCPercent {
		t.Errorf("GC percent = %d, want %d", got, daemonGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != daemonMemoryLimit {
		t.Errorf("memory limit = %d, want %d", got, daemonMemoryLimit)
	}

	t.Setenv("GOGC", "50")
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(1 << 30)
	tuneGC()
	if got := debug.SetGCPercent(100); got != 50 {
		t.Errorf("with GOGC=50 the GC percent became %d", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("with GOMEMLIMIT=1GiB the memory limit became %d", got)
	}
}
