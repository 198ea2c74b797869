package obs

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are obs's own metrics: the flight recorder's. (Fault points are
// exported by FaultCollector, which reads them at scrape time.)
type metrics struct {
	dumps      *prometheus.CounterVec // by reason
	suppressed prometheus.Counter
	failures   prometheus.Counter
	pruned     prometheus.Counter
	recording  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		dumps: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_flight_dumps_total",
			Help: "Flight-recorder trace dumps written, by the reason that triggered them.",
		}, []string{"reason"}),
		suppressed: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_flight_dumps_suppressed_total",
			Help: "Flight-recorder triggers dropped because a dump was already pending or running, or the last one was less than MinInterval ago.",
		}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_flight_dump_failures_total",
			Help: "Flight-recorder dumps that failed (trace snapshot or file I/O error).",
		}),
		pruned: f.NewCounter(prometheus.CounterOpts{
			Name: "sluice_flight_dumps_pruned_total",
			Help: "Old flight-recorder dump files deleted to honour MaxFiles and MaxTotalBytes.",
		}),
		recording: f.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_flight_recording",
			Help: "1 while the flight recorder keeps a trace window in memory, 0 once it is closed.",
		}),
	}
}
