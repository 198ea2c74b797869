package load

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/sluice-dev/sluice/internal/backoff"
)

// GenOptions configures Generate. The zero value of each field means its
// documented default; WithDefaults applies them and Validate checks them.
type GenOptions struct {
	Subject    string        // subject to publish to; "" = "ingest.load"
	Count      int64         // records to produce; 0 = until Duration (or ctx)
	Duration   time.Duration // stop producing after this long; 0 = until Count (or ctx)
	Rate       float64       // records per second over all publishers; 0 = as fast as possible
	Burst      int           // rate limiter bucket, in records; 0 = max(PerMessage, Rate/10)
	PerMessage int           // records per queue message; 0 = 1
	Publishers int           // publishing goroutines; 0 = 4
	MaxPending int           // unacknowledged async publishes per publisher; 0 = 256 (keep Publishers×MaxPending within the JetStream context's WithPublishAsyncMaxPending, 4000 by default, or publishes stall and retry)
	RecordSize int           // mean encoded record size in bytes; 0 = 200
	SizeSpread int           // sizes are uniform in RecordSize ± SizeSpread; 0 = all equal
	Keys       int           // partition keys (key = seq mod Keys); 0 = 16
	RunID      string        // run id, see ValidRunID; "" = random
	Invalid    float64       // fraction of records made invalid JSON, in [0, 1]; 0 = none
	Retries    int           // re-publishes of a message whose publish failed; 0 = 3, < 0 = none
	AckTimeout time.Duration // wait for a publish ack before retrying; 0 = 5s
	NoMsgID    bool          // do not set Nats-Msg-Id; retries may then store duplicates

	// Acked, if not nil, is a live counter for progress displays: Generate
	// adds every record the queue acknowledges (valid or invalid) as soon as
	// a publisher sees the ack. Nil: no live counter.
	Acked *atomic.Int64
}

// Defaults, see GenOptions.
const (
	DefaultSubject    = "ingest.load"
	DefaultPerMessage = 1
	DefaultPublishers = 4
	DefaultMaxPending = 256
	DefaultRecordSize = 200
	DefaultKeys       = 16
	DefaultRetries    = 3
	DefaultAckTimeout = 5 * time.Second
	MaxRecordSize     = 1 << 20 // largest RecordSize+SizeSpread accepted
)

// WithDefaults returns o with every zero field set to its default. RunID is
// left empty: Generate draws a random one.
func (o GenOptions) WithDefaults() GenOptions {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Subject == "" {
		o.Subject = DefaultSubject
	}
	def(&o.PerMessage, DefaultPerMessage)
	def(&o.Publishers, DefaultPublishers)
	def(&o.MaxPending, DefaultMaxPending)
	def(&o.RecordSize, DefaultRecordSize)
	def(&o.Keys, DefaultKeys)
	def(&o.Retries, DefaultRetries)
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.Rate > 0 && o.Burst == 0 {
		o.Burst = max(o.PerMessage, int(o.Rate/10))
	}
	return o
}

// Validate checks options that WithDefaults has been applied to. Its errors
// wrap ErrBadOptions.
func (o GenOptions) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadOptions}, args...)...)
	}
	switch {
	case o.Count < 0:
		return bad("count %d < 0", o.Count)
	case o.Duration < 0:
		return bad("duration %v < 0", o.Duration)
	case o.Rate < 0:
		return bad("rate %v < 0", o.Rate)
	case o.Rate > 0 && o.Burst < o.PerMessage:
		return bad("burst %d smaller than per-message %d", o.Burst, o.PerMessage)
	case o.PerMessage < 1, o.Publishers < 1, o.MaxPending < 1, o.Keys < 1:
		return bad("per-message, publishers, max-pending and keys must be >= 1")
	case o.RecordSize < 1 || o.SizeSpread < 0 || o.SizeSpread > o.RecordSize || o.RecordSize+o.SizeSpread > MaxRecordSize:
		return bad("record size %d ± %d out of range (spread <= size, size+spread <= %d)", o.RecordSize, o.SizeSpread, MaxRecordSize)
	case o.RunID != "" && !ValidRunID(o.RunID):
		return bad("run id %q: want 1-64 bytes of [A-Za-z0-9_.:-]", o.RunID)
	case !(o.Invalid >= 0 && o.Invalid <= 1):
		return bad("invalid fraction %v outside [0, 1]", o.Invalid)
	case o.AckTimeout < 0:
		return bad("ack timeout %v < 0", o.AckTimeout)
	}
	return nil
}

