package obs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/fault"
)

// FaultCollector exports every fault point's activation count as
// sluice_fault_activations_total{point}. It reads the counters at scrape
// time, so the points themselves stay free of Prometheus.
type FaultCollector struct{}

var faultDesc = prometheus.NewDesc("sluice_fault_activations_total",
	"Times a fault point's action fired, by point.", []string{"point"}, nil)

// Describe implements prometheus.Collector.
func (FaultCollector) Describe(ch chan<- *prometheus.Desc) { ch <- faultDesc }

// Collect implements prometheus.Collector.
func (FaultCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range fault.All() {
		ch <- prometheus.MustNewConstMetric(faultDesc, prometheus.CounterValue, float64(p.Hits()), p.Name())
	}
}
