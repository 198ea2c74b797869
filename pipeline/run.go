package pipeline

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/record"
)

var processPoint = fault.Register("pipeline.process",
	"in a worker, before it processes a chunk of messages (delay: slow processing; error/close: the chunk fails and its messages are redelivered)")

// Options configures a Pipeline. The zero value of each field means its
// default.
type Options struct {
	Workers            int           // processing goroutines; 0: runtime.NumCPU()
	BatchSize          int           // most messages per fetch; 0: 500
	FetchWait          time.Duration // longest wait for a fetch's first message; 0: 200ms
	MaxInflightRecords int64         // records fetched but not settled; 0: 50000
	MaxInflightBytes   int64         // their message bytes; 0: 16 MiB
	// ChunkRecords is the target number of records per sink frame; a chunk
	// always holds whole messages. 0: 1024.
	ChunkRecords int
	// ShutdownTimeout bounds how long Run waits, after ctx ends, for
	// in-flight work to be delivered before abandoning it. 0: 10s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger          // nil: slog.Default()
	Registerer      prometheus.Registerer // nil: a private registry
}

func (o *Options) setDefaults() {
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.FetchWait <= 0 {
		o.FetchWait = 200 * time.Millisecond
	}
	if o.MaxInflightRecords <= 0 {
		o.MaxInflightRecords = 50000
	}
	if o.MaxInflightBytes <= 0 {
		o.MaxInflightBytes = 16 << 20
	}
	if o.ChunkRecords <= 0 {
		o.ChunkRecords = 1024
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
}

// Pipeline moves records from a Source through a Processor to a Sink.
type Pipeline struct {
	src  Source
	dlq  DeadLetterer
	proc Processor
	sink Sink
	opts Options
	log  *slog.Logger
	m    *metrics
	bud  *budget

	running atomic.Bool

	// pending holds the chunks handed to the sink whose done has not been
	// called; on shutdown timeout they are abandoned (nak'ed).
	pendingMu sync.Mutex
	pending   map[*chunk]struct{} // guarded by pendingMu
	idle      chan struct{}       // guarded by pendingMu; closed when pending becomes empty, nil otherwise

	progress atomic.Uint64 // settled chunks; read by Progress for stall detection

	// Moving averages of a message's records and bytes; owned by the fetch
	// loop (fetchSize, observe).
	perMsgRecs, perMsgBytes float64
}

// New returns a pipeline. dlq may be nil only if proc never fails.
func New(src Source, dlq DeadLetterer, proc Processor, sink Sink, opts Options) *Pipeline {
	opts.setDefaults()
	return &Pipeline{
		src: src, dlq: dlq, proc: proc, sink: sink, opts: opts,
		log:     opts.Logger.With("component", "pipeline"),
		m:       newMetrics(opts.Registerer),
		bud:     newBudget(opts.MaxInflightRecords, opts.MaxInflightBytes),
		pending: map[*chunk]struct{}{},
	}
}

// Progress returns a counter that grows every time a chunk of work is
// settled; a value that stands still while Inflight is non-zero is a stall.
func (p *Pipeline) Progress() uint64 { return p.progress.Load() }

// Inflight returns the records and bytes fetched but not yet settled.
func (p *Pipeline) Inflight() (records, bytes int64) { return p.bud.load() }

// chunk is a run of whole queue messages processed together and delivered as
// one sink frame. It is settled exactly once: acked when its frame is
// delivered, nak'ed otherwise.
type chunk struct {
	msgs    []Message
	recs    int64 // records counted in msgs (for the budget)
	bytes   int64 // payload bytes of msgs
	start   time.Time
	settled atomic.Bool
}

// Run fetches and processes until ctx ends, then shuts down gracefully: it
// stops fetching, lets the workers finish what they hold, waits up to
// ShutdownTimeout for the sink to deliver it, and hands back anything still
// undelivered for redelivery. It returns nil after a clean shutdown.
func (p *Pipeline) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	// Workers keep working after ctx ends, until the shutdown deadline.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	work := make(chan *chunk, p.opts.Workers)
	var fetchErr error
	var fetchWG, workWG sync.WaitGroup
	fetchWG.Add(1)
	go func() {
		defer fetchWG.Done()
		defer close(work) // the producer closes its channel
		fetchErr = p.fetchLoop(ctx, work)
	}()
	for range p.opts.Workers {
		workWG.Add(1)
		go func() {
			defer workWG.Done()
			for c := range work {
				p.handle(workCtx, c)
			}
		}()
	}

	fetchWG.Wait()
	deadline := time.NewTimer(p.opts.ShutdownTimeout)
	defer deadline.Stop()
	p.log.Info("stopped fetching; finishing in-flight work", "timeout", p.opts.ShutdownTimeout)

	workersDone := make(chan struct{})
	go func() { workWG.Wait(); close(workersDone) }()
	select {
	case <-workersDone:
	case <-deadline.C:
		cancelWork()
		<-workersDone
	}
	select {
	case <-p.waitIdle():
	case <-deadline.C:
	}
	if n := p.abandonPending(); n > 0 {
		p.log.Warn("shutdown deadline passed; left messages for redelivery", "messages", n)
	}
	if fetchErr != nil && !errors.Is(fetchErr, context.Canceled) {
		return fetchErr
	}
	return nil
}

