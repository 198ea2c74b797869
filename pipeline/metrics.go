package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	recordsIn      prometheus.Counter
	recordsOut     prometheus.Counter
	recordsDropped prometheus.Counter
	deadLettered   prometheus.Counter
	deadLetters    *prometheus.CounterVec // by reason (reasonLabel)
	batches        prometheus.Counter
	msgsAcked      prometheus.Counter
	msgsNaked      prometheus.Counter
	inflightRecs   prometheus.Gauge
	inflightBytes  prometheus.Gauge
	batchSeconds   prometheus.Histogram
	fetchErrors    prometheus.Counter
	msgsTooLarge   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		recordsIn: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_pipeline_records_in_total",
			Help: "Records taken from queue messages.",
		}),
		recordsOut: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_pipeline_records_out_total",
			Help: "Records delivered by the sink.",
		}),
		recordsDropped: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_pipeline_records_dropped_total",
			Help: "Records dropped by a filter (counted as done).",
		}),
		deadLettered: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_pipeline_dead_lettered_total",
			Help: "Records that failed processing and were accepted by the dead-letter subject.",
		}),
		deadLetters: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_dead_letters_total",
			Help: "Records (or whole messages) accepted by the dead-letter subject, by reason: a rule of the JSON gate, rejected (a reject step), step_error, panic, too_large, max_deliver, or error.",
		}, []string{"reason"}),
		batches: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_pipeline_batches_total",
			Help: "Chunks of messages processed and settled (one sink frame each).",
		}),
		msgsAcked: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_pipeline_messages_acked_total",
			Help: "Queue messages acknowledged after all their records were done.",
		}),
		msgsNaked: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_pipeline_messages_nacked_total",
			Help: "Queue messages handed back for redelivery.",
		}),
		inflightRecs: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_pipeline_inflight_records",
			Help: "Records fetched but not yet settled.",
		}),
		inflightBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_pipeline_inflight_bytes",
			Help: "Bytes of messages fetched but not yet settled.",
		}),
		batchSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_pipeline_batch_seconds",
			Help:    "Time from a chunk's hand-over to a worker until it is settled.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		fetchErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_pipeline_fetch_errors_total",
			Help: "Fetches from the source that failed (retried with backoff).",
		}),
		msgsTooLarge: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_pipeline_messages_too_large_total",
			Help: "Queue messages whose records do not fit the drainer's limits (acked: one frame; lines: the line length); each is dead-lettered whole (counted again if its dead letter failed and it came back).",
		}),
	}
}
