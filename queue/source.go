package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/record"
)

// Fault points.
var (
	fetchPoint     = fault.Register("queue.fetch", "before each fetch from JetStream; error = a transient fetch error, delay = slow fetching")
	ackBeforePoint = fault.Register("queue.ack.before", "before acking a group of messages; error = the group is not acked")
)

// Headers set on dead letters.
const (
	// HeaderReason is why the record was rejected: one line, at most 1 KiB.
	HeaderReason = "Sluice-Reason"
	// HeaderSourceStream is the name of the stream the message came from.
	HeaderSourceStream = "Sluice-Source-Stream"
	// HeaderSourceEpoch is that stream's incarnation (record.MsgID.Epoch,
	// its creation time in Unix nanoseconds), in decimal.
	HeaderSourceEpoch = "Sluice-Source-Epoch"
	// HeaderSourceSubject is the subject the message was published on.
	HeaderSourceSubject = "Sluice-Source-Subject"
	// HeaderSourceSeq is the message's sequence in its stream, in decimal.
	HeaderSourceSeq = "Sluice-Source-Seq"
	// HeaderRecordIndex is the 0-based index of the record within its
	// message, in decimal. A dead letter holding the whole message payload
	// (DeadLetter with a negative index) has no HeaderRecordIndex.
	HeaderRecordIndex = "Sluice-Record-Index"
	// HeaderReasonCode is the reason's short code from a closed set, the
	// reason label of sluice_dead_letters_total: a rule of the JSON gate
	// ("invalid_utf8", "max_depth", …), "rejected" (a reject step),
	// "step_error", "panic", "too_large", "max_deliver" or "error".
	HeaderReasonCode = "Sluice-Reason-Code"
	// HeaderStep is the index in process.steps of the step that rejected
	// the record, in decimal; absent when no step did (the JSON gate, the
	// pipeline).
	HeaderStep = "Sluice-Step"
	// HeaderRule is the rule broken: the gate's rule or the step's kind.
	HeaderRule = "Sluice-Rule"
	// HeaderOffset is the byte offset in the record where the rule broke,
	// in decimal; absent when there is none.
	HeaderOffset = "Sluice-Offset"
)

// NakDelay is how long a nak'ed message waits before redelivery, so a
// message that fails because of a passing condition does not spin.
const NakDelay = 100 * time.Millisecond

// maxPullExpiry caps each pull request's expiry. Fetch re-issues pulls
// until its maxWait is over, so a long maxWait costs one pull a second when
// idle, while a pull left over from an earlier call (and Close, which waits
// for it) never lingers for long.
const maxPullExpiry = time.Second

// lingerGap is how long Fetch waits for the next message of a batch once it
// has the first: a pause this long ends the batch. Under load a pull's
// messages arrive microseconds apart, so batches fill; when idle it delays a
// lone message by at most this much.
const lingerGap = time.Millisecond

// errCodeWorkQueueOneConsumer is JetStream's error for a second consumer
// on a work-queue stream ("multiple non-filtered consumers not allowed on
// workqueue stream").
const errCodeWorkQueueOneConsumer jetstream.ErrorCode = 10099

// maxReasonLen caps the Sluice-Reason header.
const maxReasonLen = 1024

var (
	_ pipeline.Source                = (*Source)(nil)
	_ pipeline.DeadLetterer          = (*Source)(nil)
	_ pipeline.RejectionDeadLetterer = (*Source)(nil)
)

// Source consumes one durable pull consumer and dead-letters to one
// subject. Fetch is called from one goroutine at a time; Ack, Nak and
// DeadLetter from any goroutine.
type Source struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream // the consumed stream
	cons   jetstream.Consumer
	cfg    Options // with defaults applied
	log    *slog.Logger
	m      *metrics
	// epoch is the consumed stream's incarnation, its creation time in Unix
	// nanoseconds, read once by Open; every fetched message carries it. A
	// stream deleted and created again while the Source runs is not
	// noticed by Fetch (its messages keep this epoch); Last reports it.
	epoch uint64

	prefetch bool
	gap      time.Duration // lingerGap; tests change it (export_test.go)

	fetchMu sync.Mutex // serialises Fetch and Close; guards cur and closed
	cur     *pull      // the pull request in flight or not yet drained; nil: none
	closed  bool
}

// pull is one JetStream pull request (one jetstream Fetch call).
type pull struct {
	batch    jetstream.MessageBatch
	msgs     <-chan jetstream.Msg // closed by the jetstream package when the pull ends
	size     int                  // messages requested
	received int                  // messages taken from msgs
	issued   time.Time
}