// fetchLoop is the one goroutine that calls Source.Fetch.
func (p *Pipeline) fetchLoop(ctx context.Context, work chan<- *chunk) error {
	var failures int
	for {
		if err := p.bud.waitRoom(ctx); err != nil {
			return err
		}
		msgs, err := p.src.Fetch(ctx, p.fetchSize(), p.opts.FetchWait)
		if ctx.Err() != nil {
			// Fetched but not processed: hand them straight back.
			if len(msgs) > 0 {
				p.nak(msgs)
			}
			return ctx.Err()
		}
		if err != nil {
			failures++
			p.m.fetchErrors.Inc()
			if failures == 1 {
				p.log.Warn("fetch from queue failed; retrying with backoff", "err", err)
			}
			if err := sleepCtx(ctx, backoff(failures, 50*time.Millisecond, 5*time.Second)); err != nil {
				return err
			}
			continue
		}
		if failures > 0 {
			p.log.Info("fetch from queue recovered", "failed_attempts", failures)
			failures = 0
		}
		p.observe(msgs)
		for _, c := range p.split(msgs) {
			p.bud.add(c.recs, c.bytes)
			p.m.inflightRecs.Add(float64(c.recs))
			p.m.inflightBytes.Add(float64(c.bytes))
			select {
			case work <- c:
			case <-ctx.Done():
				p.settle(c, false)
				// The rest of this batch was never handed over either.
				continue
			}
		}
	}
}

// fetchSize sizes the next fetch to half the room left in the in-flight
// budget, using the records and bytes per message seen so far, so that a
// fetch of large messages (many records each) does not overshoot the bound
// by a whole batch and at least two fetches overlap. The very first fetch
// takes one message. Always at least 1, at most BatchSize. Called only from the fetch loop.
func (p *Pipeline) fetchSize() int {
	if p.perMsgRecs == 0 {
		return 1 // nothing known about the messages yet: look at one first
	}
	recs, bytes := p.bud.load()
	n := p.opts.BatchSize
	if p.perMsgRecs > 0 {
		if k := int(float64(p.opts.MaxInflightRecords-recs) / 2 / p.perMsgRecs); k < n {
			n = k
		}
	}
	if p.perMsgBytes > 0 {
		if k := int(float64(p.opts.MaxInflightBytes-bytes) / 2 / p.perMsgBytes); k < n {
			n = k
		}
	}
	return max(n, 1)
}

// observe updates the moving averages of records and bytes per message.
func (p *Pipeline) observe(msgs []Message) {
	if len(msgs) == 0 {
		return
	}
	var recs, bytes int
	for _, m := range msgs {
		d := m.Data()
		recs += countRecords(d)
		bytes += len(d)
	}
	r, b := float64(recs)/float64(len(msgs)), float64(bytes)/float64(len(msgs))
	if p.perMsgRecs == 0 {
		p.perMsgRecs, p.perMsgBytes = r, b
		return
	}
	const w = 0.25 // weight of the newest batch
	p.perMsgRecs = (1-w)*p.perMsgRecs + w*r
	p.perMsgBytes = (1-w)*p.perMsgBytes + w*b
}

// split groups msgs into chunks of about ChunkRecords records, whole messages
// each.
func (p *Pipeline) split(msgs []Message) []*chunk {
	var out []*chunk
	var cur *chunk
	for _, m := range msgs {
		d := m.Data()
		n := int64(countRecords(d))
		if cur == nil || cur.recs+n > int64(p.opts.ChunkRecords) && len(cur.msgs) > 0 {
			cur = &chunk{}
			out = append(out, cur)
		}
		cur.msgs = append(cur.msgs, m)
		cur.recs += n
		cur.bytes += int64(len(d))
	}
	return out
}

func countRecords(d []byte) int {
	if len(d) == 0 {
		return 0
	}
	n := bytes.Count(d, newline)
	if d[len(d)-1] != '\n' {
		n++
	}
	return n
}

var newline = []byte{'\n'}

