// Package testkit holds the helpers sluice's tests share: polling instead of
// sleeping, and temporary directories short enough for Unix socket paths.
package testkit

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond until it returns nil, failing the test with cond's last
// error after timeout. The timeout is a stall guard, not a timed assertion:
// pick one far above the expected time.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v: %v", timeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// ShortDir returns a new temporary directory, removed when the test ends,
// whose path is short enough to hold Unix sockets: t.TempDir() paths can pass
// the 108-byte sun_path limit.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// SyncBuffer is a bytes.Buffer safe for concurrent use: a logger or a
// drainer's stdout writing while the test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