// Progress is a snapshot of a running Generate.
type Progress struct {
	Published int64         // records acknowledged so far (valid and invalid)
	Failed    int64         // records given up on so far
	Rate      float64       // records acknowledged per second since the previous snapshot
	Elapsed   time.Duration // since Generate started
}

// SeqRange is an inclusive range of sequence numbers.
type SeqRange struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// Result is what Generate did. Every seq in 1..MaxSeq was either
// acknowledged by the server (Published or Invalid) or is in FailedRanges
// (Failed).
type Result struct {
	RunID           string        `json:"run_id"`
	MaxSeq          int64         `json:"max_seq"`   // records produced: seqs 1..MaxSeq
	Published       int64         `json:"published"` // valid records acknowledged: expected downstream
	Invalid         int64         `json:"invalid"`   // invalid records acknowledged: expected in the dead-letter subject
	InvalidFraction float64       `json:"invalid_fraction"`
	Messages        int64         `json:"messages"` // queue messages acknowledged
	Bytes           int64         `json:"bytes"`    // payload bytes acknowledged
	Failed          int64         `json:"failed"`   // records not acknowledged after the retries: not expected
	FailedRanges    []SeqRange    `json:"failed_ranges,omitempty"`
	Retries         int64         `json:"retries"`              // re-publishes
	LastError       string        `json:"last_error,omitempty"` // the last publish error seen
	Elapsed         time.Duration `json:"elapsed_ns"`
}

// RecordsPerSecond is the acknowledged record rate over the run.
func (r Result) RecordsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Published+r.Invalid) / r.Elapsed.Seconds()
}

// Generate publishes records to JetStream until opts.Count records were
// produced, opts.Duration passed, or ctx is done, whichever comes first,
// then waits (at most opts.AckTimeout) for the outstanding acks.
//
// Publishers share one atomic sequence counter and take PerMessage
// consecutive seqs per message, so seqs are dense. A message whose publish
// fails (an error ack, no ack within AckTimeout, or a client error) is
// re-published, with the same Nats-Msg-Id, up to Retries times; then its
// records are counted in Result.Failed and listed in Result.FailedRanges,
// which Verifier.Expect marks as not expected. Retries stop when ctx is
// done.
//
// progress, if not nil, is called about every 250 ms from one goroutine.
//
// The error is nil when the run ended by Count or Duration, or by ctx when
// neither is set; ctx.Err() when ctx ended a bounded run early;
// ErrNoStream when no stream captures the subject; ErrPublishFailed when
// records were attempted and none was acknowledged. The Result is valid in
// every case but ErrBadOptions and ErrNoStream.
func Generate(ctx context.Context, js jetstream.JetStream, opts GenOptions, progress func(Progress)) (Result, error) {
	o := opts.WithDefaults()
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.RunID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.RunID = "r" + hex.EncodeToString(b[:])
	}
	if _, err := js.StreamNameBySubject(ctx, o.Subject); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return Result{}, fmt.Errorf("%w: %q", ErrNoStream, o.Subject)
		}
		return Result{}, fmt.Errorf("load: look up stream for %q: %w", o.Subject, err)
	}

	g := &generator{js: js, o: o, seed: runSeed(o.RunID), picker: newInvalidPicker(o.RunID, o.Invalid)}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if o.Duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, o.Duration)
	}
	defer cancel()
	if o.Rate > 0 {
		g.lim = rate.NewLimiter(rate.Limit(o.Rate), o.Burst)
	}

	start := time.Now()
	var wg sync.WaitGroup
	for range o.Publishers {
		wg.Go(func() { g.publish(ctx, runCtx) })
	}
	done := make(chan struct{})
	var pwg sync.WaitGroup
	if progress != nil {
		pwg.Go(func() { g.report(start, done, progress) })
	}
	wg.Wait()
	close(done)
	pwg.Wait()

	res := Result{
		RunID:           o.RunID,
		MaxSeq:          g.next.Load(),
		Published:       g.published.Load(),
		Invalid:         g.invalid.Load(),
		InvalidFraction: o.Invalid,
		Messages:        g.messages.Load(),
		Bytes:           g.bytes.Load(),
		Failed:          g.failed.Load(),
		FailedRanges:    mergeRanges(g.failedRanges),
		Retries:         g.retries.Load(),
		Elapsed:         time.Since(start),
	}
	if o.Count > 0 {
		res.MaxSeq = min(res.MaxSeq, o.Count)
	}
	if g.lastErr != nil {
		res.LastError = g.lastErr.Error()
	}
	switch {
	case res.Published+res.Invalid == 0 && res.Failed > 0:
		return res, fmt.Errorf("%w: %d records, last error: %v", ErrPublishFailed, res.Failed, g.lastErr)
	case g.interrupted.Load() && (o.Count > 0 || o.Duration > 0):
		return res, ctx.Err()
	}
	return res, nil
}

