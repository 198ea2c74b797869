package perf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/queue"
)

// ScaleOptions configures Scale.
type ScaleOptions struct {
	Exe        string
	Dir        string
	Instances  int    // sluice run processes sharing the consumer
	Framing    string // "" = acked
	Records    int
	PerMessage int
	RecordSize int
	Timeout    time.Duration // 0: 3 min
}

// ScaleResult is one scale-out measurement.
type ScaleResult struct {
	Records int
	Elapsed time.Duration
	Share   []int64 // records each instance's drainer wrote
}

// RecordsPerSec is the rate over every instance.
func (r ScaleResult) RecordsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// Scale measures o.Instances sluice run processes sharing one durable
// consumer of one JetStream server, each writing to a drainer of its own:
// the server runs in this process (so that no instance carries it), the
// stream is preloaded, the instances and their drainers start, and the
// time runs until the drainers' files together hold every record. It
// returns how many records each instance's drainer wrote, the share of
// the work each got.
func Scale(ctx context.Context, o ScaleOptions) (res ScaleResult, err error) {
	if o.Framing == "" {
		o.Framing = "acked"
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp(o.Dir, "scale-")
	if err != nil {
		return res, err
	}
	defer keepOnError(dir, &err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0", Logger: logger})
	if err != nil {
		return res, err
	}
	defer emb.Shutdown()
	nc, err := queue.Connect(ctx, emb, queue.ConnectOptions{Logger: logger})
	if err != nil {
		return res, err
	}
	defer nc.Close()
	qo := queue.Options{Logger: logger, MaxBytes: queue.NoLimit}
	src, err := queue.Open(ctx, nc, qo)
	if err != nil {
		return res, err
	}
	_ = src.Close() // it made the stream and the consumer
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(pubPending))
	if err != nil {
		return res, err
	}
	p := &payloads{records: o.Records, perMsg: o.PerMessage, size: o.RecordSize}
	if _, err := publish(ctx, js, p); err != nil {
		return res, err
	}
	env := append(os.Environ(), "SLUICE_FAULTS=", "SLUICE_SINK_BACKOFF_MIN=10ms", "SLUICE_SINK_BACKOFF_MAX=50ms",
		"SLUICE_QUEUE_URL="+emb.ClientURL(), "SLUICE_QUEUE_MAX_BYTES=0", "SLUICE_ADMIN_LISTEN=off")
	var outs []string
	start := time.Now()
	for i := range o.Instances {
		sock, out := filepath.Join(dir, fmt.Sprintf("s%d.sock", i)), filepath.Join(dir, fmt.Sprintf("out%d", i))
		outs = append(outs, out)
		d, err := startChild(o.Exe, []string{"drain", "--socket", sock, "--out", out, "--log-format", "json", "--framing", o.Framing}, env, filepath.Join(dir, fmt.Sprintf("drain%d.log", i)))
		if err != nil {
			return res, err
		}
		defer d.stop()
		s, err := startChild(o.Exe, []string{"run", "--socket", sock, "--framing", o.Framing, "--log-format", "json"}, env, filepath.Join(dir, fmt.Sprintf("run%d.log", i)))
		if err != nil {
			return res, err
		}
		defer s.stop()
	}
	res.Share = make([]int64, o.Instances)
	for {
		var total int64
		for i, out := range outs {
			n, err := countLines(out)
			if err != nil {
				return res, err
			}
			res.Share[i] = n
			total += n
		}
		if total >= int64(o.Records) {
			res.Elapsed, res.Records = time.Since(start), o.Records
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("%w: %d of %d records drained by %d instances: %v", ErrIncomplete, total, o.Records, o.Instances, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ScaleSeries measures 1, 2 and 3 instances on one consumer (acked, 10
// records per message) and prints each rate as a ratio to one instance and
// each instance's share of the records.
func ScaleSeries(ctx context.Context, w io.Writer, exe, dir string, records int) error {
	fmt.Fprintf(w, "scale-out: %d records, 10 per message, acked framing, one JetStream server in the bench process\n", records)
	var one float64
	for n := 1; n <= 3; n++ {
		r, err := Scale(ctx, ScaleOptions{Exe: exe, Dir: dir, Instances: n, Records: records, PerMessage: 10, RecordSize: 200})
		if err != nil {
			return err
		}
		if n == 1 {
			one = r.RecordsPerSec()
		}
		shares := make([]string, len(r.Share))
		for i, s := range r.Share {
			shares[i] = fmt.Sprintf("%.0f%%", 100*float64(s)/float64(r.Records))
		}
		fmt.Fprintf(w, "  %d instance(s): %9.0f records/s  %.2f x one instance  share %s\n", n, r.RecordsPerSec(), r.RecordsPerSec()/one, strings.Join(shares, " / "))
	}
	return nil
}
