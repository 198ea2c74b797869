package perf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/load"
)

// LatencyOptions configures Latency.
type LatencyOptions struct {
	Exe        string
	Dir        string
	Framing    string
	Rate       float64       // records per second to publish; 0: as fast as the queue takes them
	PerMessage int           // records per queue message
	RecordSize int           // bytes per record (about)
	Duration   time.Duration // how long to publish; 0: 5s
	Timeout    time.Duration // for the whole measurement; 0: Duration + 1 min
}

// LatencyResult holds publish → received latency percentiles.
type LatencyResult struct {
	Records       int64
	P50, P99, Max time.Duration
	// Sustained is the rate end to end with the producer running: records
	// over the time from the first send to the last receive.
	Sustained float64
}

// Latency measures end-to-end latency at a fixed rate: it starts sluice
// drain (stamping each line with its receive time, --write-received) and
// sluice run as children, publishes load records (each carrying its send
// time) at o.Rate for o.Duration, waits until the drainer holds them all,
// and takes, for each record, the drainer's receive stamp minus its send
// time. No polling is involved: both times come from the same clock, one
// written by the publisher, one by the drainer.
func Latency(ctx context.Context, o LatencyOptions) (res LatencyResult, err error) {
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = o.Duration + time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp(o.Dir, "lat-")
	if err != nil {
		return res, err
	}
	defer keepOnError(dir, &err)
	sock := filepath.Join(dir, "s.sock")
	out := filepath.Join(dir, "out")
	// Unpaced, the producer can run ahead of the drain by more than the
	// default 1 GiB stream: no byte limit.
	env := append(os.Environ(), "SLUICE_FAULTS=", "SLUICE_SINK_BACKOFF_MIN=10ms", "SLUICE_SINK_BACKOFF_MAX=50ms", "SLUICE_QUEUE_MAX_BYTES=0")
	dargs := []string{"drain", "--socket", sock, "--out", out, "--log-format", "json", "--write-received", "--framing", o.Framing}
	drainer, err := startChild(o.Exe, dargs, env, filepath.Join(dir, "drain.log"))
	if err != nil {
		return res, err
	}
	defer drainer.stop()
	args := []string{"run", "--socket", sock, "--framing", o.Framing, "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--admin", "off", "--log-format", "json"}
	svc, err := startChild(o.Exe, args, env, filepath.Join(dir, "run.log"))
	if err != nil {
		return res, err
	}
	defer svc.stop()
	nc, js, err := publisherFor(ctx, svc, o.Framing, "sluice-bench-latency")
	if err != nil {
		return res, err
	}
	defer nc.Close()
	total, err := publishPaced(ctx, js, o, nil, nil)
	if err != nil {
		return res, err
	}
	// Wait until the drainer holds every record, then read the stamps.
	for {
		n, err := countLines(out)
		if err != nil {
			return res, err
		}
		if n >= total {
			break
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("%w: %d of %d records drained: %v", ErrIncomplete, n, total, ctx.Err())
		case <-drainer.done:
			return res, fmt.Errorf("%w: sluice drain exited; see %s", ErrIncomplete, drainer.log)
		case <-svc.done:
			return res, fmt.Errorf("%w: sluice run exited; see %s", ErrIncomplete, svc.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	h := hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)
	var firstSent, lastRecv int64 = math.MaxInt64, 0
	if err := readStamps(out, func(sent, recv int64) {
		_ = h.RecordValue(max(1, (recv-sent)/1e3))
		firstSent, lastRecv = min(firstSent, sent), max(lastRecv, recv)
	}); err != nil {
		return res, err
	}
	if lastRecv > firstSent {
		res.Sustained = float64(h.TotalCount()) / time.Duration(lastRecv-firstSent).Seconds()
	}
	res.Records = h.TotalCount()
	if res.Records != total {
		return res, fmt.Errorf("%w: %d stamped records of %d", ErrIncomplete, res.Records, total)
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	res.P50, res.P99, res.Max = us(h.ValueAtQuantile(50)), us(h.ValueAtQuantile(99)), us(h.Max())
	return res, nil
}

// publishPaced publishes load records, o.PerMessage to a message, at
// o.Rate records per second for o.Duration, and returns how many records
// it published once every publish was acknowledged. sent, if not nil,
// follows the records sent so far (atomically). refused, if not nil,
// counts the records of publishes a full stream refused (discard new),
// which then are not an error and not in the result.
func publishPaced(ctx context.Context, js jetstream.JetStream, o LatencyOptions, sent, refused *int64) (int64, error) {
	const tick = time.Millisecond
	perTick := o.Rate * tick.Seconds() / float64(o.PerMessage) // messages per tick, fractional
	unpaced := o.Rate <= 0
	var futs []jetstream.PubAckFuture
	head := 0 // futs[:head] are settled
	var seq, refusedRecs int64
	// settle waits for the oldest pending publish.
	settle := func() error {
		select {
		case <-futs[head].Ok():
		case err := <-futs[head].Err():
			if refused == nil || !isStreamFull(err) {
				return fmt.Errorf("perf: publish: %w", err)
			}
			refusedRecs += int64(o.PerMessage)
			atomic.StoreInt64(refused, refusedRecs)
		case <-ctx.Done():
			return ctx.Err()
		}
		futs[head] = nil
		head++
		return nil
	}
	start := time.Now()
	t := time.NewTicker(tick)
	defer t.Stop()
	var msg []byte
	for time.Since(start) < o.Duration {
		owed := float64(pubPending) // unpaced: as fast as the pending bound lets it
		if !unpaced {
			select {
			case <-ctx.Done():
				return seq, ctx.Err()
			case <-t.C:
			}
			// Catch up with the schedule after a late tick.
			owed = perTick*float64(time.Since(start)/tick) - float64(seq)/float64(o.PerMessage)
		}
		for ; owed >= 1; owed-- {
			for len(futs)-head >= pubPending {
				if err := settle(); err != nil {
					return seq, err
				}
			}
			msg = msg[:0]
			now := time.Now().UnixNano()
			for i := 0; i < o.PerMessage; i++ {
				seq++
				if i > 0 {
					msg = append(msg, '\n')
				}
				msg = load.AppendRecord(msg, load.Record{Run: "lat", Seq: seq, TS: now, Size: o.RecordSize})
			}
			f, err := js.PublishAsync(benchSubject, msg)
			if err != nil {
				return seq, fmt.Errorf("perf: publish: %w", err)
			}
			futs = append(futs, f)
			if sent != nil {
				atomic.StoreInt64(sent, seq)
			}
		}
	}
	for head < len(futs) {
		if err := settle(); err != nil {
			return seq, err
		}
	}
	return seq - refusedRecs, nil
}

// isStreamFull reports whether err is a full stream's refusal of a
// publish (JetStream error 10077, "maximum bytes exceeded").
func isStreamFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10077 || strings.Contains(err.Error(), "maximum bytes exceeded")
}

// readStamps calls fn with the send time and the receive stamp (Unix ns)
// of every record line in the drainer's files in dir.
func readStamps(dir string, fn func(sent, recv int64)) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return err
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			ns, rest, ok := load.CutReceived(sc.Bytes())
			if !ok {
				f.Close()
				return fmt.Errorf("perf: %s: a line without the drainer's receive stamp: %.80q", name, sc.Text())
			}
			h, err := load.ParseRecord(rest)
			if err != nil {
				f.Close()
				return fmt.Errorf("perf: %s: %w", name, err)
			}
			fn(h.TS, ns)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