// generator is the state shared by the publishers of one Generate call.
type generator struct {
	js     jetstream.JetStream
	o      GenOptions
	seed   uint64
	picker invalidPicker
	lim    *rate.Limiter // nil when unlimited

	next      atomic.Int64 // last reserved seq
	published atomic.Int64
	invalid   atomic.Int64
	messages  atomic.Int64
	bytes     atomic.Int64
	failed    atomic.Int64
	retries   atomic.Int64
	// interrupted is set when a publisher stopped because ctx was done
	// (not because Count or Duration was reached).
	interrupted atomic.Bool

	mu           sync.Mutex
	failedRanges []SeqRange // guarded by mu
	lastErr      error      // guarded by mu
}

// outMsg is one queue message in flight.
type outMsg struct {
	first, last int64 // seqs it carries
	invalid     int64 // how many of them are invalid
	data        []byte
	id          string // Nats-Msg-Id
	fut         jetstream.PubAckFuture
	deadline    time.Time // ack expected by then
	attempts    int       // re-publishes so far
	shared      bool      // data may still be referenced by an abandoned future: do not reuse
}

// publisher is one publishing goroutine's own state.
type publisher struct {
	g     *generator
	queue []*outMsg // FIFO of unacknowledged messages, oldest first
	free  [][]byte  // payload buffers to reuse
	timer *time.Timer
}

func (g *generator) noteErr(err error) {
	g.mu.Lock()
	g.lastErr = err
	g.mu.Unlock()
}

func (g *generator) publish(ctx, runCtx context.Context) {
	p := &publisher{g: g, timer: time.NewTimer(time.Hour)}
	defer p.timer.Stop()
	n := int64(g.o.PerMessage)
	for {
		if runCtx.Err() != nil || g.lim != nil && g.lim.WaitN(runCtx, int(n)) != nil {
			if ctx.Err() != nil {
				g.interrupted.Store(true)
			}
			break
		}
		last := g.next.Add(n)
		first := last - n + 1
		if g.o.Count > 0 {
			if first > g.o.Count {
				break
			}
			last = min(last, g.o.Count)
		}
		p.send(ctx, p.build(first, last))
		p.resolveReady(ctx)
		for len(p.queue) >= g.o.MaxPending {
			p.resolve(ctx)
		}
	}
	for len(p.queue) > 0 {
		p.resolve(ctx)
	}
}

// build encodes the records first..last into one message.
func (p *publisher) build(first, last int64) *outMsg {
	g := p.g
	var buf []byte
	if k := len(p.free); k > 0 {
		buf, p.free = p.free[k-1][:0], p.free[:k-1]
	} else {
		buf = make([]byte, 0, int(last-first+1)*(g.o.RecordSize+g.o.SizeSpread+1))
	}
	m := &outMsg{first: first, last: last}
	ts := time.Now().UnixNano()
	for seq := first; seq <= last; seq++ {
		if seq > first {
			buf = append(buf, '\n')
		}
		r := Record{
			Run:  g.o.RunID,
			Seq:  seq,
			Key:  int(seq % int64(g.o.Keys)),
			TS:   ts,
			Size: recordSize(g.seed, seq, g.o.RecordSize, g.o.SizeSpread),
		}
		if g.o.Invalid > 0 && g.picker.invalid(seq) {
			r.Invalid = true
			m.invalid++
		}
		buf = AppendRecord(buf, r)
	}
	m.data = buf
	if !g.o.NoMsgID {
		m.id = g.o.RunID + "-" + strconv.FormatInt(first, 10)
	}
	return m
}

// publishBackoff spaces the re-publishes of a message after client-side
// errors.
var publishBackoff = backoff.Policy{Min: 5 * time.Millisecond, Max: 200 * time.Millisecond}

