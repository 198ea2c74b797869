package queue

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/obs"
)

// Backlog is the consumed stream's unfinished work as JetStream reports it:
// what a sluice that starts now will deliver, and how much of it is a
// replay of messages delivered before.
type Backlog struct {
	Stream   string `json:"stream"`
	Epoch    uint64 `json:"epoch"`
	Consumer string `json:"consumer"`
	// Pending is the messages not yet delivered to any sluice instance.
	Pending uint64 `json:"pending"`
	// AckPending is the messages delivered and not yet acknowledged: in
	// flight in some instance, or (after a crash) waiting for their ack
	// wait to pass before they are redelivered.
	AckPending int `json:"ack_pending"`
	// Redelivered is the messages among AckPending delivered more than
	// once.
	Redelivered int `json:"redelivered"`
	// Stored is the messages the stream holds. The stream is a work queue,
	// so every stored message is one not acknowledged yet.
	Stored uint64 `json:"stored"`
	// LastSeq is the stream's last sequence.
	LastSeq uint64 `json:"last_seq"`
	// Oldest is when the oldest stored (so unacknowledged) message was
	// stored; zero when the stream is empty.
	Oldest time.Time `json:"oldest,omitzero"`
	// At is when JetStream was asked.
	At time.Time `json:"at"`
}

// OldestAge is how long the oldest unacknowledged message has waited, at
// b.At; 0 when there is none.
func (b Backlog) OldestAge() time.Duration {
	if b.Oldest.IsZero() || b.Stored == 0 {
		return 0
	}
	return max(b.At.Sub(b.Oldest), 0)
}

// Backlog asks JetStream for the consumer's and the stream's state (two
// API requests).
//
// Errors: ctx.Err() once ctx is done; otherwise an error wrapping
// ErrNotConnected or the JetStream API error.
func (s *Source) Backlog(ctx context.Context) (Backlog, error) {
	b := Backlog{Stream: s.cfg.Stream, Epoch: s.epoch, Consumer: s.cfg.Consumer}
	if !s.nc.IsConnected() {
		return b, fmt.Errorf("backlog of consumer %q: %w", s.cfg.Consumer, ErrNotConnected)
	}
	ci, err := s.cons.Info(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return b, ctx.Err()
		}
		return b, fmt.Errorf("backlog of consumer %q on stream %q: %w", s.cfg.Consumer, s.cfg.Stream, err)
	}
	si, err := s.stream.Info(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return b, ctx.Err()
		}
		return b, fmt.Errorf("backlog: state of stream %q: %w", s.cfg.Stream, err)
	}
	b.Pending, b.AckPending, b.Redelivered = ci.NumPending, ci.NumAckPending, ci.NumRedelivered
	b.Stored, b.LastSeq = si.State.Msgs, si.State.LastSeq
	if si.State.Msgs > 0 {
		b.Oldest = si.State.FirstTime
	}
	b.At = time.Now()
	return b, nil
}

// LogBacklog reads the backlog and logs it in one line, at start: how much
// will be delivered, how much of it is a replay (delivered before and not
// acknowledged, redelivered once the consumer's ack wait passes), and how
// old the oldest unacknowledged message is. A failure is logged, not
// returned: the pipeline starts all the same.
func (s *Source) LogBacklog(ctx context.Context) (Backlog, error) {
	ctx, cancel := context.WithTimeout(ctx, backlogTimeout)
	defer cancel()
	b, err := s.Backlog(ctx)
	if err != nil {
		s.log.Warn("could not read the backlog at start", obs.KeyErr, err)
		return b, err
	}
	s.log.Info("backlog at start",
		obs.KeyPending, b.Pending, obs.KeyAckPending, b.AckPending, obs.KeyRedelivered, b.Redelivered,
		obs.KeyStored, b.Stored, obs.KeyOldestAge, b.OldestAge().Round(time.Millisecond), obs.KeyLastSeq, b.LastSeq,
		obs.KeyAckWait, s.cfg.AckWait)
	return b, nil
}

// backlogTimeout bounds one Backlog read by LogBacklog and the collector.
const backlogTimeout = 2 * time.Second

// backlogCacheTTL is how long the collector reuses a Backlog read, so a
// scrape and `sluice status` in the same second ask JetStream once.
const backlogCacheTTL = time.Second

// BacklogCollector returns a Prometheus collector exporting the backlog at
// scrape time (read at most once a second): the backlog gauges
// and sluice_queue_oldest_unacked_age_seconds gauges, and
// sluice_queue_connected. While the backlog cannot be read (the queue is
// unreachable) its gauges are left out of the scrape and
// sluice_queue_backlog_errors_total counts the failed reads.
func (s *Source) BacklogCollector() prometheus.Collector {
	return &backlogCollector{s: s, errs: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_queue_backlog_errors_total",
		Help: "Reads of the consumer's backlog (for the sluice_queue_pending_messages, sluice_queue_ack_pending and sluice_queue_consumer_redelivered_messages gauges) that failed.",
	})}
}

var (
	descConnected = prometheus.NewDesc("sluice_queue_connected",
		"1 while sluice is connected to the queue's NATS server, else 0.", nil, nil)
	descPending = prometheus.NewDesc("sluice_queue_pending_messages",
		"Queue messages not yet delivered to any sluice instance (the consumer's num_pending).", nil, nil)
	descAckPending = prometheus.NewDesc("sluice_queue_ack_pending",
		"Queue messages delivered and not yet acknowledged (the consumer's num_ack_pending): in flight, or waiting for their ack wait to be redelivered.", nil, nil)
	descRedelivered = prometheus.NewDesc("sluice_queue_consumer_redelivered_messages",
		"Unacknowledged queue messages that were delivered more than once (the consumer's num_redelivered).", nil, nil)
	descStored = prometheus.NewDesc("sluice_queue_stream_messages",
		"Messages stored in the consumed stream; a work queue keeps only unacknowledged ones.", nil, nil)
	descOldest = prometheus.NewDesc("sluice_queue_oldest_unacked_age_seconds",
		"Age of the oldest unacknowledged message in the consumed stream; 0 when it is empty.", nil, nil)
)

type backlogCollector struct {
	s    *Source
	errs prometheus.Counter

	mu   sync.Mutex // guards last and err, and serialises reads
	last Backlog
	err  error
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descPending, descAckPending, descRedelivered, descStored, descOldest} {
		ch <- d
	}
	c.errs.Describe(ch)
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	connected := 0.0
	if c.s.nc.IsConnected() {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	b, err := c.read()
	c.errs.Collect(ch)
	if err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(descPending, float64(b.Pending))
	gauge(descAckPending, float64(b.AckPending))
	gauge(descRedelivered, float64(b.Redelivered))
	gauge(descStored, float64(b.Stored))
	gauge(descOldest, b.OldestAge().Seconds())
}

// read returns the cached backlog, read again when older than the TTL.
func (c *backlogCollector) read() (Backlog, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.last.At.IsZero() && time.Since(c.last.At) < backlogCacheTTL && c.err == nil {
		return c.last, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), backlogTimeout)
	defer cancel()
	b, err := c.s.Backlog(ctx)
	if err != nil {
		c.errs.Inc()
		c.err = err
		return b, err
	}
	c.last, c.err = b, nil
	return b, nil
}