// Open prepares JetStream for consumption and returns a Source:
//
//   - the stream opts.Stream capturing opts.Subjects: file storage,
//     work-queue retention (a message leaves the stream once acknowledged),
//     opts.MaxBytes, opts.MaxAge and opts.Discard; created when missing;
//   - the dead-letter stream opts.DeadLetterStream capturing only
//     opts.DeadLetterSubject: file storage, limits retention,
//     opts.DeadLetterMaxBytes, DeadLetterMaxAge and DeadLetterDiscard;
//     created when missing; a dead-letter subject that the consumed
//     subjects capture is an error wrapping ErrDeadLetterConsumed;
//   - the durable pull consumer opts.Consumer (explicit acks, opts.AckWait,
//     opts.MaxAckPending, deliver all), created or updated.
//
// An existing stream with other subjects is an error wrapping
// ErrStreamMismatch, and so is one with another retention, discard policy
// or limits (one an earlier version created, say): the error lists each
// difference and how to migrate. With opts.Migrate set, Open migrates such
// a stream instead, never dropping a stored message (see Options.Migrate).
//
// Open reads the stream's creation time, the epoch that every fetched
// message's ID carries. Zero fields of opts take their defaults
// (Options.WithDefaults). Open does not take ownership of nc; close it
// after the Source.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Source, error) {
	cfg := opts.WithDefaults()
	if err := checkSubjects(cfg); err != nil {
		return nil, err
	}
	if err := checkDiscard("queue.discard", cfg.Discard); err != nil {
		return nil, err
	}
	if err := checkDiscard("queue.dead_letter_discard", cfg.DeadLetterDiscard); err != nil {
		return nil, err
	}
	if err := checkStorage(cfg.Storage); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("queue: JetStream client: %w", err)
	}
	log := cfg.Logger.With(obs.KeyComponent, component)
	stream, err := ensureStream(ctx, js, inputSpec(cfg), cfg, log)
	if err != nil {
		return nil, err
	}
	if _, err := ensureStream(ctx, js, deadLetterSpec(cfg), cfg, log); err != nil {
		return nil, err
	}
	ccfg := jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "sluice",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	var cons jetstream.Consumer
	if cfg.Bind {
		cons, err = bindConsumer(ctx, js, cfg, ccfg)
		if err != nil {
			return nil, err
		}
	} else {
		cons, err = js.CreateOrUpdateConsumer(ctx, cfg.Stream, ccfg)
	}
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeWorkQueueOneConsumer {
			return nil, fmt.Errorf("queue: create durable consumer %q on stream %q: %w (the stream is a work queue, which allows one consumer: every sluice instance must use the same queue.consumer; remove the other consumer with nats consumer rm %s NAME if it is no longer used)", cfg.Consumer, cfg.Stream, err, cfg.Stream)
		}
		return nil, fmt.Errorf("queue: create durable consumer %q on stream %q: %w (an existing consumer of that name with another delivery policy or a push consumer cannot be reused; set queue.consumer)", cfg.Consumer, cfg.Stream, err)
	}
	s := &Source{
		nc:       nc,
		js:       js,
		stream:   stream,
		cons:     cons,
		cfg:      cfg,
		log:      cfg.Logger.With(obs.KeyComponent, component, obs.KeyStream, cfg.Stream, obs.KeyConsumer, cfg.Consumer),
		m:        newMetrics(cfg.Registerer),
		epoch:    epochOf(stream.CachedInfo()),
		prefetch: !cfg.DisablePrefetch,
		gap:      lingerGap,
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(newReconnectCollector(s)); err != nil {
			return nil, fmt.Errorf("queue: register the reconnect metric: %w", err)
		}
	}
	s.log.Info("consuming", obs.KeyEpoch, s.epoch, obs.KeySubjects, cfg.Subjects, obs.KeyDeadLetterSubject, cfg.DeadLetterSubject, obs.KeyAckWait, cfg.AckWait, obs.KeyMaxAckPending, cfg.MaxAckPending,
		obs.KeyMaxBytes, formatBytes(maxBytes(cfg.MaxBytes)), obs.KeyMaxAge, formatAge(cfg.MaxAge), obs.KeyDiscard, cfg.Discard)
	return s, nil
}

