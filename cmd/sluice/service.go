package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/kafkasrc"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/queue"
	"github.com/sluice-dev/sluice/sink"
	sluicestatus "github.com/sluice-dev/sluice/status"
	"github.com/sluice-dev/sluice/tap"
	"github.com/sluice-dev/sluice/wire"
)

// service is sluice run: the queue (embedded or external), the pipeline, the
// sink and the admin server, built from one config.
type service struct {
	cfg   *config.Config
	log   *slog.Logger
	reg   *prometheus.Registry
	emb   *queue.Embedded // nil with an external queue
	nc    *nats.Conn
	src   *queue.Source
	ksrc  *kafkasrc.Source // queue.kind kafka: the source, instead of emb, nc and src
	snk   *sink.Writer
	pipe  *pipeline.Pipeline
	admin *obs.Admin
	fr    *obs.FlightRecorder // nil unless flight.enabled
	start time.Time
	taps  *tap.Hub
	stat  *sluicestatus.Sampler // nil with the admin server off
}

// newService builds every part; on error it releases what it built.
func newService(ctx context.Context, cfg *config.Config, logger *slog.Logger) (_ *service, err error) {
	s := &service{cfg: cfg, log: logger, reg: prometheus.NewRegistry(), start: time.Now()}
	proc, err := newProcessor(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), obs.FaultCollector{})
	applyMemoryLimit(cfg, logger)
	if err := fault.ApplyAll(cfg.Faults); err != nil {
		return nil, err
	}
	if cfg.Flight.Enabled {
		fo := flightOptions(cfg)
		fo.Logger, fo.Registerer = logger, s.reg
		if s.fr, err = obs.StartFlightRecorder(fo); err != nil {
			return nil, err
		}
		s.fr.NotifySignal()
		logger.Info("flight recorder on", obs.KeyDir, cfg.Flight.Dir, obs.KeyWindow, cfg.Flight.Window)
	}
	if cfg.Queue.URL == "" && !isKafka(cfg) {
		eo := embeddedOptions(cfg)
		eo.Logger = logger
		if err := embeddedAuth(cfg, &eo); err != nil {
			return nil, err
		}
		if s.emb, err = queue.StartEmbedded(eo); err != nil {
			return nil, err
		}
		logger.Info("embedded queue started", obs.KeyURL, s.emb.ClientURL(), obs.KeyDataDir, cfg.Queue.DataDir)
	}
	so := sinkOptions(cfg)
	so.Notify, so.Logger, so.Registerer = s.notify, logger, s.reg
	so.Positions = s.positions // reads s.src, set below, before the sink starts
	s.snk = sink.New(so)
	co := connectOptions(cfg)
	co.Logger = logger
	if cfg.Sink.Framing == wire.FramingAcked {
		// The server may be back with a store that lost its tail: a new
		// session's HELLO lets the drainer check.
		co.OnReconnect = func() { s.snk.Reconnect(sink.ReasonSourceReconnected) }
	}
	var src source
	if isKafka(cfg) {
		if src, err = s.openKafka(ctx); err != nil {
			return nil, err
		}
	} else if s.nc, err = queue.Connect(ctx, s.emb, co); err != nil {
		return nil, err
	}
	qo := queueOptions(cfg)
	qo.Logger, qo.Registerer = logger, s.reg
	if s.nc != nil {
		if s.src, err = queue.OpenWaiting(ctx, s.nc, qo); err != nil {
			return nil, err
		}
		src = s.src
	}
	if s.src != nil { // NATS: the consumer's backlog
		s.reg.MustRegister(s.src.BacklogCollector())
	}
	s.taps = tap.NewHub(s.reg)
	po := pipelineOptions(cfg)
	po.Logger, po.Registerer, po.Tap = logger, s.reg, s.taps
	s.pipe = pipeline.New(src, src, proc, s.snk, po)
	if cfg.Admin.Listen != "off" {
		s.admin = obs.NewAdmin(s.reg, logger)
		if err := s.admin.ProtectWith(cfg.Admin.Token, cfg.Admin.TokenFile); err != nil {
			return nil, err
		}
		s.admin.AddReadyCheck("queue", s.queueReady)
		s.admin.AddReadyCheck("sink", func() error {
			if !s.snk.Connected() {
				return fmt.Errorf("no drainer connected at %s", cfg.Sink.Socket)
			}
			return nil
		})
		obs.MountFaultAPI(s.admin)
		if cfg.Admin.Pprof {
			obs.MountPprof(s.admin)
		}
		obs.MountFlightAPI(s.admin, s.fr)
		tap.Mount(s.admin, s.taps)
		sto := statusOptions(cfg, "")
		if s.emb == nil {
			sto.QueueURL = queue.ConnectedURL(s.nc)
		}
		sto.Gatherer, sto.Start, sto.Logger = s.reg, s.start, logger
		if err := sluicestatus.RegisterLimits(s.reg, sto); err != nil {
			return nil, err
		}
		s.stat = sluicestatus.NewSampler(sto)
		s.stat.Mount(s.admin)
		s.admin.HandleFunc("POST /sink/reconnect", func(w http.ResponseWriter, _ *http.Request) {
			s.snk.Reconnect("requested")
			fmt.Fprintln(w, "reconnect requested")
		})
		if err := s.admin.Start(cfg.Admin.Listen); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// notify receives the sink's anomalies (reconnects, write errors, ack
// timeouts) and asks the flight recorder, if on, for a dump. It never
// blocks.
// Auto memory limits of runtime.memory_limit: with the embedded server the
// process holds its caches too.
const (
	autoMemoryLimitEmbedded = 96 << 20
	autoMemoryLimitExternal = 48 << 20
)

// memoryLimit is the runtime's soft memory limit for cfg, in bytes.
func memoryLimit(cfg *config.Config) int64 {
	switch {
	case cfg.Runtime.MemoryLimit > 0:
		return int64(cfg.Runtime.MemoryLimit)
	case cfg.Queue.URL == "" && !isKafka(cfg):
		return autoMemoryLimitEmbedded
	default:
		return autoMemoryLimitExternal
	}
}

// applyMemoryLimit sets the Go runtime's soft memory limit from
// runtime.memory_limit, unless GOMEMLIMIT is set.
func applyMemoryLimit(cfg *config.Config, logger *slog.Logger) {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		logger.Info("memory limit from GOMEMLIMIT", obs.KeyLimit, env)
		return
	}
	limit := memoryLimit(cfg)
	debug.SetMemoryLimit(limit)
	logger.Debug("memory limit set", obs.KeyLimit, config.ByteSize(limit).String())
}