// handle processes one chunk on a worker and hands its frame to the sink.
func (p *Pipeline) handle(ctx context.Context, c *chunk) {
	c.start = time.Now()
	if err := processPoint.Hit(ctx); err != nil {
		// An injected error (or close) fails the whole chunk, like a worker
		// that crashed mid-chunk: its messages are handed back for
		// redelivery. A cancelled delay abandons it the same way.
		if ctx.Err() == nil {
			p.log.Debug("fault point failed a chunk; messages left for redelivery", "point", processPoint.Name(), "messages", len(c.msgs), "err", err)
		}
		p.settle(c, false)
		return
	}
	recs := make([]record.Record, 0, c.recs)
	var dropped int
	for _, m := range c.msgs {
		d := m.Data()
		for idx := 0; len(d) > 0; idx++ {
			var line []byte
			if i := bytes.IndexByte(d, '\n'); i >= 0 {
				line, d = d[:i], d[i+1:]
			} else {
				line, d = d, nil
			}
			if len(line) == 0 {
				continue // blank line: nothing to deliver
			}
			p.m.recordsIn.Inc()
			out, err := p.proc.Process(line)
			switch {
			case err != nil:
				if derr := p.deadLetter(ctx, m, idx, line, err); derr != nil {
					p.log.Warn("dead-letter publish failed; message left for redelivery",
						"stream", m.Stream(), "seq", m.Seq(), "err", derr)
					p.settle(c, false)
					return
				}
			case out == nil:
				dropped++
			default:
				recs = append(recs, record.Record{
					ID:   record.ID{Stream: m.Stream(), Seq: m.Seq(), Index: uint32(idx)},
					Data: out,
				})
			}
		}
	}
	p.m.recordsDropped.Add(float64(dropped))
	if len(recs) == 0 {
		p.settle(c, true)
		return
	}
	p.addPending(c)
	n := len(recs)
	err := p.sink.Send(ctx, recs, func(err error) {
		p.removePending(c)
		if err == nil {
			p.m.recordsOut.Add(float64(n))
		}
		p.settle(c, err == nil)
	})
	if err != nil {
		p.removePending(c)
		p.settle(c, false)
	}
}

func (p *Pipeline) deadLetter(ctx context.Context, m Message, idx int, rec []byte, reason error) error {
	if p.dlq == nil {
		return errors.New("no dead-letter destination configured")
	}
	if err := p.dlq.DeadLetter(ctx, m, idx, rec, reason.Error()); err != nil {
		return err
	}
	p.m.deadLettered.Inc()
	return nil
}

// settle acks (delivered) or naks the chunk's messages, once, and releases
// its budget.
func (p *Pipeline) settle(c *chunk, delivered bool) {
	if !c.settled.CompareAndSwap(false, true) {
		return
	}
	if delivered {
		if err := p.src.Ack(c.msgs); err != nil {
			// Not acked: the queue redelivers after its ack wait; the
			// drainer drops the duplicates.
			p.log.Warn("ack to queue failed; messages will be redelivered", "messages", len(c.msgs), "err", err)
		} else {
			p.m.msgsAcked.Add(float64(len(c.msgs)))
		}
	} else {
		p.nak(c.msgs)
	}
	p.bud.release(c.recs, c.bytes)
	p.m.inflightRecs.Sub(float64(c.recs))
	p.m.inflightBytes.Sub(float64(c.bytes))
	p.m.batches.Inc()
	if !c.start.IsZero() {
		p.m.batchSeconds.Observe(time.Since(c.start).Seconds())
	}
	p.progress.Add(1)
}

func (p *Pipeline) nak(msgs []Message) {
	if err := p.src.Nak(msgs); err != nil {
		p.log.Warn("nak to queue failed; messages will be redelivered after the ack wait", "messages", len(msgs), "err", err)
		return
	}
	p.m.msgsNaked.Add(float64(len(msgs)))
}

func (p *Pipeline) addPending(c *chunk) {
	p.pendingMu.Lock()
	p.pending[c] = struct{}{}
	p.pendingMu.Unlock()
}

func (p *Pipeline) removePending(c *chunk) {
	p.pendingMu.Lock()
	delete(p.pending, c)
	if len(p.pending) == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
	p.pendingMu.Unlock()
}

// waitIdle returns a channel closed once no chunk is waiting on the sink.
func (p *Pipeline) waitIdle() <-chan struct{} {
	p.pendingMu.Lock()
	defer p.pendingMu.Unlock()
	ch := make(chan struct{})
	if len(p.pending) == 0 {
		close(ch)
		return ch
	}
	p.idle = ch
	return ch
}

// abandonPending naks every chunk still waiting on the sink and returns the
// number of messages handed back.
func (p *Pipeline) abandonPending() int {
	p.pendingMu.Lock()
	cs := make([]*chunk, 0, len(p.pending))
	for c := range p.pending {
		cs = append(cs, c)
	}
	p.pending = map[*chunk]struct{}{}
	p.pendingMu.Unlock()
	var n int
	for _, c := range cs {
		if !c.settled.Load() {
			n += len(c.msgs)
		}
		p.settle(c, false)
	}
	return n
}

// backoff returns a capped exponential delay with full jitter for the n-th
// consecutive failure (n >= 1).
func backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
