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
	"github.com/sluice-dev/sluice/report"
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

// A short soak samples both processes every interval and ends once the
// drainer holds everything published; its report draws every chart.
func TestSoak_Smoke(t *testing.T) {
	exe := buildSluice(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	o := perf.SoakOptions{Exe: exe, Dir: testkit.ShortDir(t), Rate: 5000, Duration: 2 * time.Second, Every: 250 * time.Millisecond}
	samples, err := perf.Soak(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) < 4 {
		t.Fatalf("%d samples in a 2 s soak sampled every 250 ms", len(samples))
	}
	last := samples[len(samples)-1]
	if last.Published < 5000 || last.Drained != last.Published {
		t.Fatalf("last sample %+v: want everything published (about 10,000) drained", last)
	}
	for _, s := range samples {
		if s.SluiceRSS <= 0 || s.DrainRSS <= 0 || s.Goroutines <= 0 || s.SluiceFDs <= 0 || s.DrainFDs <= 0 || s.Drained > s.Published {
			t.Fatalf("sample %+v: want RSS, goroutines and descriptors of both processes, and drained <= published", s)
		}
	}
	var b strings.Builder
	if err := report.Write(&b, perf.SoakReport(o, samples)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"chart-throughput", "chart-rss", "chart-goroutines", "chart-fds", "chart-disk"} {
		if !strings.Contains(b.String(), `id="`+id+`"`) {
			t.Errorf("soak report has no %s", id)
		}
	}
}

// Two instances on one consumer drain everything between them, each record
// once.
func TestScale_Smoke(t *testing.T) {
	exe := buildSluice(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := perf.Scale(ctx, perf.ScaleOptions{Exe: exe, Dir: testkit.ShortDir(t), Instances: 2, Records: 5000, PerMessage: 10, RecordSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Share) != 2 || r.Share[0]+r.Share[1] != 5000 || r.RecordsPerSec() <= 0 {
		t.Fatalf("result %+v: want the 5000 records split over two instances", r)
	}
}