// epochOf is the incarnation of the stream described by info: its creation
// time in Unix nanoseconds, or 0 (unknown) when the server did not say.
func epochOf(info *jetstream.StreamInfo) uint64 {
	if info == nil || info.Created.IsZero() || info.Created.UnixNano() <= 0 {
		return 0
	}
	return uint64(info.Created.UnixNano())
}

// Last returns the identity of the newest message in the consumed stream
// right now: its name, its epoch and its last sequence (0 when the stream
// has never held a message). A drainer that committed a higher sequence
// for the same stream and epoch has seen messages the stream no longer
// knows: the stream's store lost its tail.
//
// Errors: ctx.Err() once ctx is done; an error wrapping ErrStreamRecreated
// when the stream was deleted and created again since Open (its epoch
// changed: fetched messages would carry the old one); otherwise an error
// wrapping ErrNotConnected or the JetStream API error.
func (s *Source) Last(ctx context.Context) (record.MsgID, error) {
	if !s.nc.IsConnected() {
		return record.MsgID{}, fmt.Errorf("last sequence of stream %q: %w", s.cfg.Stream, ErrNotConnected)
	}
	info, err := s.stream.Info(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return record.MsgID{}, ctx.Err()
		}
		return record.MsgID{}, fmt.Errorf("last sequence of stream %q: %w", s.cfg.Stream, err)
	}
	if now := epochOf(info); now != s.epoch {
		return record.MsgID{}, fmt.Errorf("%w: stream %q was created at epoch %d when sluice started and at epoch %d now; restart sluice so that its records carry the new epoch", ErrStreamRecreated, s.cfg.Stream, s.epoch, now)
	}
	return record.MsgID{Stream: s.cfg.Stream, Epoch: s.epoch, Seq: info.State.LastSeq}, nil
}

// bindConsumer looks up the existing durable consumer (queue.create:
// false) and checks what sluice relies on: explicit acks, a pull consumer,
// and the configured ack wait and max ack pending.
func bindConsumer(ctx context.Context, js jetstream.JetStream, cfg Options, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cons, err := js.Consumer(ctx, cfg.Stream, cfg.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("%w: durable consumer %q on stream %q does not exist and queue.create is false, so sluice does not create it: create it (pull, ack policy explicit, ack wait %s, max ack pending %d) or set queue.create: true", ErrStreamMismatch, cfg.Consumer, cfg.Stream, want.AckWait, want.MaxAckPending)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: look up durable consumer %q on stream %q: %w", cfg.Consumer, cfg.Stream, err)
	}
	have := cons.CachedInfo().Config
	var diffs []string
	if have.AckPolicy != want.AckPolicy {
		diffs = append(diffs, fmt.Sprintf("ack policy %s on the consumer, %s needed (sluice acks each message on its own)", have.AckPolicy, want.AckPolicy))
	}
	if have.DeliverSubject != "" {
		diffs = append(diffs, fmt.Sprintf("a push consumer (deliver subject %q), a pull consumer needed", have.DeliverSubject))
	}
	if have.AckWait != want.AckWait {
		diffs = append(diffs, fmt.Sprintf("queue.ack_wait %s on the consumer, %s configured", have.AckWait, want.AckWait))
	}
	if have.MaxAckPending != want.MaxAckPending {
		diffs = append(diffs, fmt.Sprintf("queue.max_ack_pending %d on the consumer, %d configured", have.MaxAckPending, want.MaxAckPending))
	}
	if len(diffs) > 0 {
		return nil, fmt.Errorf("%w: durable consumer %q on stream %q: %s. With queue.create false sluice changes nothing: fix the consumer, or the configuration to match it", ErrStreamMismatch, cfg.Consumer, cfg.Stream, strings.Join(diffs, "; "))
	}
	return cons, nil
}

// checkSubjects rejects subjects JetStream cannot use and a dead-letter
// subject the consumed stream would capture.
func checkSubjects(cfg Options) error {
	for _, s := range cfg.Subjects {
		if !server.IsValidSubject(s) {
			return fmt.Errorf("%w: queue.subjects: %q is not a valid NATS subject", ErrBadConfig, s)
		}
	}
	if !server.IsValidPublishSubject(cfg.DeadLetterSubject) {
		return fmt.Errorf("%w: queue.dead_letter_subject %q must be a valid subject without wildcards", ErrBadConfig, cfg.DeadLetterSubject)
	}
	for _, s := range cfg.Subjects {
		if server.SubjectMatchesFilter(cfg.DeadLetterSubject, s) {
			return fmt.Errorf("%w: queue.dead_letter_subject %q is captured by %q in queue.subjects, so dead letters would be consumed and fail again; choose a dead-letter subject outside the consumed subjects (default %q)", ErrDeadLetterConsumed, cfg.DeadLetterSubject, s, DefaultDeadLetterSubject)
		}
	}
	if cfg.DeadLetterStream == cfg.Stream {
		return fmt.Errorf("%w: queue.dead_letter_stream and queue.stream are both %q; dead letters need a stream of their own", ErrBadConfig, cfg.Stream)
	}
	return nil
}

