package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/internal/backoff"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/tap"
)

var processPoint = fault.Register("pipeline.process",
	"in a worker, before it processes a chunk of messages (delay: slow processing; error/close: the chunk fails and its messages are redelivered)")

// fetchRetry paces the fetches after a failed one.
var fetchRetry = backoff.Policy{Min: 50 * time.Millisecond, Max: 5 * time.Second}

// Pipeline moves records from a Source through a Processor to a Sink.
//
// Its goroutines, all owned by Run: one fetcher (the only caller of
// Source.Fetch), which splits each message into records once and hands
// chunks of whole messages to the workers; Options.Workers workers, which
// process a chunk and hand it to the sink; and one settler, the only caller
// of Source.Ack and Source.Nak, to which every chunk's verdict goes (from a
// worker, or from the sink's done).
type Pipeline struct {
	src  Source
	dlq  DeadLetterer
	proc Processor
	sink Sink
	opts Options
	log  *slog.Logger
	// tooLargeLog rate-limits the log of messages too large for the sink.
	tooLargeLog obs.LimitedLog
	m           *metrics
	bud         *budget
	out         *outcomes  // the settler's inbox
	seq         *sequencer // Options.Ordered: the order of hand-overs to the sink; nil otherwise

	running atomic.Bool

	// pending holds the chunks handed to the sink whose verdict the settler
	// has not taken; on shutdown timeout they are abandoned (nak'ed).
	pendingMu sync.Mutex
	pending   map[*chunk]struct{} // guarded by pendingMu
	idle      chan struct{}       // guarded by pendingMu; closed when pending becomes empty, nil otherwise

	progress  atomic.Uint64 // settled chunks; read by Progress for stall detection
	abandoned int           // messages abandoned at shutdown; owned by the settler, read by Run once it stopped

	// Moving averages of a message's records and bytes; owned by the fetch
	// loop (fetchSize, observe).
	perMsgRecs, perMsgBytes float64
}

// New returns a pipeline. dlq may be nil only if proc never fails and the
// sink never returns ErrTooLarge.
func New(src Source, dlq DeadLetterer, proc Processor, sink Sink, opts Options) *Pipeline {
	opts = opts.WithDefaults()
	p := &Pipeline{
		src: src, dlq: dlq, proc: proc, sink: sink, opts: opts,
		log:     opts.Logger.With(obs.KeyComponent, "pipeline"),
		m:       newMetrics(opts.Registerer),
		bud:     newBudget(opts.MaxInflightRecords, opts.MaxInflightBytes),
		out:     newOutcomes(),
		pending: map[*chunk]struct{}{},
	}
	if opts.Ordered {
		p.seq = newSequencer()
	}
	return p
}

// Progress returns a counter that grows every time a chunk of work is
// settled; a value that stands still while Inflight is non-zero is a stall.
func (p *Pipeline) Progress() uint64 { return p.progress.Load() }

// Inflight returns the records and bytes fetched but not yet settled.
func (p *Pipeline) Inflight() (records, bytes int64) { return p.bud.load() }

