package testkit_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"
)

func TestWaitFor(t *testing.T) {
	n := 0
	testkit.WaitFor(t, 10*time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

func TestShortDir(t *testing.T) {
	d := testkit.ShortDir(t)
	if len(filepath.Join(d, "sluice.sock")) > 100 {
		t.Fatalf("%s is too long for a socket path", d)
	}
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
		t.Fatalf("ShortDir %s: %v", d, err)
	}
}