// Fetch returns up to max messages. It waits at most maxWait for the first
// one, then takes the ones that follow until the flow pauses for a
// millisecond (never past maxWait); it returns an empty slice and nil when
// nothing arrived in time.
//
// A pull request can outlive the call: the rest of its batch is handed out by
// the next Fetch. And unless Options.DisablePrefetch is set, when a call
// used up its pull request it issues the next one before returning, so at
// most one batch (max messages) is delivered ahead of the caller.
//
// Errors: ctx.Err() once ctx is done; ErrClosed after Close; otherwise
// transient errors wrapping ErrNotConnected or ErrFetch, on which the caller
// backs off and calls Fetch again.
func (s *Source) Fetch(ctx context.Context, max int, maxWait time.Duration) ([]pipeline.Message, error) {
	start := time.Now()
	defer func() { s.m.fetchWait.Observe(time.Since(start).Seconds()) }()
	if max < 1 {
		max = 1
	}
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := fetchPoint.Hit(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, s.fetchErr(err)
	}

	deadline := start.Add(maxWait)
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	for {
		if s.cur == nil {
			rem := time.Until(deadline)
			if rem < time.Millisecond {
				return nil, nil
			}
			if err := s.startPull(max, rem); err != nil {
				return nil, err
			}
		}
		select {
		case jm, ok := <-s.cur.msgs:
			if !ok {
				// The pull is over. An error that ends a pull which
				// delivered messages belongs to those messages (the
				// jetstream package ends a pull on a message it cannot
				// parse, which admit has terminated): pull again, and a
				// lasting fault shows on the next pull.
				err, received := s.cur.batch.Error(), s.cur.received
				s.cur = nil
				if err != nil && received == 0 {
					return nil, s.fetchErr(err)
				}
				if err != nil {
					s.log.Debug("pull request ended with an error", obs.KeyErr, err)
				}
				continue // used up or expired: pull again while time is left
			}
			out := s.take(make([]pipeline.Message, 0, max), jm, max, timer.C)
			if len(out) == 0 {
				// Every message taken was unusable (see admit): keep
				// waiting while maxWait lasts. take may have drained
				// timer.C, but only once the deadline has passed.
				if !time.Now().Before(deadline) {
					return nil, nil
				}
				continue
			}
			if s.cur == nil && s.prefetch {
				// Keep the server busy while the caller works. A failure
				// here is not this call's: the next Fetch meets it.
				_ = s.startPull(max, maxWait)
			}
			s.m.fetched.Add(float64(len(out)))
			return out, nil
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			// The pull stays in s.cur: the next Fetch or Close takes what
			// it still delivers.
			return nil, ctx.Err()
		}
	}
}

// startPull issues a pull request for max messages expiring after wait (at
// most maxPullExpiry).
func (s *Source) startPull(max int, wait time.Duration) error {
	wait = min(wait, maxPullExpiry)
	if !s.nc.IsConnected() {
		return s.fetchErr(ErrNotConnected)
	}
	b, err := s.cons.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return s.fetchErr(err)
	}
	s.cur = &pull{batch: b, msgs: b.Messages(), size: max, issued: time.Now()}
	return nil
}