// chunk is a run of whole queue messages processed together and delivered as
// one sink frame. It is settled exactly once: acked when its records are
// done, nak'ed otherwise.
type chunk struct {
	msgs []Message
	// recs holds the records of msgs, in order, split once when they were
	// fetched; Data aliases the payloads. After processing, recs holds the
	// records to deliver (compacted in place).
	recs  []record.Record
	in    int64 // records of msgs when fetched: its share of the budget
	bytes int64 // payload bytes of msgs: its share of the budget
	start time.Time
	// done is the sink's done for this chunk: it hands the sink's outcome
	// to the settler. Made at the first Send.
	done func(error)
	// ticket is the chunk's place in the order of hand-overs to the sink
	// (Options.Ordered only; see sequencer).
	ticket uint64
	// settled is set by the settler once it has carried out a verdict;
	// owned by the settler.
	settled bool
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

	// The settler starts before the workers and stops after them: every
	// verdict reaches it.
	stopSettler, settlerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(settlerDone)
		p.settleLoop(stopSettler)
	}()

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
			w := &worker{proc: p.proc.NewWorker()}
			for c := range work {
				if v := p.handle(workCtx, c, w); v != verdictPending {
					p.out.put(c, v)
				}
			}
		}()
	}

	fetchWG.Wait()
	deadline := time.NewTimer(p.opts.ShutdownTimeout)
	defer deadline.Stop()
	p.log.Info("stopped fetching; finishing in-flight work", obs.KeyTimeout, p.opts.ShutdownTimeout)

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
	p.abandonPending()
	close(stopSettler)
	<-settlerDone
	if p.abandoned > 0 {
		p.log.Warn("shutdown deadline passed; left messages for redelivery", obs.KeyMessages, p.abandoned)
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
		if err != nil && ctx.Err() == nil {
			failures++
			p.m.fetchErrors.Inc()
			if failures == 1 {
				p.log.Warn("fetch from queue failed; retrying with backoff", obs.KeyErr, err)
			}
			if err := backoff.Sleep(ctx, fetchRetry.Delay(failures)); err != nil {
				return err
			}
			continue
		}
		if err == nil && failures > 0 {
			p.log.Info("fetch from queue recovered", obs.KeyAttempts, failures)
			failures = 0
		}
		// Once ctx has ended, dispatch hands nothing to the workers: what
		// was fetched is nak'ed at once.
		p.dispatch(ctx, msgs, work)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// dispatch splits each message of msgs into its records, once, groups the
// messages into chunks of about ChunkRecords records (whole messages each)
// and hands each chunk to the workers.
func (p *Pipeline) dispatch(ctx context.Context, msgs []Message, work chan<- *chunk) {
	if len(msgs) == 0 {
		return
	}
	// One array holds the records of the whole batch. The current chunk's
	// records are cur; a chunk handed over keeps its window of the array
	// (capacity cut at its end), and cur moves past it, so appends and
	// growth never touch a window a worker holds.
	est := max(len(msgs), int(p.perMsgRecs*float64(len(msgs)))+1)
	cur := make([]record.Record, 0, est)
	var totalRecs, totalBytes, curBytes int
	first := 0 // the current chunk's messages are msgs[first:i+1]
	for i, m := range msgs {
		d := m.Data()
		var n int
		cur, n = record.Append(cur, m.ID(), d)
		totalRecs += n
		totalBytes += len(d)
		curBytes += len(d)
		// A chunk that m would take past ChunkRecords is handed over
		// without m (unless m is its only message). A redelivered message
		// is a suspect: it goes in a chunk of its own, so that if it keeps
		// failing it does not take its neighbours down with it on the way
		// to max_deliver.
		suspect := redelivered(m)
		if i > first && (len(cur) > p.opts.ChunkRecords || suspect) {
			k := len(cur) - n
			p.handOver(ctx, work, &chunk{msgs: msgs[first:i:i], recs: cur[:k:k], bytes: int64(curBytes - len(d))})
			cur, first, curBytes = cur[k:], i, len(d)
		}
		if suspect && i+1 < len(msgs) {
			p.handOver(ctx, work, &chunk{msgs: msgs[i : i+1 : i+1], recs: cur[:len(cur):len(cur)], bytes: int64(curBytes)})
			cur, first, curBytes = cur[len(cur):], i+1, 0
		}
	}
	p.handOver(ctx, work, &chunk{msgs: msgs[first:len(msgs):len(msgs)], recs: cur, bytes: int64(curBytes)})
	p.observe(len(msgs), totalRecs, totalBytes)
}

// handOver adds c to the in-flight budget and gives it to a worker. Once ctx
// has ended nothing more is given to the workers: c goes to the settler to
// be nak'ed instead, and so does every later chunk of the batch.
func (p *Pipeline) handOver(ctx context.Context, work chan<- *chunk, c *chunk) {
	if p.seq != nil {
		c.ticket = p.seq.ticket()
	}
	c.in = int64(len(c.recs))
	p.bud.add(c.in, c.bytes)
	p.m.inflightRecs.Add(float64(c.in))
	p.m.inflightBytes.Add(float64(c.bytes))
	if p.opts.Tap.Tapping(tap.In) {
		p.tapChunk(tap.In, c)
	}
	if ctx.Err() == nil {
		select {
		case work <- c:
			return
		case <-ctx.Done():
		}
	}
	if p.seq != nil {
		p.seq.finish(c.ticket) // never reaches a worker
	}
	p.out.put(c, verdictNak)
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

// observe updates the moving averages of records and bytes per message with
// a batch of msgs messages holding recs records and bytes payload bytes.
func (p *Pipeline) observe(msgs, recs, bytes int) {
	r, b := float64(recs)/float64(msgs), float64(bytes)/float64(msgs)
	if p.perMsgRecs == 0 {
		p.perMsgRecs, p.perMsgBytes = r, b
		return
	}
	const w = 0.25 // weight of the newest batch
	p.perMsgRecs = (1-w)*p.perMsgRecs + w*r
	p.perMsgBytes = (1-w)*p.perMsgBytes + w*b
}

// handle processes one chunk on a worker and hands its records to the sink.
// It returns the chunk's verdict, or verdictPending when the sink's done
// will give it.
func (p *Pipeline) handle(ctx context.Context, c *chunk, w *worker) verdict {
	c.start = time.Now()
	if p.seq != nil {
		defer p.seq.finish(c.ticket)
	}
	if err := processPoint.Hit(ctx); err != nil {
		// An injected error (or close) fails the whole chunk, like a worker
		// that crashed mid-chunk: its messages are handed back for
		// redelivery. A cancelled delay abandons it the same way.
		if ctx.Err() == nil {
			p.log.Debug("fault point failed a chunk; messages left for redelivery", obs.KeyPoint, processPoint.Name(), obs.KeyMessages, len(c.msgs), obs.KeyErr, err)
		}
		return verdictNak
	}
	out := c.recs[:0] // compacted in place: out never passes the record being read
	var dropped, processed int
	// The worker's output space: the records processing writes point
	// into it until the chunk's Send returned (Send keeps nothing), and
	// the next chunk writes over it.
	buf := w.buf[:0]
	defer func() { w.buf = buf[:0] }()
	wk := w.proc
	ri := 0 // the next record of c.recs (records are in message order)
	for _, m := range c.msgs {
		id := m.ID()
		lo := ri
		for ri < len(c.recs) && c.recs[ri].ID.Msg() == id {
			ri++
		}
		err := p.poison(m)
		if err == nil {
			err = p.proc.CheckMessage(m.Data())
		}
		if err != nil {
			processed += ri - lo
			if derr := p.deadLetter(ctx, m, -1, m.Data(), err); derr != nil {
				p.m.recordsIn.Add(float64(processed))
				p.log.Warn("dead-letter publish failed; message left for redelivery",
					obs.KeyStream, id.Stream, obs.KeySeq, id.Seq, obs.KeyErr, derr)
				return verdictNak
			}
			continue
		}
		subject := m.Subject()
		for _, r := range c.recs[lo:ri] {
			processed++
			var data []byte
			var err error
			data, buf, err = p.process(wk, Input{Subject: subject, ID: r.ID, Data: r.Data}, buf)
			switch {
			case err != nil:
				if derr := p.deadLetter(ctx, m, int(r.ID.Index), r.Data, err); derr != nil {
					p.m.recordsIn.Add(float64(processed))
					p.log.Warn("dead-letter publish failed; message left for redelivery",
						obs.KeyStream, r.ID.Stream, obs.KeySeq, r.ID.Seq, obs.KeyErr, derr)
					return verdictNak
				}
			case data == nil:
				dropped++
			default:
				out = append(out, record.Record{ID: r.ID, Data: data})
			}
		}
	}
	p.m.recordsIn.Add(float64(processed))
	p.m.recordsDropped.Add(float64(dropped))
	c.recs = out
	if p.seq != nil {
		if err := p.seq.turn(ctx, c.ticket); err != nil {
			return verdictNak // shutdown deadline: handed back for redelivery
		}
	}
	return p.send(ctx, c)
}

// send hands c's records to the sink. It returns verdictPending when the
// sink took them (its done gives the verdict), verdictAck when there is
// nothing to send, and verdictNak when the sink refused them.
func (p *Pipeline) send(ctx context.Context, c *chunk) verdict {
	if len(c.recs) == 0 {
		return verdictAck
	}
	if c.done == nil {
		c.done = func(err error) {
			if err != nil {
				p.out.put(c, verdictNak)
				return
			}
			p.out.put(c, verdictAck)
		}
	}
	p.addPending(c)
	err := p.sink.Send(ctx, c.recs, c.done)
	if err == nil {
		if p.opts.Tap.Tapping(tap.Out) {
			p.tapChunk(tap.Out, c)
		}
		return verdictPending
	}
	p.removePending(c)
	if errors.Is(err, ErrTooLarge) {
		return p.tooLarge(ctx, c, err)
	}
	return verdictNak
}

// tooLarge handles a chunk whose Send failed with ErrTooLarge: one of its
// messages cannot fit the sink's limits (one frame, one line), which no
// retry can change, so that
// message is dead-lettered whole and never comes back. Which message it is
// the sink does not say: a chunk of several messages sends each of them on
// its own, and any that fails again comes back here alone.
func (p *Pipeline) tooLarge(ctx context.Context, c *chunk, sendErr error) verdict {
	if len(c.msgs) > 1 {
		for _, part := range p.separate(c) {
			if v := p.send(ctx, part); v != verdictPending {
				p.out.put(part, v)
			}
		}
		return p.send(ctx, c)
	}
	m := c.msgs[0]
	id := m.ID()
	p.m.msgsTooLarge.Inc()
	reason := fmt.Sprintf("message of %d records to deliver (%d bytes of payload) cannot be delivered under the drainer's limits, and a message's records are not split: %v",
		len(c.recs), len(m.Data()), sendErr)
	// Logged at most once a second (the next line says how many were
	// suppressed): a flood of large messages must not flood the log.
	p.tooLargeLog.Log(p.log, ReasonTooLarge, slog.LevelWarn, "queue message too large for the sink; dead-lettering it whole",
		obs.KeyStream, id.Stream, obs.KeySeq, id.Seq, obs.KeyRecords, len(c.recs), obs.KeyBytes, len(m.Data()), obs.KeyErr, sendErr)
	if err := p.deadLetter(ctx, m, -1, m.Data(), &Rejection{Reason: ReasonTooLarge, Step: -1, Rule: ReasonTooLarge, Offset: -1, Msg: reason}); err != nil {
		p.log.Warn("dead-letter publish failed; message left for redelivery",
			obs.KeyStream, id.Stream, obs.KeySeq, id.Seq, obs.KeyErr, err)
		return verdictNak
	}
	c.recs = nil // dead-lettered, not delivered
	return verdictAck
}

// separate cuts every message but the first out of c into a chunk of its
// own and returns those chunks; c keeps its first message. Each new chunk
// takes its message's bytes and, of the budget's records, as many as it
// delivers; c keeps the rest (with the records dropped or dead-lettered),
// so that together they release exactly what c took.
func (p *Pipeline) separate(c *chunk) []*chunk {
	msgs, recs := c.msgs, c.recs
	parts := make([]*chunk, 0, len(msgs)-1)
	lo := 0
	for i, m := range msgs {
		id := m.ID()
		hi := lo
		for hi < len(recs) && recs[hi].ID.Msg() == id {
			hi++
		}
		if i == 0 {
			c.recs = recs[:hi:hi]
		} else {
			part := &chunk{msgs: msgs[i : i+1 : i+1], recs: recs[lo:hi:hi], in: int64(hi - lo), bytes: int64(len(m.Data())), start: c.start}
			c.in -= part.in
			c.bytes -= part.bytes
			parts = append(parts, part)
		}
		lo = hi
	}
	c.msgs = msgs[:1:1]
	return parts
}

// worker is one worker goroutine's state.
type worker struct {
	proc Worker
	buf  []byte // output space reused from chunk to chunk; see handle
}

// deliveryCounter is implemented by messages that know how often the
// queue delivered them (queue.Message).
type deliveryCounter interface{ NumDelivered() uint64 }

// redelivered reports whether m was delivered before.
func redelivered(m Message) bool {
	dc, ok := m.(deliveryCounter)
	return ok && dc.NumDelivered() > 1
}

// poison returns a rejection for a message delivered more than MaxDeliver
// times: one that keeps failing (it crashed sluice, or timed out, every
// time it was processed) goes to the dead-letter subject instead of
// cycling through redelivery.
func (p *Pipeline) poison(m Message) error {
	dc, ok := m.(deliveryCounter)
	if !ok || dc.NumDelivered() <= uint64(p.opts.MaxDeliver) {
		return nil
	}
	id := m.ID()
	p.log.Warn("queue message delivered too many times; dead-lettering it whole",
		obs.KeyStream, id.Stream, obs.KeySeq, id.Seq, obs.KeyDelivered, dc.NumDelivered())
	return &Rejection{Reason: ReasonMaxDeliver, Step: -1, Rule: ReasonMaxDeliver, Offset: -1,
		Msg: fmt.Sprintf("delivered %d times, more than queue.max_deliver (%d): it failed every time (a crash or a timeout while it was processed)", dc.NumDelivered(), p.opts.MaxDeliver)}
}

// process runs wk on in, turning a panic into a rejection of the record
// alone (reason "panic"), so that no input can crash a worker.
func (p *Pipeline) process(wk Worker, in Input, buf []byte) (out, nbuf []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("processing a record panicked; dead-lettering it", obs.KeyStream, in.ID.Stream, obs.KeySeq, in.ID.Seq, obs.KeyErr, r)
			out, nbuf, err = nil, buf, &Rejection{Reason: ReasonPanic, Step: -1, Rule: ReasonPanic, Offset: -1, Msg: fmt.Sprintf("processing panicked: %v", r)}
		}
	}()
	return wk.Process(in, buf)
}

// deadLetter stores rec (index < 0: the whole message) with why; it counts
// the dead letter once the store has accepted it.
func (p *Pipeline) deadLetter(ctx context.Context, m Message, idx int, rec []byte, why error) error {
	if p.dlq == nil {
		return errors.New("no dead-letter destination configured")
	}
	var rej *Rejection
	if !errors.As(why, &rej) {
		rej = &Rejection{Reason: ReasonError, Step: -1, Offset: -1, Msg: why.Error()}
	}
	var err error
	if rd, ok := p.dlq.(RejectionDeadLetterer); ok {
		err = rd.DeadLetterRejection(ctx, m, idx, rec, rej)
	} else {
		err = p.dlq.DeadLetter(ctx, m, idx, rec, rej.Error())
	}
	if err != nil {
		return err
	}
	p.m.deadLettered.Inc()
	p.m.deadLetters.WithLabelValues(reasonLabel(rej.Reason)).Inc()
	if p.opts.Tap.Tapping(tap.Dead) {
		p.tapDead(m, idx, rec, rej.Error())
	}
	return nil
}
