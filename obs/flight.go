package obs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons the flight recorder itself dumps for; callers pass their own
// (e.g. "reconnect", "write_error") to Trigger.
const (
	ReasonStall  = "stall"  // WatchStall saw pending work make no progress
	ReasonSignal = "signal" // the process received SIGUSR1 (NotifySignal)
	ReasonAdmin  = "admin"  // POST /debug/flight/dump
)

// Dump files are named DumpPrefix + UTC time + "-" + reason + DumpSuffix.
const (
	DumpPrefix = "sluice-trace-"
	DumpSuffix = ".trace"
	dumpTime   = "20060102T150405.000Z" // sorts as it reads; no ':' so it is a valid name everywhere
)

// DefaultFlightDir is where the flight recorder writes dumps unless told
// otherwise: beside sluice's other files, relative to its working directory.
const DefaultFlightDir = "./sluice-traces"

// FlightOptions configures a FlightRecorder. The zero value of each field
// selects its default.
type FlightOptions struct {
	// Window is how much recent execution the recorder keeps in memory
	// (runtime/trace MinAge). Zero means 5s.
	Window time.Duration
	// MaxBytes bounds the in-memory window; it wins over Window. Zero means
	// 16 MiB.
	MaxBytes uint64
	// Dir is where dumps are written; it is created with mode 0700 if
	// missing. Empty means DefaultFlightDir. Dump files have mode 0600: a trace
	// holds stack traces and trace.Log messages.
	Dir string
	// MinInterval is the least time between the starts of two triggered
	// dumps; triggers inside it are suppressed (counted, not dumped). It does
	// not apply to DumpNow or SIGUSR1, which an operator asked for. Zero
	// means 10s.
	MinInterval time.Duration
	// MaxFiles is how many dump files (DumpPrefix*DumpSuffix) Dir keeps;
	// after each dump the oldest are deleted. Zero means 20.
	MaxFiles int
	// MaxTotalBytes bounds the dump files' total size the same way; the
	// newest dump is always kept. Zero means 256 MiB.
	MaxTotalBytes int64
	// Logger receives the recorder's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the sluice_flight_* metrics. Nil means they are
	// kept but not registered. It must not hold them already.
	Registerer prometheus.Registerer
}

// WithDefaults returns o with defaults applied, or an error naming the first
// bad field.
func (o FlightOptions) WithDefaults() (FlightOptions, error) {
	switch {
	case o.Window < 0:
		return o, fmt.Errorf("flight recorder: Window %v is negative", o.Window)
	case o.MinInterval < 0:
		return o, fmt.Errorf("flight recorder: MinInterval %v is negative", o.MinInterval)
	case o.MaxFiles < 0:
		return o, fmt.Errorf("flight recorder: MaxFiles %d is negative", o.MaxFiles)
	case o.MaxTotalBytes < 0:
		return o, fmt.Errorf("flight recorder: MaxTotalBytes %d is negative", o.MaxTotalBytes)
	}
	if o.Window == 0 {
		o.Window = 5 * time.Second
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 16 << 20
	}
	if o.Dir == "" {
		o.Dir = DefaultFlightDir
	}
	if o.MinInterval == 0 {
		o.MinInterval = 10 * time.Second
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = 20
	}
	if o.MaxTotalBytes == 0 {
		o.MaxTotalBytes = 256 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// FlightRecorder keeps the last seconds of the process's execution trace in
// memory (runtime/trace.FlightRecorder) and writes them to a file when
// something anomalous happens, for `go tool trace`.
//
// Trigger is the hot-path entry point: it never blocks and hands the request
// to a dumper goroutine the recorder owns. DumpNow dumps synchronously. All
// dumps are serialised, as runtime/trace requires of WriteTo.
//
// A nil *FlightRecorder is valid: every method is a no-op (DumpNow returns
// ErrFlightDisabled), so callers need no checks when the recorder is off.
//
// Only one flight recorder can run per process.
type FlightRecorder struct {
	opts FlightOptions // defaults applied; read-only after start
	log  *slog.Logger
	m    *metrics
	rec  *trace.FlightRecorder

	reqs chan string // one slot: Trigger hands a reason to run; full = a dump is already pending

	// writeMu serialises dumps: WriteTo (one writer at a time), file naming
	// and pruning. It is held across the I/O on purpose: it exists to
	// serialise that I/O. Lock order: mu is never held while taking writeMu.
	writeMu  sync.Mutex
	lastDump time.Time // guarded by writeMu: start of the last dump, for MinInterval

	ctx    context.Context // cancelled by Close; ends every goroutine below
	cancel context.CancelFunc
	done   atomic.Bool // set by Close before cancel; read by Trigger without locks

	mu        sync.Mutex     // guards closed, signalOn, and wg.Add against Close's wg.Wait
	closed    bool           // Close has begun: start no goroutine
	signalOn  bool           // NotifySignal's goroutine runs
	wg        sync.WaitGroup // the dumper, stall watchers and signal watcher
	closeOnce sync.Once
}

// StartFlightRecorder starts recording and the recorder's dumper goroutine.
// It fails if opts are invalid, Dir cannot be created, or another flight
// recorder is already running in the process.
func StartFlightRecorder(opts FlightOptions) (*FlightRecorder, error) {
	opts, err := opts.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("flight recorder: dump directory: %w", err)
	}
	f := &FlightRecorder{
		opts: opts,
		log:  opts.Logger.With(KeyComponent, "flight"),
		m:    newMetrics(opts.Registerer),
		reqs: make(chan string, 1),
	}
	f.rec = trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: opts.Window, MaxBytes: opts.MaxBytes})
	if err := f.rec.Start(); err != nil {
		return nil, fmt.Errorf("flight recorder: start (only one may run per process): %w", err)
	}
	f.m.recording.Set(1)
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.goOwned(f.runDumper)
	f.log.Info("flight recorder started", "window", opts.Window, "max_bytes", opts.MaxBytes,
		"dir", opts.Dir, "min_interval", opts.MinInterval, "max_files", opts.MaxFiles)
	return f, nil
}