// take appends first and then the messages of s.cur that keep arriving, up
// to max, until the flow pauses for lingerGap, Options.Linger has passed
// since first, or deadline fires; it drops s.cur once the pull is used up.
// Messages already waiting in the client are taken whatever the time.
func (s *Source) take(out []pipeline.Message, first jetstream.Msg, max int, deadline <-chan time.Time) []pipeline.Message {
	p := s.cur
	stale := time.Since(p.issued) > s.cfg.AckWait/2
	add := func(jm jetstream.Msg) {
		p.received++
		if m, ok := s.admit(jm, stale); ok {
			out = append(out, m)
		}
	}
	add(first)
	lingerEnd := time.Now().Add(s.cfg.Linger)
	var gap *time.Timer // started on the first pause in the flow
	defer func() {
		if gap != nil {
			gap.Stop()
		}
	}()
	for len(out) < max && p.received < p.size {
		var jm jetstream.Msg
		var ok bool
		select {
		case jm, ok = <-p.msgs:
		default:
			// Nothing buffered: wait a moment, because a batch arrives as a
			// burst that the client hands over one message at a time; but
			// a trickle does not hold the batch's first message longer
			// than the linger.
			wait := min(s.gap, time.Until(lingerEnd))
			if wait <= 0 {
				return out
			}
			if gap == nil {
				gap = time.NewTimer(wait)
			} else {
				gap.Reset(wait)
			}
			select {
			case jm, ok = <-p.msgs:
			case <-gap.C:
				return out
			case <-deadline:
				return out
			}
		}
		if !ok {
			if err := p.batch.Error(); err != nil {
				s.log.Debug("pull request ended with an error", obs.KeyErr, err)
			}
			s.cur = nil
			return out
		}
		add(jm)
	}
	if p.received >= p.size {
		s.cur = nil // complete: the jetstream package closes msgs by itself
	}
	return out
}

// admit turns a fetched JetStream message into the Message handed to the
// pipeline; stale says it waited in the prefetch buffer for a good part of
// AckWait, so its redelivery timer is restarted first.
//
// A message whose JetStream metadata cannot be parsed has no identity
// (stream, sequence) to deduplicate or dead-letter it by, so it can never
// be processed: admit terminates it, so that the server does not redeliver
// it every AckWait, logs it with the reason, counts it in
// sluice_queue_bad_metadata_total, and returns false.
func (s *Source) admit(jm jetstream.Msg, stale bool) (*Message, bool) {
	m, err := wrap(jm, s.epoch)
	if err != nil {
		s.m.badMetadata.Inc()
		log := s.log.With(obs.KeySubject, jm.Subject(), obs.KeyReason, "no JetStream metadata: "+err.Error())
		if terr := jm.TermWithReason("sluice: no JetStream metadata"); terr != nil {
			log.Error("a fetched message without JetStream metadata could not be terminated; it is not processed and may come back after queue.ack_wait", obs.KeyErr, terr)
		} else {
			log.Error("terminated a fetched message without JetStream metadata; it is not processed")
		}
		return nil, false
	}
	if stale {
		_ = jm.InProgress()
	}
	return m, true
}

func (s *Source) fetchErr(err error) error {
	s.m.fetchErrors.Inc()
	if errors.Is(err, ErrNotConnected) {
		return fmt.Errorf("fetch from stream %q consumer %q: %w", s.cfg.Stream, s.cfg.Consumer, err)
	}
	return fmt.Errorf("%w: stream %q consumer %q: %w", ErrFetch, s.cfg.Stream, s.cfg.Consumer, err)
}

// Ack acknowledges each message individually (msg.Ack, which does not wait
// for the server's reply; the client coalesces the acks in its write
// buffer). Messages whose ack fails are redelivered after AckWait. When the
// queue.ack.before fault fires, nothing is acked.
func (s *Source) Ack(msgs []pipeline.Message) error {
	if err := ackBeforePoint.Hit(context.Background()); err != nil {
		return fmt.Errorf("ack %d messages on stream %q: %w", len(msgs), s.cfg.Stream, err)
	}
	return s.settle(msgs, "ack", func(m jetstream.Msg) error { return m.Ack() }, s.m.acks)
}

// Nak asks for each message to be redelivered after NakDelay.
func (s *Source) Nak(msgs []pipeline.Message) error {
	return s.settle(msgs, "nak", func(m jetstream.Msg) error { return m.NakWithDelay(NakDelay) }, s.m.naks)
}

func (s *Source) settle(msgs []pipeline.Message, op string, f func(jetstream.Msg) error, ok prometheus.Counter) error {
	var (
		done, failed int
		first        error
	)
	for _, pm := range msgs {
		m, isOurs := pm.(*Message)
		var err error
		if !isOurs {
			err = fmt.Errorf("%w (got %T)", ErrForeignMessage, pm)
		} else {
			err = f(m.msg)
		}
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
			continue
		}
		done++
	}
	ok.Add(float64(done))
	if failed > 0 {
		return fmt.Errorf("%s on stream %q: %d of %d messages failed (they are redelivered after queue.ack_wait %s); first error: %w", op, s.cfg.Stream, failed, len(msgs), s.cfg.AckWait, first)
	}
	return nil
}