// positions is where the queue stands, for the drainer's rewind check in
// each HELLO.
func (s *service) positions(ctx context.Context) ([]wire.StreamPosition, error) {
	if s.ksrc != nil {
		return s.ksrc.Positions(ctx)
	}
	id, err := s.src.Last(ctx)
	if err != nil {
		return nil, err
	}
	return []wire.StreamPosition{{Stream: id.Stream, Epoch: id.Epoch, LastSeq: id.Seq}}, nil
}

func (s *service) notify(event, reason string) {
	if s.fr == nil {
		return
	}
	if reason != "" {
		event += "-" + reason
	}
	s.fr.Trigger(event)
}

// run runs until ctx ends, then shuts down in flow order: stop fetching and
// finish in-flight work, close the sink, the queue connection, the embedded
// server and the admin server.
func (s *service) run(ctx context.Context) error {
	s.snk.Start(ctx)
	if s.fr != nil && s.cfg.Flight.StallAfter > 0 {
		s.fr.WatchStall(ctx, s.cfg.Flight.StallAfter/10, s.cfg.Flight.StallAfter, func() (bool, uint64) {
			recs, _ := s.pipe.Inflight()
			return recs > 0, s.pipe.Progress()
		})
	}
	s.log.Info("sluice running", obs.KeySocket, s.cfg.Sink.Socket, obs.KeyFraming, s.cfg.Sink.Framing, obs.KeyWorkers, s.cfg.Pipeline.Workers)
	if err := obs.NotifyReady(); err != nil { // systemd Type=notify
		s.log.Warn("could not tell systemd that sluice is ready", obs.KeyErr, err)
	}
	if s.src != nil { // NATS
		_, _ = s.src.LogBacklog(ctx) // what this start will deliver and replay; a failure is logged
	}
	statCtx, stopStat := context.WithCancel(ctx)
	var statWG sync.WaitGroup
	if s.stat != nil {
		statWG.Add(1)
		go func() { defer statWG.Done(); s.stat.Run(statCtx) }()
	}
	err := s.pipe.Run(ctx)
	stopStat()
	statWG.Wait()
	s.close()
	return err
}

func (s *service) close() {
	if s.snk != nil {
		_ = s.snk.Close()
	}
	if s.src != nil {
		_ = s.src.Close() // hands back prefetched messages
	}
	if s.ksrc != nil {
		_ = s.ksrc.Close() // commits what was delivered, leaves the group
	}
	if s.nc != nil {
		_ = s.nc.Drain()
		s.nc.Close()
	}
	if s.emb != nil {
		s.emb.Shutdown()
	}
	if s.admin != nil {
		_ = s.admin.Close()
	}
	_ = s.fr.Close() // nil-safe
}
