package pipeline

import (
	"sync"
	"time"

	"github.com/sluice-dev/sluice/obs"
)

// verdict is what becomes of a chunk's messages.
type verdict uint8

const (
	// verdictPending: the chunk is at the sink, whose done gives the
	// verdict later (ack or nak).
	verdictPending verdict = iota
	// verdictAck: every record of the chunk is done (delivered, dropped by
	// a filter, or accepted by the dead-letter subject): ack its messages.
	verdictAck
	// verdictNak: the chunk's records are not done and will not be by this
	// attempt: hand its messages back for redelivery.
	verdictNak
	// verdictAbandon: the chunk was still at the sink when the shutdown
	// deadline passed: nak it, and count it as abandoned.
	verdictAbandon
)

// outcome is a verdict on a chunk, on its way to the settler.
type outcome struct {
	c *chunk
	v verdict
}

// outcomes is the settler's inbox: a queue that never blocks the goroutine
// that puts into it (a worker, the fetcher, Run, or the sink's done on the
// sink's connection reader). It is unbounded by count; the in-flight budget
// bounds the chunks that can be in it, each at most twice (its verdict and,
// at shutdown, an abandon).
type outcomes struct {
	mu     sync.Mutex
	queue  []outcome     // guarded by mu
	closed bool          // guarded by mu; the settler has stopped: put drops outcomes
	wake   chan struct{} // capacity 1; a token means queue may be non-empty
}

func newOutcomes() *outcomes { return &outcomes{wake: make(chan struct{}, 1)} }

// put queues v for c and wakes the settler. It never blocks: it holds mu for
// an append only. After the settler has stopped, outcomes are dropped: the
// only ones that can come then are sink dones for chunks already abandoned.
func (o *outcomes) put(c *chunk, v verdict) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.queue = append(o.queue, outcome{c, v})
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default: // a token is already there
	}
}

// take returns the queued outcomes and makes buf (emptied) the new queue,
// so that the two slices are reused in turn. When final is set and nothing
// is queued, the inbox closes.
func (o *outcomes) take(buf []outcome, final bool) []outcome {
	clear(buf)
	o.mu.Lock()
	defer o.mu.Unlock()
	got := o.queue
	o.queue = buf[:0]
	if final && len(got) == 0 {
		o.closed = true
	}
	return got
}

// settleLoop is the settler: the one goroutine, owned by Run, that acks and
// naks the queue messages of every chunk. It settles what it is handed, in
// order, until stop is closed; then it settles everything still queued and
// returns.
func (p *Pipeline) settleLoop(stop <-chan struct{}) {
	var batch []outcome
	for {
		final := false
		select {
		case <-p.out.wake:
		case <-stop:
			final = true
		}
		for {
			batch = p.out.take(batch, final)
			for _, o := range batch {
				p.settle(o.c, o.v)
			}
			// Until stop, one batch per wake-up (a put during it leaves a
			// token); after stop, until the inbox is empty and closed.
			if !final || len(batch) == 0 {
				break
			}
		}
		if final {
			return
		}
	}
}

// settle carries out verdict v on chunk c: it acks or naks c's messages,
// once, releases their budget and counts the chunk. Only the settler calls
// it. A second verdict on the same chunk (a sink's done after shutdown
// abandoned it) is ignored.
func (p *Pipeline) settle(c *chunk, v verdict) {
	p.removePending(c)
	if c.settled {
		return
	}
	c.settled = true
	switch v {
	case verdictAck:
		p.m.recordsOut.Add(float64(len(c.recs)))
		if err := p.src.Ack(c.msgs); err != nil {
			// Not acked: the queue redelivers after its ack wait; the
			// drainer drops the duplicates.
			p.log.Warn("ack to queue failed; messages will be redelivered", obs.KeyMessages, len(c.msgs), obs.KeyErr, err)
		} else {
			p.m.msgsAcked.Add(float64(len(c.msgs)))
		}
	case verdictAbandon:
		p.abandoned += len(c.msgs)
		p.nak(c.msgs)
	default:
		p.nak(c.msgs)
	}
	p.bud.release(c.in, c.bytes)
	p.m.inflightRecs.Sub(float64(c.in))
	p.m.inflightBytes.Sub(float64(c.bytes))
	p.m.batches.Inc()
	if !c.start.IsZero() {
		p.m.batchSeconds.Observe(time.Since(c.start).Seconds())
	}
	p.progress.Add(1)
}

func (p *Pipeline) nak(msgs []Message) {
	if err := p.src.Nak(msgs); err != nil {
		p.log.Warn("nak to queue failed; messages will be redelivered after the ack wait", obs.KeyMessages, len(msgs), obs.KeyErr, err)
		return
	}
	p.m.msgsNaked.Add(float64(len(msgs)))
}

// addPending records that c is at the sink, before Send.
func (p *Pipeline) addPending(c *chunk) {
	p.pendingMu.Lock()
	p.pending[c] = struct{}{}
	p.pendingMu.Unlock()
}

// removePending records that c is no longer at the sink: its Send failed,
// or the settler has its verdict.
func (p *Pipeline) removePending(c *chunk) {
	p.pendingMu.Lock()
	delete(p.pending, c)
	if len(p.pending) == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
	p.pendingMu.Unlock()
}

// waitIdle returns a channel closed once no chunk is at the sink.
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

// abandonPending hands every chunk still at the sink to the settler to be
// nak'ed (verdictAbandon). A chunk whose done has already queued its
// verdict is settled by that verdict, which comes first.
func (p *Pipeline) abandonPending() {
	p.pendingMu.Lock()
	cs := make([]*chunk, 0, len(p.pending))
	for c := range p.pending {
		cs = append(cs, c)
	}
	p.pendingMu.Unlock()
	for _, c := range cs {
		p.out.put(c, verdictAbandon)
	}
}
