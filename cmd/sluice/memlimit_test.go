package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/sluice-dev/sluice/config"
)

func TestMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // restore
	cfg := config.Default()
	if got := memoryLimit(&cfg); got != autoMemoryLimitEmbedded {
		t.Errorf("auto with the embedded server: %d, want %d", got, autoMemoryLimitEmbedded)
	}
	cfg.Queue.URL = "nats://127.0.0.1:4222"
	if got := memoryLimit(&cfg); got != autoMemoryLimitExternal {
		t.Errorf("auto with an external server: %d, want %d", got, autoMemoryLimitExternal)
	}
	cfg.Runtime.MemoryLimit = 200 * config.MiB
	applyMemoryLimit(&cfg, quietLogger())
	if got := debug.SetMemoryLimit(-1); got != 200<<20 {
		t.Errorf("runtime memory limit %d after applying 200MiB", got)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(math.MaxInt64)
	applyMemoryLimit(&cfg, quietLogger())
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("runtime memory limit %d; GOMEMLIMIT must win over runtime.memory_limit", got)
	}
}
