package queue

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	fetchWait   prometheus.Histogram
	fetched     prometheus.Counter
	acks        prometheus.Counter
	naks        prometheus.Counter
	deadLetters prometheus.Counter
	fetchErrors prometheus.Counter
	badMetadata prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		fetchWait: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_queue_fetch_wait_seconds",
			Help:    "Time each Fetch call spent waiting for messages.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		fetched: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_messages_fetched_total",
			Help: "Queue messages handed to the pipeline by Fetch (redeliveries included).",
		}),
		acks: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_acks_total",
			Help: "Queue messages acknowledged.",
		}),
		naks: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_naks_total",
			Help: "Queue messages negatively acknowledged for redelivery.",
		}),
		deadLetters: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_dead_letters_total",
			Help: "Dead letters stored on the dead-letter subject (acknowledged by JetStream): records, or whole messages rejected as a whole.",
		}),
		fetchErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_fetch_errors_total",
			Help: "Fetch calls that failed with a transient error.",
		}),
		badMetadata: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_queue_bad_metadata_total",
			Help: "Fetched queue messages whose JetStream metadata could not be parsed (no stream or sequence to identify them): terminated, logged, never handed to the pipeline.",
		}),
	}
}

// stateCollector exports the connection's state and the consumer's
// backlog, read when scraped: nothing is kept in between.
type stateCollector struct {
	s                                     *Source
	connected, reconnects, pending, acked *prometheus.Desc
}

func newStateCollector(s *Source) *stateCollector {
	return &stateCollector{
		s: s,
		connected: prometheus.NewDesc("sluice_queue_connected",
			"1 while the connection to NATS is up, 0 while it is lost (sluice reconnects by itself; /readyz reports it).", nil, nil),
		reconnects: prometheus.NewDesc("sluice_queue_reconnects_total",
			"Times the connection to NATS was re-established after a loss; messages in flight then are redelivered.", nil, nil),
		pending: prometheus.NewDesc("sluice_queue_pending_messages",
			"Messages in the stream not yet delivered to the consumer (its num_pending): the backlog. Absent while the consumer cannot be read.", nil, nil),
		acked: prometheus.NewDesc("sluice_queue_ack_pending",
			"Messages delivered to the consumer's instances and not yet acknowledged (its num_ack_pending), at most queue.max_ack_pending. Absent while the consumer cannot be read.", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connected
	ch <- c.reconnects
	ch <- c.pending
	ch <- c.acked
}

// consumerInfoTimeout bounds the consumer info request of a scrape.
const consumerInfoTimeout = 2 * time.Second

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	up := 0.0
	if c.s.nc.IsConnected() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(c.s.nc.Stats().Reconnects))
	if up == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), consumerInfoTimeout)
	defer cancel()
	info, err := c.s.cons.Info(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending))
	ch <- prometheus.MustNewConstMetric(c.acked, prometheus.GaugeValue, float64(info.NumAckPending))
}