// goOwned runs fn in a goroutine the recorder owns (Close waits for it),
// unless Close has begun; it reports whether it started fn.
func (f *FlightRecorder) goOwned(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
	return true
}

// Dir returns the directory dumps are written to ("" for a nil recorder).
func (f *FlightRecorder) Dir() string {
	if f == nil {
		return ""
	}
	return f.opts.Dir
}

// Trigger asks for a dump with the given reason (sanitised for the file
// name and the metric label: keep it a short constant such as "reconnect").
// It never blocks and is safe from any goroutine and from hot paths: the
// request goes to the dumper goroutine through a one-slot channel. Triggers
// that arrive while a dump is pending or running, or within MinInterval of
// the last dump, are coalesced and counted in
// sluice_flight_dumps_suppressed_total. On a nil or closed recorder it does
// nothing.
func (f *FlightRecorder) Trigger(reason string) {
	if f == nil || f.done.Load() {
		return
	}
	select {
	case f.reqs <- reason:
	default:
		f.m.suppressed.Inc()
	}
}

// runDumper is the dumper goroutine: it serves Trigger's requests.
func (f *FlightRecorder) runDumper() {
	for {
		select {
		case <-f.ctx.Done():
			return
		case reason := <-f.reqs:
			_, _ = f.dump(reason, true)
		}
	}
}

// DumpNow writes a dump synchronously and returns its path. It ignores
// MinInterval (an operator asked for it) but waits for a dump in progress.
// It returns ErrFlightDisabled on a nil recorder and ErrFlightClosed once
// Close has begun.
func (f *FlightRecorder) DumpNow(reason string) (path string, err error) {
	if f == nil {
		return "", ErrFlightDisabled
	}
	return f.dump(reason, false)
}

// dump writes one dump; limited applies MinInterval.
func (f *FlightRecorder) dump(reason string, limited bool) (string, error) {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	if f.done.Load() {
		return "", ErrFlightClosed
	}
	reason = SanitizeReason(reason)
	now := time.Now()
	if limited && !f.lastDump.IsZero() && now.Sub(f.lastDump) < f.opts.MinInterval {
		f.m.suppressed.Inc() // counted, not logged: a trigger storm must not flood the log
		return "", errSuppressed
	}
	f.lastDump = now
	path, n, err := f.write(now, reason)
	if err != nil {
		f.m.failures.Inc()
		f.log.Error("flight recorder dump failed", KeyReason, reason, KeyErr, err)
		return "", err
	}
	f.m.dumps.WithLabelValues(reason).Inc()
	f.log.Info("flight recorder dump written; open it with go tool trace", KeyReason, reason, KeyPath, path,
		"bytes", n, "took", time.Since(now).Round(time.Millisecond))
	f.prune(path)
	return path, nil
}

