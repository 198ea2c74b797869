package perf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/load"
	"github.com/sluice-dev/sluice/queue"
)

// Settings shared by the raw and end-to-end measurements, the ones sluice
// uses by default.
const (
	benchSubject = "ingest.bench"
	fetchBatch   = 500                    // pipeline.batch_size default
	fetchWait    = 200 * time.Millisecond // pipeline.fetch_wait default
	pubPending   = 4096                   // async publishes in flight
	stallAfter   = 30 * time.Second       // empty fetches this long in a row: stalled
)

// payloads builds queue messages of perMsg records of recordSize bytes each,
// (records joined by '\n', as sluice load does) on demand.
type payloads struct {
	records, perMsg, size int
	next                  int // first record of the next message, 0-based
	buf                   []byte
}

// Next returns the next message, valid until the following call, or nil
// when all records were produced.
func (p *payloads) Next() []byte {
	if p.next >= p.records {
		return nil
	}
	p.buf = p.buf[:0]
	end := min(p.next+p.perMsg, p.records)
	ts := time.Now().UnixNano()
	for i := p.next; i < end; i++ {
		if i > p.next {
			p.buf = append(p.buf, '\n')
		}
		p.buf = load.AppendRecord(p.buf, load.Record{Run: "bench", Seq: int64(i + 1), Key: i % 16, TS: ts, Size: p.size})
	}
	p.next = end
	return p.buf
}

// OutputBytes is what the drainer writes for these records: each record and
// a newline.
func (p *payloads) OutputBytes() int64 {
	q := payloads{records: p.records, perMsg: 1, size: p.size}
	var n int64
	for b := q.Next(); b != nil; b = q.Next() {
		n += int64(len(b)) + 1
	}
	return n
}

// publish publishes every message of p asynchronously, at most pubPending
// unacknowledged, and returns once every publish was acknowledged.
func publish(ctx context.Context, js jetstream.JetStream, p *payloads) (msgs int, err error) {
	futs := make([]jetstream.PubAckFuture, 0, pubPending)
	head := 0
	wait := func(f jetstream.PubAckFuture) error {
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return fmt.Errorf("perf: publish: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(stallAfter):
			return fmt.Errorf("%w: no publish ack within %s", ErrIncomplete, stallAfter)
		}
	}
	for b := p.Next(); b != nil; b = p.Next() {
		if len(futs)-head == pubPending {
			if err := wait(futs[head]); err != nil {
				return msgs, err
			}
			head++
			if head == pubPending {
				futs, head = futs[:copy(futs, futs[head:])], 0
			}
		}
		f, err := js.PublishAsync(benchSubject, b)
		if err != nil {
			return msgs, fmt.Errorf("perf: publish: %w", err)
		}
		futs = append(futs, f)
		msgs++
	}
	for _, f := range futs[head:] {
		if err := wait(f); err != nil {
			return msgs, err
		}
	}
	return msgs, nil
}

// JetStreamResult is one raw JetStream measurement, one record per message.
type JetStreamResult struct {
	Messages   int
	PubElapsed time.Duration
	ConElapsed time.Duration
	ConCPU     time.Duration // CPU time of this process (server and consumer) while consuming
}

// PublishPerSec is the async publish rate in messages per second.
func (r JetStreamResult) PublishPerSec() float64 { return float64(r.Messages) / r.PubElapsed.Seconds() }

// ConsumePerSec is the Fetch + Ack rate in messages per second.
func (r JetStreamResult) ConsumePerSec() float64 { return float64(r.Messages) / r.ConElapsed.Seconds() }

// RawJetStream measures the embedded JetStream server as sluice configures
// it (queue.StartEmbedded with file storage under dir, an in-process
// connection from queue.Connect, the stream and durable consumer from
// queue.Open): the rate of publishing msgs messages of one recordSize-byte
// record each (async, at most 4096 pending), then the rate of consuming them
// with sluice's ack policy: Fetch(500, 200ms) and one Ack per message.
// syncAlways runs the server with queue.sync: always (an fsync before each
// publish is acknowledged) instead of the default interval.
func RawJetStream(ctx context.Context, dir string, msgs, recordSize int, syncAlways bool) (JetStreamResult, error) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := queue.Options{Logger: logger}.WithDefaults()
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{DataDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0", Logger: logger, SyncAlways: syncAlways})
	if err != nil {
		return JetStreamResult{}, err
	}
	defer emb.Shutdown()
	nc, err := queue.Connect(ctx, emb, queue.ConnectOptions{Logger: logger})
	if err != nil {
		return JetStreamResult{}, err
	}
	defer nc.Close()
	src, err := queue.Open(ctx, nc, cfg)
	if err != nil {
		return JetStreamResult{}, err
	}
	_ = src.Close() // it created the stream and the consumer; nothing was fetched
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(pubPending))
	if err != nil {
		return JetStreamResult{}, err
	}

	res := JetStreamResult{Messages: msgs}
	start := time.Now()
	if _, err := publish(ctx, js, &payloads{records: msgs, perMsg: 1, size: recordSize}); err != nil {
		return res, err
	}
	res.PubElapsed = time.Since(start)

	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	if err != nil {
		return res, fmt.Errorf("perf: consumer: %w", err)
	}
	got := 0
	cpu0 := selfCPU()
	start = time.Now()
	lastProgress := start
	for got < msgs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		batch, err := cons.Fetch(fetchBatch, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			return res, fmt.Errorf("perf: fetch: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			if err := m.Ack(); err != nil {
				return res, fmt.Errorf("perf: ack: %w", err)
			}
			n++
		}
		if err := batch.Error(); err != nil {
			return res, fmt.Errorf("perf: fetch: %w", err)
		}
		got += n
		if n > 0 {
			lastProgress = time.Now()
		} else if time.Since(lastProgress) > stallAfter {
			return res, fmt.Errorf("%w: consumption stalled after %d of %d messages", ErrIncomplete, got, msgs)
		}
	}
	res.ConElapsed = time.Since(start)
	res.ConCPU = selfCPU() - cpu0
	return res, nil
}
