package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	sluicestatus "github.com/sluice-dev/sluice/status"
	"github.com/sluice-dev/sluice/tap"
)

func newStatusCmd(g *globals) *cobra.Command {
	var watch, asJSON bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "status [--admin HOST:PORT] [--watch] [--json]",
		Short: "Show a running sluice's state on one screen, from its admin API",
		Long: `status asks a running sluice run (its admin server, admin.listen, by default
127.0.0.1:9464) for one screen: the queue and drainer connections, records
in/out/dropped/dead-lettered per second, in-flight records and bytes against
their limits, the acked window and ack latency percentiles, reconnects by
reason in the last minute and in total, the consumer's backlog (pending,
delivered and unacknowledged, redelivered, the oldest unacknowledged
message's age) and flight dumps written.

--watch redraws it in place every --interval until Ctrl-C; --json prints the
same report once, as JSON, for scripts (GET /status on the admin server
answers it too).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watch && asJSON {
				return usageError{errors.New("--watch and --json: choose one (for a series of reports, call --json in a loop)")}
			}
			if interval <= 0 {
				return usageError{errors.New("--interval must be positive, e.g. 1s")}
			}
			cfg, err := g.loadConfig(cmd.Flags(), adminFlagKeys)
			if err != nil {
				return err
			}
			admin := cfg.Admin.Listen
			client := &http.Client{Timeout: 5 * time.Second}
			if watch {
				ctx, stop := signalContext(slog.New(slog.DiscardHandler))
				defer stop()
				return sluicestatus.Watch(ctx, client, admin, interval, g.stdout)
			}
			r, err := sluicestatus.Fetch(cmd.Context(), client, admin)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			sluicestatus.Render(g.stdout, admin, r)
			return nil
		},
	}
	f := cmd.Flags()
	f.String("admin", "", "admin address of the sluice to ask (admin.listen; default 127.0.0.1:9464)")
	f.BoolVarP(&watch, "watch", "w", false, "redraw in place every --interval until Ctrl-C")
	f.DurationVar(&interval, "interval", time.Second, "refresh interval for --watch")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func newTapCmd(g *globals) *cobra.Command {
	var o tap.StreamOptions
	cmd := &cobra.Command{
		Use:       "tap in|out|dead [--rate N] [--max N] [--json]",
		Short:     "Print a sample of the records passing a stage of a running sluice",
		ValidArgs: []string{"in", "out", "dead"},
		Long: `tap streams records as they pass one stage of a running sluice run, through
its admin API (GET /tap/{stage}):

  in    records as they come off the queue, before processing
  out   records handed to the sink, after the processing steps
  dead  records accepted by the dead-letter subject, with the reason

Each line carries the record's identity (stream, epoch, sequence, index in
its message; index - for a whole message) and its subject, then the record
(its first 4 KiB). --rate caps the records per second (at most 10000), --max
stops after that many (0: until Ctrl-C).

Tapping never slows sluice: what this reader does not take in time is
dropped, counted (a "# N records dropped" line, sluice_tap_dropped_total)
and not waited for. With nobody tapping, it costs one atomic load per stage.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("tap takes one stage: in, out or dead")}
			}
			s, err := tap.ParseStage(args[0])
			if err != nil {
				return usageError{err}
			}
			o.Stage = s
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Rate <= 0 || o.Rate > tap.MaxRate || o.Max < 0 {
				return usageError{errors.New("--rate must be above 0 and at most 10000, --max 0 or more")}
			}
			cfg, err := g.loadConfig(cmd.Flags(), adminFlagKeys)
			if err != nil {
				return err
			}
			o.Admin = cfg.Admin.Listen
			ctx, stop := signalContext(slog.New(slog.DiscardHandler))
			defer stop()
			sum, err := tap.Stream(ctx, http.DefaultClient, o, g.stdout)
			if err != nil {
				return err
			}
			if sum.Dropped > 0 {
				fmt.Fprintf(g.stderr, "tap: %d records, %d dropped because this reader was slower than the rate cap\n", sum.Events, sum.Dropped)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("admin", "", "admin address of the sluice to tap (admin.listen; default 127.0.0.1:9464)")
	f.Float64Var(&o.Rate, "rate", tap.DefaultRate, "most records per second")
	f.IntVar(&o.Max, "max", 0, "stop after this many records (0: until Ctrl-C)")
	f.BoolVar(&o.JSON, "json", false, "print each record as a JSON object (time, stage, stream, epoch, seq, index, subject, reason, size, data, dropped)")
	return cmd
}

// adminFlagKeys maps the --admin flag of status and tap.
var adminFlagKeys = flagKeys{"admin": "admin.listen"}
