package pipeline

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/tap"
)

// Options configures a Pipeline. The zero value of each field means its
// default, given in the field's comment and applied by WithDefaults.
type Options struct {
	Workers            int           // processing goroutines; 0: runtime.NumCPU()
	BatchSize          int           // most messages per fetch; 0: 500
	FetchWait          time.Duration // longest wait for a fetch's first message; 0: 200ms
	MaxInflightRecords int64         // records fetched but not settled; 0: 50000
	MaxInflightBytes   int64         // their message bytes; 0: 16 MiB
	// ChunkRecords is the target number of records per sink frame; a chunk
	// always holds whole messages. 0: 1024.
	ChunkRecords int
	// ShutdownTimeout bounds how long Run waits, after ctx ends, for
	// in-flight work to be delivered before abandoning it. 0: 10s.
	ShutdownTimeout time.Duration
	// MaxDeliver: a message delivered more than this many times (as its
	// Message's NumDelivered reports, when it has that method) is a poison
	// message: it is dead-lettered whole with reason max_deliver and acked,
	// so that it never cycles through redelivery. 0: 10.
	MaxDeliver int
	// Ordered hands chunks to the sink in the order they came off the
	// queue (processing still runs on every worker at once), so that
	// records reach the drainer in queue order, and hence in order per any
	// key; see README "Ordering" for what redeliveries do. false: no
	// ordering between chunks.
	Ordered bool
	// Tap is where records are offered to `sluice tap` as they come off
	// the queue, go to the sink and go to the dead-letter subject. nil:
	// records cannot be tapped.
	Tap        *tap.Hub
	Logger     *slog.Logger          // nil: slog.Default()
	Registerer prometheus.Registerer // nil: a private registry
}

// WithDefaults returns o with every zero (or negative) field replaced by its
// default: the one place the pipeline's defaults live. New applies it;
// Options{}.WithDefaults() gives the defaults themselves (with a new private
// registry each call).
func (o Options) WithDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.FetchWait <= 0 {
		o.FetchWait = 200 * time.Millisecond
	}
	if o.MaxInflightRecords <= 0 {
		o.MaxInflightRecords = 50000
	}
	if o.MaxInflightBytes <= 0 {
		o.MaxInflightBytes = 16 << 20
	}
	if o.ChunkRecords <= 0 {
		o.ChunkRecords = 1024
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = 10
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	return o
}
