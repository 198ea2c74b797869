package perf_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/sluice-dev/sluice/perf"
)

// buildSluice builds the sluice binary into a temporary directory: the
// harness re-executes it as run, drain and bench-reader.
func buildSluice(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and starts the sluice binary")
	}
	exe := filepath.Join(t.TempDir(), "sluice")
	cmd := exec.Command("go", "build", "-o", exe, "../cmd/sluice")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/sluice: %v\n%s", err, out)
	}
	return exe
}

// TestRun_Smoke runs the whole harness once with tiny sizes: every row is
// produced with a positive value, except the acked framing, which may be
// reported as not available.
func TestRun_Smoke(t *testing.T) {
	exe := buildSluice(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var progress strings.Builder
	r, err := perf.Run(ctx, perf.Options{Exe: exe, Records: 2000, Reps: 1, Dir: testkit.ShortDir(t), Progress: &progress, LatencyFor: time.Second})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	for _, rw := range r.Rows {
		if strings.Contains(rw.Key, "acked") && rw.Summary == nil {
			if !strings.Contains(rw.NA, "acked framing not available") {
				t.Errorf("%s: n/a %q; want values or the acked framing reported not available", rw.Key, rw.NA)
			}
			continue
		}
		if rw.Unit == perf.UnitCPU { // a small run may take less than one 10 ms tick
			if rw.Summary == nil || len(rw.Values) != 1 || rw.Values[0] < 0 {
				t.Errorf("%s (%s): values %v, n/a %q; want one value >= 0", rw.Key, rw.Name, rw.Values, rw.NA)
			}
			continue
		}
		if rw.Summary == nil || len(rw.Values) != 1 || rw.Values[0] <= 0 {
			t.Errorf("%s (%s): values %v, n/a %q; want one positive value", rw.Key, rw.Name, rw.Values, rw.NA)
		}
	}
	if r.Targets[0].Status == "n/a" || r.Targets[1].Status == "n/a" || r.Targets[2].Status == "n/a" {
		t.Errorf("targets not evaluated: %+v", r.Targets)
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

func TestEndToEnd_FramingNotAvailable(t *testing.T) {
	exe := buildSluice(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := perf.EndToEnd(ctx, perf.E2EOptions{Exe: exe, Dir: testkit.ShortDir(t), Framing: "carrier-pigeon", Records: 10, PerMessage: 1, RecordSize: 200})
	if !errors.Is(err, perf.ErrNotAvailable) {
		t.Fatalf("EndToEnd with an unknown framing: %v; want ErrNotAvailable", err)
	}
}

func TestRawSocket_ReaderMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// /bin/true exits at once without listening: an error, not a hang.
	if _, err := perf.RawSocket(ctx, "/bin/true", testkit.ShortDir(t), 1000, 200); err == nil {
		t.Fatal("RawSocket with a reader that never listens: nil error")
	}
}