// send publishes m and queues it for its ack, retrying client-side errors
// with a short backoff.
func (p *publisher) send(ctx context.Context, m *outMsg) {
	g := p.g
	for {
		var fut jetstream.PubAckFuture
		var err error
		if m.id != "" {
			fut, err = g.js.PublishAsync(g.o.Subject, m.data, jetstream.WithMsgID(m.id))
		} else {
			fut, err = g.js.PublishAsync(g.o.Subject, m.data)
		}
		if err == nil {
			m.fut, m.deadline = fut, time.Now().Add(g.o.AckTimeout)
			p.queue = append(p.queue, m)
			return
		}
		g.noteErr(err)
		if !p.retry(ctx, m) {
			return
		}
		p.timer.Reset(publishBackoff.Delay(m.attempts))
		select {
		case <-p.timer.C:
		case <-ctx.Done():
			p.fail(m)
			return
		}
	}
}

// retry counts one more attempt for m, or fails it when the attempts are
// used up or ctx is done.
func (p *publisher) retry(ctx context.Context, m *outMsg) bool {
	if m.attempts >= p.g.o.Retries || ctx.Err() != nil {
		p.fail(m)
		return false
	}
	m.attempts++
	p.g.retries.Add(1)
	return true
}

func (p *publisher) fail(m *outMsg) {
	g := p.g
	g.failed.Add(m.last - m.first + 1)
	g.mu.Lock()
	g.failedRanges = append(g.failedRanges, SeqRange{m.first, m.last})
	g.mu.Unlock()
}

// resolve waits for the oldest message's ack, and accounts for it or
// re-publishes it.
func (p *publisher) resolve(ctx context.Context) {
	m := p.pop()
	p.timer.Reset(time.Until(m.deadline))
	select {
	case <-m.fut.Ok():
		p.acked(m)
	case err := <-m.fut.Err():
		p.failed(ctx, m, err)
	case <-p.timer.C:
		m.shared = true // the abandoned future may still re-send m.data
		p.failed(ctx, m, ErrAckTimeout)
	}
}

// resolveReady accounts for the oldest messages whose outcome is already
// known, without waiting, so that the counters (GenOptions.Acked above all)
// follow the acks as they arrive rather than only when the queue of
// unacknowledged messages is full.
func (p *publisher) resolveReady(ctx context.Context) {
	for len(p.queue) > 0 {
		m := p.queue[0]
		select {
		case <-m.fut.Ok():
			p.pop()
			p.acked(m)
		case err := <-m.fut.Err():
			p.pop()
			p.failed(ctx, m, err)
		default:
			return
		}
	}
}

// pop removes the oldest message from the queue.
func (p *publisher) pop() *outMsg {
	m := p.queue[0]
	p.queue[0] = nil
	p.queue = p.queue[1:]
	return m
}

// acked accounts for a message the queue acknowledged.
func (p *publisher) acked(m *outMsg) {
	g := p.g
	n := m.last - m.first + 1
	g.published.Add(n - m.invalid)
	g.invalid.Add(m.invalid)
	g.messages.Add(1)
	g.bytes.Add(int64(len(m.data)))
	if g.o.Acked != nil {
		g.o.Acked.Add(n)
	}
	if !m.shared && len(p.free) < g.o.MaxPending {
		p.free = append(p.free, m.data)
	}
}

// failed notes a failed publish of m and re-publishes it if it has attempts
// left.
func (p *publisher) failed(ctx context.Context, m *outMsg, err error) {
	p.g.noteErr(err)
	if p.retry(ctx, m) {
		p.send(ctx, m)
	}
}

// report calls progress every 250 ms until done is closed.
func (g *generator) report(start time.Time, done <-chan struct{}, progress func(Progress)) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	prevN, prevT := int64(0), start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			n := g.published.Load() + g.invalid.Load()
			progress(Progress{
				Published: n,
				Failed:    g.failed.Load(),
				Rate:      float64(n-prevN) / now.Sub(prevT).Seconds(),
				Elapsed:   now.Sub(start),
			})
			prevN, prevT = n, now
		}
	}
}

// mergeRanges sorts ranges and joins adjacent or overlapping ones.
func mergeRanges(rs []SeqRange) []SeqRange {
	if len(rs) == 0 {
		return nil
	}
	rs = append([]SeqRange(nil), rs...)
	slices.SortFunc(rs, func(a, b SeqRange) int { return cmp.Compare(a.First, b.First) })
	out := rs[:1]
	for _, r := range rs[1:] {
		if l := &out[len(out)-1]; r.First <= l.Last+1 {
			l.Last = max(l.Last, r.Last)
		} else {
			out = append(out, r)
		}
	}
	return out
}
