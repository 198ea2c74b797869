package obs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	xtrace "golang.org/x/exp/trace"

	"github.com/sluice-dev/sluice/obs"
)

const stallGuard = 30 * time.Second // generous: only catches a hang

type recorderEnv struct {
	f   *obs.FlightRecorder
	reg *prometheus.Registry
	log *testkit.SyncBuffer
	dir string
}

// startRecorder starts a flight recorder dumping into a fresh directory;
// opts.Dir, Logger and Registerer are filled in. It is closed at cleanup.
func startRecorder(t *testing.T, opts obs.FlightOptions) *recorderEnv {
	t.Helper()
	e := &recorderEnv{reg: prometheus.NewRegistry(), log: &testkit.SyncBuffer{}, dir: filepath.Join(t.TempDir(), "dumps")}
	opts.Dir, opts.Registerer = e.dir, e.reg
	opts.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f, err := obs.StartFlightRecorder(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	e.f = f
	return e
}

// metric returns the value of the sample of family name whose labels
// include want (name=value pairs), or 0 if there is none.
func (e *recorderEnv) metric(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
	next:
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(want); i += 2 {
				if labels[want[i]] != want[i+1] {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// dumps lists the dump files in the recorder's directory, sorted by name.
func (e *recorderEnv) dumps(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(e.dir, obs.DumpPrefix+"*"+obs.DumpSuffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// waitHandled waits until dumps+suppressed+failed reaches n: every trigger
// has been handled.
func (e *recorderEnv) waitHandled(t *testing.T, n float64) {
	t.Helper()
	testkit.WaitFor(t, stallGuard, func() error {
		var all float64
		fams, _ := e.reg.Gather()
		for _, fam := range fams {
			if fam.GetName() == "sluice_flight_dumps_total" {
				for _, m := range fam.GetMetric() {
					all += m.GetCounter().GetValue()
				}
			}
		}
		s := e.metric(t, "sluice_flight_dumps_suppressed_total")
		f := e.metric(t, "sluice_flight_dump_failures_total")
		if all+s+f < n {
			return fmt.Errorf("%v dumps, %v suppressed, %v failed; want %v handled", all, s, f, n)
		}
		return nil
	})
}

// traceEvents parses a dump to the end and returns its log messages (as
// "category: message") and region types.
func traceEvents(t *testing.T, path string) (logs, regions []string) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := xtrace.NewReader(fh)
	if err != nil {
		t.Fatalf("%s: not a trace: %v", path, err)
	}
	var n int
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: parse error after %d events: %v", path, n, err)
		}
		n++
		switch ev.Kind() {
		case xtrace.EventLog:
			l := ev.Log()
			logs = append(logs, l.Category+": "+l.Message)
		case xtrace.EventRegionBegin:
			regions = append(regions, ev.Region().Type)
		}
	}
	if n == 0 {
		t.Fatalf("%s: no events", path)
	}
	return logs, regions
}

func TestFlightRecorder_DumpCoversTrigger(t *testing.T) {
	e := startRecorder(t, obs.FlightOptions{MinInterval: time.Hour})
	if !trace.IsEnabled() {
		t.Fatal("trace.IsEnabled() = false while the flight recorder runs")
	}

	// Identifiable work just before the trigger, on another goroutine.
	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, task := trace.NewTask(context.Background(), "sluice-test")
		defer task.End()
		trace.WithRegion(ctx, "before-trigger", func() {
			trace.Log(ctx, "sluice-test", marker)
		})
	}()
	<-done
	e.f.Trigger("write error: conn/5") // sanitised to write_error__conn_5

	e.waitHandled(t, 1)
	files := e.dumps(t)
	if len(files) != 1 {
		t.Fatalf("dump files %v, want 1", files)
	}
	path := files[0]
	if re := regexp.MustCompile(`^sluice-trace-\d{8}T\d{6}\.\d{3}Z-write_error__conn_5\.trace$`); !re.MatchString(filepath.Base(path)) {
		t.Fatalf("dump name %q does not match %v", filepath.Base(path), re)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dump file mode: %v %v, want 0600", fi.Mode(), err)
	}
	logs, regions := traceEvents(t, path)
	if !slices.Contains(logs, "sluice-test: "+marker) {
		t.Errorf("dump lacks the trace.Log made just before the trigger (%d logs: %q)", len(logs), logs)
	}
	if !slices.Contains(regions, "before-trigger") {
		t.Errorf("dump lacks the region before-trigger (regions %q)", regions)
	}
	if !strings.Contains(e.log.String(), path) {
		t.Errorf("log does not name the dump path %s:\n%s", path, e.log.String())
	}
	want := `
# HELP sluice_flight_dumps_total Flight-recorder trace dumps written, by the reason that triggered them.
# TYPE sluice_flight_dumps_total counter
sluice_flight_dumps_total{reason="write_error__conn_5"} 1
# HELP sluice_flight_recording 1 while the flight recorder keeps a trace window in memory, 0 once it is closed.
# TYPE sluice_flight_recording gauge
sluice_flight_recording 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), "sluice_flight_dumps_total", "sluice_flight_recording"); err != nil {
		t.Fatal(err)
	}
	// No temporary file is left behind.
	if tmp, _ := filepath.Glob(filepath.Join(e.dir, ".*")); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

func TestFlightRecorder_RateLimit(t *testing.T) {
	e := startRecorder(t, obs.FlightOptions{MinInterval: time.Hour})
	e.f.Trigger("first")
	e.f.Trigger("second")
	e.waitHandled(t, 2)
	if d, s := e.metric(t, "sluice_flight_dumps_total", "reason", "first"), e.metric(t, "sluice_flight_dumps_suppressed_total"); d != 1 || s != 1 {
		t.Fatalf("two triggers in a row: dumps{first}=%v suppressed=%v, want 1 and 1", d, s)
	}
	if files := e.dumps(t); len(files) != 1 || !strings.HasSuffix(files[0], "-first.trace") {
		t.Fatalf("files %v, want the one for the first trigger", files)
	}

	// Still inside MinInterval: a later trigger is suppressed too...
	e.f.Trigger("third")
	e.waitHandled(t, 3)
	if s := e.metric(t, "sluice_flight_dumps_suppressed_total"); s != 2 {
		t.Fatalf("suppressed = %v, want 2", s)
	}
	// ...but an operator's DumpNow is not.
	path, err := e.f.DumpNow("operator")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil || len(e.dumps(t)) != 2 {
		t.Fatalf("DumpNow: %v, files %v", err, e.dumps(t))
	}
}

func TestFlightRecorder_TriggerStorm(t *testing.T) {
	// Many goroutines triggering at once: each trigger is either dumped or
	// counted as suppressed, exactly one dump is written, nothing blocks.
	e := startRecorder(t, obs.FlightOptions{MinInterval: time.Hour})
	const goroutines, each = 8, 200
	done := make(chan struct{})
	for range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			for range each {
				e.f.Trigger("reconnect")
			}
		}()
	}
	for range goroutines {
		<-done
	}
	e.waitHandled(t, goroutines*each)
	if d := e.metric(t, "sluice_flight_dumps_total", "reason", "reconnect"); d != 1 {
		t.Fatalf("dumps = %v, want 1", d)
	}
	if s := e.metric(t, "sluice_flight_dumps_suppressed_total"); s != goroutines*each-1 {
		t.Fatalf("suppressed = %v, want %d", s, goroutines*each-1)
	}
}

func TestFlightRecorder_Prune(t *testing.T) {
	t.Run("MaxFiles", func(t *testing.T) {
		e := startRecorder(t, obs.FlightOptions{MaxFiles: 3})
		// Files that are not dumps are never touched.
		for _, name := range []string{"notes.txt", obs.DumpPrefix + "x.txt"} {
			if err := os.WriteFile(filepath.Join(e.dir, name), []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		var paths []string
		for i := range 5 {
			p, err := e.f.DumpNow(fmt.Sprintf("r%d", i))
			if err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		got := e.dumps(t)
		slices.SortFunc(got, func(a, b string) int { return strings.Compare(a[len(a)-8:], b[len(b)-8:]) })
		if want := paths[2:]; !slices.Equal(got, want) {
			t.Fatalf("after 5 dumps with MaxFiles 3: %v, want the newest %v", got, want)
		}
		for _, name := range []string{"notes.txt", obs.DumpPrefix + "x.txt"} {
			if _, err := os.Stat(filepath.Join(e.dir, name)); err != nil {
				t.Fatalf("pruning removed a file that is not a dump: %v", err)
			}
		}
		if n := e.metric(t, "sluice_flight_dumps_pruned_total"); n != 2 {
			t.Fatalf("pruned = %v, want 2", n)
		}
	})
	t.Run("MaxTotalBytes", func(t *testing.T) {
		e := startRecorder(t, obs.FlightOptions{MaxTotalBytes: 1})
		var last string
		for i := range 3 {
			p, err := e.f.DumpNow(fmt.Sprintf("r%d", i))
			if err != nil {
				t.Fatal(err)
			}
			last = p
		}
		if got := e.dumps(t); !slices.Equal(got, []string{last}) {
			t.Fatalf("with MaxTotalBytes 1: %v, want only the newest %s", got, last)
		}
	})
}

func TestFlightRecorder_SameMillisecond(t *testing.T) {
	// DumpNow twice with one reason in quick succession never overwrites.
	e := startRecorder(t, obs.FlightOptions{})
	seen := map[string]bool{}
	for range 5 {
		p, err := e.f.DumpNow("same")
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("path %s returned twice", p)
		}
		seen[p] = true
	}
	if n := len(e.dumps(t)); n != 5 {
		t.Fatalf("%d files, want 5", n)
	}
}

func TestFlightRecorder_Stall(t *testing.T) {
	e := startRecorder(t, obs.FlightOptions{MinInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Progressing: the counter moves on every call, so no stall, however
	// long we watch. Watch for 50 calls (50ms ≫ stalledFor).
	var calls, counter atomic.Uint64
	e.f.WatchStall(ctx, time.Millisecond, 5*time.Millisecond, func() (bool, uint64) {
		calls.Add(1)
		return true, counter.Add(1)
	})
	// Idle: nothing pending, counter frozen: no stall either.
	var idleCalls atomic.Uint64
	e.f.WatchStall(ctx, time.Millisecond, 5*time.Millisecond, func() (bool, uint64) {
		idleCalls.Add(1)
		return false, 7
	})
	testkit.WaitFor(t, stallGuard, func() error {
		if c, i := calls.Load(), idleCalls.Load(); c < 50 || i < 50 {
			return fmt.Errorf("progress called %d and %d times, want 50", c, i)
		}
		return nil
	})
	if n := len(e.dumps(t)); n != 0 {
		t.Fatalf("%d dumps while work progressed or was idle", n)
	}

	// Stalled: pending and frozen. One dump, reason stall, even though the
	// stall goes on (no trigger per tick: suppressed stays 0).
	var stalledCalls atomic.Uint64
	e.f.WatchStall(ctx, time.Millisecond, 5*time.Millisecond, func() (bool, uint64) {
		stalledCalls.Add(1)
		return true, 42
	})
	e.waitHandled(t, 1)
	start := stalledCalls.Load()
	testkit.WaitFor(t, stallGuard, func() error {
		if stalledCalls.Load() < start+50 {
			return errors.New("stalled watcher not ticking")
		}
		return nil
	})
	if d, s := e.metric(t, "sluice_flight_dumps_total", "reason", "stall"), e.metric(t, "sluice_flight_dumps_suppressed_total"); d != 1 || s != 0 {
		t.Fatalf("stall: dumps{stall}=%v suppressed=%v, want 1 and 0", d, s)
	}
	if !strings.Contains(e.log.String(), "stall: work is pending") {
		t.Fatalf("stall not logged:\n%s", e.log.String())
	}
	// Cancelling ctx stops the watchers (goleak in TestMain and Close's wait
	// prove they end).
	cancel()
}

func TestFlightRecorder_NilIsSafe(t *testing.T) {
	var f *obs.FlightRecorder
	f.Trigger("x")
	f.WatchStall(context.Background(), time.Millisecond, time.Millisecond, func() (bool, uint64) { return true, 0 })
	f.NotifySignal()
	if f.Dir() != "" {
		t.Fatal("nil recorder has a Dir")
	}
	if _, err := f.DumpNow("x"); !errors.Is(err, obs.ErrFlightDisabled) {
		t.Fatalf("DumpNow on nil = %v, want ErrFlightDisabled", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFlightRecorder_Close(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e := startRecorder(t, obs.FlightOptions{})

	// Only one flight recorder per process.
	if f2, err := obs.StartFlightRecorder(obs.FlightOptions{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}); err == nil {
		f2.Close()
		t.Fatal("a second recorder started while the first runs")
	}

	e.f.WatchStall(context.Background(), time.Millisecond, time.Hour, func() (bool, uint64) { return true, 0 })
	e.f.NotifySignal()
	if err := e.f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if trace.IsEnabled() {
		t.Fatal("tracing still enabled after Close")
	}
	if v := e.metric(t, "sluice_flight_recording"); v != 0 {
		t.Fatalf("sluice_flight_recording = %v after Close", v)
	}
	e.f.Trigger("late") // no-op, no panic
	if _, err := e.f.DumpNow("late"); !errors.Is(err, obs.ErrFlightClosed) {
		t.Fatalf("DumpNow after Close = %v, want ErrFlightClosed", err)
	}
	// Nothing starts after Close (goleak above checks).
	e.f.WatchStall(context.Background(), time.Millisecond, time.Hour, func() (bool, uint64) { return true, 0 })
	e.f.NotifySignal()
	if len(e.dumps(t)) != 0 {
		t.Fatal("dump written after Close")
	}

	// The runtime recorder was really stopped: a new one can start.
	f3, err := obs.StartFlightRecorder(obs.FlightOptions{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("restart after Close: %v", err)
	}
	f3.Close()
}

func TestFlightOptions_Invalid(t *testing.T) {
	for _, o := range []obs.FlightOptions{
		{Window: -1}, {MinInterval: -1}, {MaxFiles: -1}, {MaxTotalBytes: -1},
	} {
		if f, err := obs.StartFlightRecorder(o); err == nil {
			f.Close()
			t.Errorf("StartFlightRecorder(%+v) accepted", o)
		}
	}
	// A dump directory that cannot be created.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := obs.StartFlightRecorder(obs.FlightOptions{Dir: filepath.Join(file, "sub")}); err == nil || !strings.Contains(err.Error(), "dump directory") {
		f.Close()
		t.Fatalf("Dir under a file: err = %v", err)
	}
}

func TestSanitizeReason(t *testing.T) {
	for in, want := range map[string]string{
		"reconnect":              "reconnect",
		"write error: x/y":       "write_error__x_y",
		"../../etc/passwd":       "_._.._etc_passwd",
		"":                       "unknown",
		"héllo":                  "h__llo",
		strings.Repeat("a", 100): strings.Repeat("a", 48),
	} {
		if got := obs.SanitizeReason(in); got != want {
			t.Errorf("SanitizeReason(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFlightRecorder_CloseWaitsForWatchers(t *testing.T) {
	// Close returns only after every goroutine the recorder owns has ended:
	// here a stall watcher blocked inside its progress func.
	e := startRecorder(t, obs.FlightOptions{})
	entered, release := make(chan struct{}), make(chan struct{})
	var returned atomic.Bool
	var once sync.Once
	e.f.WatchStall(context.Background(), time.Millisecond, time.Hour, func() (bool, uint64) {
		once.Do(func() {
			close(entered)
			<-release
			returned.Store(true)
		})
		return false, 0
	})
	<-entered
	closed := make(chan bool)
	go func() {
		e.f.Close()
		closed <- returned.Load()
	}()
	// Close has begun once DumpNow refuses.
	testkit.WaitFor(t, stallGuard, func() error {
		if _, err := e.f.DumpNow("probe"); !errors.Is(err, obs.ErrFlightClosed) {
			return fmt.Errorf("DumpNow = %v, want ErrFlightClosed", err)
		}
		return nil
	})
	close(release)
	if !<-closed {
		t.Fatal("Close returned while a watcher goroutine was still running")
	}
}
