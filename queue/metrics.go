package queue

import (
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

// reconnectCollector exports the connection's reconnect count, read from
// the client when scraped.
type reconnectCollector struct {
	s          *Source
	reconnects *prometheus.Desc
}

func newReconnectCollector(s *Source) *reconnectCollector {
	return &reconnectCollector{s: s, reconnects: prometheus.NewDesc("sluice_queue_reconnects_total",
		"Times the connection to NATS was re-established after a loss; messages in flight then are redelivered.", nil, nil)}
}

func (c *reconnectCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.reconnects }

func (c *reconnectCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(c.s.nc.Stats().Reconnects))
}