// write snapshots the trace window into Dir through a temporary file and a
// rename, so a dump file is either complete or absent. writeMu is held.
func (f *FlightRecorder) write(now time.Time, reason string) (path string, n int64, err error) {
	base := DumpPrefix + now.UTC().Format(dumpTime) + "-" + reason
	path = filepath.Join(f.opts.Dir, base+DumpSuffix)
	for i := 2; ; i++ { // DumpNow may run twice in one millisecond
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			break
		}
		path = filepath.Join(f.opts.Dir, base+"-"+strconv.Itoa(i)+DumpSuffix)
	}
	tmp, err := os.CreateTemp(f.opts.Dir, "."+DumpPrefix+"*.tmp") // mode 0600
	if err != nil {
		return "", 0, fmt.Errorf("create temporary dump file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if n, err = f.rec.WriteTo(tmp); err != nil {
		return "", n, fmt.Errorf("write trace snapshot to %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return "", n, fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return "", n, fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return "", n, fmt.Errorf("rename dump into place: %w", err)
	}
	return path, n, nil
}

// prune deletes the oldest dump files in Dir until at most MaxFiles remain
// and they hold at most MaxTotalBytes, never deleting keep (the dump just
// written). Other files in Dir are left alone. writeMu is held.
func (f *FlightRecorder) prune(keep string) {
	entries, err := os.ReadDir(f.opts.Dir)
	if err != nil {
		f.log.Warn("flight recorder: cannot list dump directory to prune it", KeyPath, f.opts.Dir, KeyErr, err)
		return
	}
	type dumpFile struct {
		path string
		size int64
		mod  time.Time
	}
	var files []dumpFile
	var total int64
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, DumpPrefix) || !strings.HasSuffix(name, DumpSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		files = append(files, dumpFile{filepath.Join(f.opts.Dir, name), info.Size(), info.ModTime()})
		total += info.Size()
	}
	slices.SortFunc(files, func(a, b dumpFile) int { // oldest first
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return cmp.Compare(a.path, b.path)
	})
	for len(files) > 0 && (len(files) > f.opts.MaxFiles || total > f.opts.MaxTotalBytes) {
		old := files[0]
		files = files[1:]
		if old.path == keep {
			continue
		}
		if err := os.Remove(old.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			f.log.Warn("flight recorder: cannot delete old dump", KeyPath, old.path, KeyErr, err)
			continue
		}
		total -= old.size
		f.m.pruned.Inc()
		f.log.Debug("flight recorder: deleted old dump", KeyPath, old.path)
	}
}

// SanitizeReason maps a trigger reason to what appears in dump file names
// and in the reason label: ASCII letters, digits, '_', '-' and '.', other
// bytes replaced by '_', at most 48 bytes, "unknown" if empty.
func SanitizeReason(reason string) string {
	const maxLen = 48
	b := make([]byte, 0, min(len(reason), maxLen))
	for i := 0; i < len(reason) && len(b) < maxLen; i++ {
		c := reason[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		case c == '.' && len(b) > 0:
		default:
			c = '_'
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// WatchStall starts a goroutine, owned by the recorder, that calls progress
// every `every` and triggers a dump with reason "stall" when progress reports
// pending work but its counter has not moved for stalledFor. It triggers
// once per stall and re-arms when the counter moves or the work drains. It
// stops when ctx ends or the recorder closes. every <= 0 means one second;
// stalledFor <= 0 means ten times every. progress must not block.
//
// A typical progress func reports whether records are in flight and how
// many have been acknowledged so far.
func (f *FlightRecorder) WatchStall(ctx context.Context, every, stalledFor time.Duration, progress func() (pending bool, counter uint64)) {
	if f == nil {
		return
	}
	if every <= 0 {
		every = time.Second
	}
	if stalledFor <= 0 {
		stalledFor = 10 * every
	}
	f.goOwned(func() { f.watchStall(ctx, every, stalledFor, progress) })
}

func (f *FlightRecorder) watchStall(ctx context.Context, every, stalledFor time.Duration, progress func() (bool, uint64)) {
	t := time.NewTicker(every)
	defer t.Stop()
	var (
		last    uint64
		since   time.Time // when progress last moved or work last drained
		stalled bool      // a dump was triggered for the current stall
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.ctx.Done():
			return
		case <-t.C:
		}
		pending, counter := progress()
		now := time.Now()
		if since.IsZero() || !pending || counter != last {
			if stalled {
				f.log.Info("stall over", "stalled_for", now.Sub(since).Round(time.Millisecond), "counter", counter)
			}
			last, since, stalled = counter, now, false
			continue
		}
		if !stalled && now.Sub(since) >= stalledFor {
			stalled = true
			f.log.Warn("stall: work is pending but progress has not moved; dumping the flight recording",
				"stalled_for", now.Sub(since).Round(time.Millisecond), "counter", counter)
			f.Trigger(ReasonStall)
		}
	}
}

// Close stops the recorder's goroutines (a pending triggered dump is
// dropped, a running one finishes) and then the recording. It is
// idempotent and safe on a nil recorder.
func (f *FlightRecorder) Close() error {
	if f == nil {
		return nil
	}
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		f.mu.Unlock()
		f.done.Store(true)
		f.cancel()
		f.wg.Wait()
		f.writeMu.Lock() // wait for a DumpNow in progress
		f.rec.Stop()
		f.writeMu.Unlock()
		f.m.recording.Set(0)
		f.log.Info("flight recorder stopped")
	})
	return nil
}