// DeadLetter publishes rec, record index of message from, to the dead-letter
// subject with the reason and the record's origin in headers (see
// HeaderReason and the headers after it), and returns nil once JetStream
// has stored it (PubAck). A negative index means rec is the whole message
// payload (a message rejected as a whole, e.g. one too large for a frame):
// the dead letter then has no HeaderRecordIndex. A dead letter published
// twice (after a redelivery) within the dead-letter stream's duplicate
// window is stored once. from must be a *Message this package fetched;
// another message is an error wrapping ErrForeignMessage.
func (s *Source) DeadLetter(ctx context.Context, from pipeline.Message, index int, rec []byte, reason string) error {
	return s.deadLetter(ctx, from, index, rec, reason, nil)
}

// DeadLetterRejection is DeadLetter with the rejection's details as
// headers too: HeaderReasonCode, HeaderRule, and HeaderStep and
// HeaderOffset when they apply.
func (s *Source) DeadLetterRejection(ctx context.Context, from pipeline.Message, index int, rec []byte, why *pipeline.Rejection) error {
	h := nats.Header{}
	h.Set(HeaderReasonCode, why.Reason)
	if why.Rule != "" {
		h.Set(HeaderRule, why.Rule)
	}
	if why.Step >= 0 {
		h.Set(HeaderStep, strconv.Itoa(why.Step))
	}
	if why.Offset >= 0 {
		h.Set(HeaderOffset, strconv.Itoa(why.Offset))
	}
	return s.deadLetter(ctx, from, index, rec, why.Error(), h)
}

func (s *Source) deadLetter(ctx context.Context, from pipeline.Message, index int, rec []byte, reason string, extra nats.Header) error {
	m, ok := from.(*Message)
	if !ok {
		return fmt.Errorf("dead-letter a record: %w (got %T)", ErrForeignMessage, from)
	}
	seq := strconv.FormatUint(m.seq, 10)
	epoch := strconv.FormatUint(m.epoch, 10)
	what := "message"
	idx := "msg" // the whole payload, in the message id below
	if index >= 0 {
		idx = strconv.Itoa(index)
		what = "record " + idx
	}
	msg := &nats.Msg{Subject: s.cfg.DeadLetterSubject, Data: rec, Header: nats.Header{}}
	for k, v := range extra {
		msg.Header[k] = v
	}
	msg.Header.Set(HeaderReason, headerValue(reason))
	msg.Header.Set(HeaderSourceStream, m.stream)
	msg.Header.Set(HeaderSourceEpoch, epoch)
	msg.Header.Set(HeaderSourceSubject, m.Subject())
	msg.Header.Set(HeaderSourceSeq, seq)
	if index >= 0 {
		msg.Header.Set(HeaderRecordIndex, idx)
	}
	_, err := s.js.PublishMsg(ctx, msg,
		jetstream.WithExpectStream(s.cfg.DeadLetterStream),
		jetstream.WithMsgID(m.stream+":"+epoch+":"+seq+":"+idx))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("dead-letter %s of %s seq %s to %q (stream %q): %w", what, m.stream, seq, s.cfg.DeadLetterSubject, s.cfg.DeadLetterStream, err)
	}
	s.m.deadLetters.Inc()
	return nil
}

// headerValue makes reason safe for a header: one line, bounded length.
func headerValue(reason string) string {
	reason = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, reason)
	if len(reason) > maxReasonLen {
		reason = strings.ToValidUTF8(reason[:maxReasonLen], "") + "…"
	}
	return reason
}

// Close stops fetching. Messages that a pull request delivered but Fetch
// did not hand out are nak'ed for prompt redelivery; Close waits for the
// pull in flight to end (at most about a second). Ack, Nak and DeadLetter keep working after Close; the connection
// stays open (it belongs to the caller). Close is idempotent.
func (s *Source) Close() error {
	s.fetchMu.Lock()
	if s.closed {
		s.fetchMu.Unlock()
		return nil
	}
	s.closed = true
	p := s.cur
	s.cur = nil
	s.fetchMu.Unlock()
	if p == nil {
		return nil
	}
	var n int
	for jm := range p.msgs {
		if jm.Nak() == nil {
			n++
		}
	}
	s.m.naks.Add(float64(n))
	if n > 0 {
		s.log.Info("returned prefetched messages for redelivery", obs.KeyMessages, n)
	}
	return nil
}
