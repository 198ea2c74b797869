package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/fault"
)

func newRunCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the service: consume the queue, process, write to the drainer's socket",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(cmd.Flags(), runFlagKeys)
			if err != nil {
				return err
			}
			logger, err := g.logger(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(logger)
			defer stop()
			svc, err := newService(ctx, cfg, logger)
			if err != nil {
				return err
			}
			return svc.run(ctx)
		},
	}
	f := cmd.Flags()
	f.String("socket", "", "Unix socket the drainer listens on (sink.socket; default ./sluice.sock)")
	f.String("framing", "", "socket framing: lines or acked (sink.framing; default lines)")
	f.String("queue-url", "", "external NATS URL; empty starts an embedded JetStream server (queue.url)")
	f.String("data-dir", "", "embedded server's data directory (queue.data_dir; default ./sluice-data)")
	f.String("listen", "", "embedded server's client address (queue.listen; default 127.0.0.1:4222)")
	f.Int("workers", 0, "processing workers (pipeline.workers; default: number of CPUs)")
	f.Int("batch-size", 0, "most messages per fetch (pipeline.batch_size; default 500)")
	f.String("admin", "", `admin HTTP address for /metrics, /healthz, /readyz, or "off" (admin.listen; default 127.0.0.1:9464)`)
	f.StringSlice("faults", nil, "fault-point actions, e.g. 'sink.reconnect.before_close=delay(5ms)' (faults; repeatable)")
	cmd.Long = `run consumes the queue, validates every record, writes the records to the
drainer's Unix socket, and acknowledges each queue message once all its records
were delivered. With no config it starts an embedded NATS JetStream server on
127.0.0.1:4222 (stream INGEST, subjects ingest.>) so any NATS client can publish.

Flags override the config file and SLUICE_* environment variables.

Fault points (set with --faults, SLUICE_FAULTS or the config's faults list):
` + faultPointList() + `
Actions: delay(D), delay(MIN,MAX), error(P), close(P), off; append *N to fire at most N
times, @N/s (or @N/1m, ...) to fire at most N times per period.`
	return cmd
}

var runFlagKeys = flagKeys{
	"socket":     "sink.socket",
	"framing":    "sink.framing",
	"queue-url":  "queue.url",
	"data-dir":   "queue.data_dir",
	"listen":     "queue.listen",
	"workers":    "pipeline.workers",
	"batch-size": "pipeline.batch_size",
	"admin":      "admin.listen",
	"faults":     "faults",
}

// faultPointList lists the registered fault points for help texts. The
// points are package variables, registered by the time main runs.
func faultPointList() string {
	var b strings.Builder
	ps := fault.All()
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name() < ps[j].Name() })
	for _, p := range ps {
		fmt.Fprintf(&b, "  %-30s %s\n", p.Name(), p.Doc())
	}
	return b.String()
}
