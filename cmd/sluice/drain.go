package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
)

func newDrainCmd(g *globals) *cobra.Command {
	var metricsAddr string
	cmd := &cobra.Command{
		Use:   "drain [--socket PATH] [--out DIR|-]",
		Short: "Run the reference drainer: listen on the socket, write records to files or stdout",
		Long: `drain listens on the Unix socket that sluice run writes to (by default the
same path, so the two work side by side with no flags) and writes every record
it receives to size-rotated files in --out, or to stdout with --out -.

The socket is created with owner-only permissions (0600). A stale socket file
is removed only when nothing listens on it; if another drainer is listening,
drain refuses to start. SIGTERM or SIGINT stops accepting, reads what is in
flight, and closes the files cleanly.

The framing must match sluice run's (sink.framing). With --framing acked the
drainer fsyncs records (group commit) before it acknowledges them, drops
duplicates by record identity, and keeps its dedup state durable in the
output directory's journal (sluice-dedup.journal), consistent with the
output, across reconnects and restarts of either side. With --out - (stdout)
records are acknowledged once written to stdout and the dedup state is kept
in memory only: a drainer restart forgets it.

If the queue goes back below what the drainer committed (its store lost its
tail in a crash, or was restored from a backup), the drainer refuses that
producer (STREAM_REWOUND) rather than drop its new messages as duplicates,
and keeps refusing it, across restarts, until it is started once with
--accept-rewind: that forgets the sequences committed above the queue's last
one, so the new messages that reuse them are written.

--allow-uid / --allow-gid restrict the peers that may connect (checked with
SO_PEERCRED); a refused peer is logged, counted and, in acked framing, sent a
close frame with the reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(cmd.Flags(), drainFlagKeys)
			if err != nil {
				return err
			}
			logger, err := g.logger(cfg)
			if err != nil {
				return err
			}
			if err := fault.ApplyAll(cfg.Faults); err != nil {
				return usageError{err}
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(obs.FaultCollector{})
			do, err := drainOptions(cfg)
			if err != nil {
				return usageError{err}
			}
			do.Logger, do.Registerer = logger, reg
			srv, err := drain.New(do)
			if err != nil {
				return err
			}
			if err := srv.Listen(); err != nil {
				return err
			}
			ctx, stop := signalContext(logger)
			defer stop()
			if metricsAddr != "" && metricsAddr != "off" {
				if !obs.IsLoopbackAddr(metricsAddr) && !cfg.Admin.AllowRemote {
					_ = srv.Close()
					return usageError{fmt.Errorf("--metrics %s is not a loopback address: /metrics needs no token and would be open to the network; listen on 127.0.0.1, or set admin.allow_remote: true", metricsAddr)}
				}
				admin := obs.NewAdmin(reg, logger)
				if err := admin.ProtectWith(cfg.Admin.Token, cfg.Admin.TokenFile); err != nil {
					_ = srv.Close()
					return err
				}
				obs.MountFaultAPI(admin) // drain.* fault points, switched at run time
				if err := admin.Start(metricsAddr); err != nil {
					_ = srv.Close()
					return err
				}
				defer admin.Close()
			}
			logger.Info("drainer listening", obs.KeySocket, cfg.Drain.Socket, obs.KeyOut, cfg.Drain.Out)
			if err := obs.NotifyReady(); err != nil { // systemd Type=notify
				logger.Warn("could not tell systemd that the drainer is ready", obs.KeyErr, err)
			}
			return srv.Serve(ctx)
		},
	}
	f := cmd.Flags()
	f.String("socket", "", "Unix socket to listen on (drain.socket; default: sink.socket, ./sluice.sock)")
	f.String("out", "", "output directory, or - for stdout (drain.out; default ./sluice-out)")
	f.String("rotate-bytes", "", "start a new output file past this size (drain.rotate_bytes; default 64MiB)")
	f.String("max-line-bytes", "", "lines: the longest record line accepted (drain.max_line_bytes; default 1MiB; sluice run must use the same)")
	f.String("max-frame-bytes", "", "acked: the largest DATA frame body granted in WELCOME (drain.max_frame_bytes; default 4MiB)")
	f.String("socket-mode", "", "socket file permissions, octal (drain.socket_mode; default 0600)")
	f.String("framing", "", "socket framing: lines or acked; must match sluice run (sink.framing; default lines)")
	f.StringSlice("allow-uid", nil, "only peers with these user ids may connect (drain.allow_uids; repeatable)")
	f.StringSlice("allow-gid", nil, "only peers with these group ids may connect (drain.allow_gids; repeatable)")
	f.Bool("write-identity", false, "acked: prefix each output line with stream:seq:index and a tab (drain.write_identity)")
	f.StringSlice("faults", nil, "fault-point actions, e.g. 'drain.ack.before=delay(5ms)' (faults; repeatable)")
	f.Bool("write-received", false, "prefix each output line with its receive time (Unix ns) and a tab, for sluice load's latency (drain.write_received)")
	f.Bool("accept-rewind", false, "acked: accept a queue that went back below what was committed, writing its new messages (drain.accept_rewind); for one start after a rewind")
	f.StringVar(&metricsAddr, "metrics", "off", "address for the drainer's /metrics, e.g. 127.0.0.1:9465, or off")
	return cmd
}

var drainFlagKeys = flagKeys{
	"socket":          "drain.socket",
	"out":             "drain.out",
	"rotate-bytes":    "drain.rotate_bytes",
	"socket-mode":     "drain.socket_mode",
	"max-line-bytes":  "drain.max_line_bytes",
	"max-frame-bytes": "drain.max_frame_bytes",
	"framing":         "sink.framing",
	"allow-uid":       "drain.allow_uids",
	"allow-gid":       "drain.allow_gids",
	"write-identity":  "drain.write_identity",
	"accept-rewind":   "drain.accept_rewind",
	"write-received":  "drain.write_received",
	"faults":          "faults",
}
