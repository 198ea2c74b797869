package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/kafkasrc"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/queue"
	"github.com/sluice-dev/sluice/sink"
)

// The mapping from the configuration onto each part's Options. It lives
// here, in the wiring, because config must not import the parts it
// configures (it would pull the NATS server into every reader of a config
// file) and the parts must not import config (each is usable on its own,
// with its own documented defaults). Each function sets the value fields
// the configuration holds; the caller adds loggers, registerers and hooks.
// TestOptions_DefaultsMatchConfig checks that config.Default() mapped here
// gives each part exactly its own defaults.

// embeddedOptions configures the embedded JetStream server.
func embeddedOptions(cfg *config.Config) queue.EmbeddedOptions {
	return queue.EmbeddedOptions{
		DataDir: cfg.Queue.DataDir,
		Listen:  cfg.Queue.Listen,
	}
}

// connectOptions configures the NATS connection to an external server.
func connectOptions(cfg *config.Config) queue.ConnectOptions {
	q := &cfg.Queue
	return queue.ConnectOptions{
		URL:       q.URL,
		User:      q.User,
		Password:  q.Password,
		Token:     q.Token,
		NKeyFile:  q.NKeyFile,
		CredsFile: q.CredsFile,
		TLS: queue.TLSOptions{
			CAFile:   q.TLS.CAFile,
			CertFile: q.TLS.CertFile,
			KeyFile:  q.TLS.KeyFile,
		},
	}
}

// queueOptions configures the source: the streams and the durable consumer.
// A stream limit of 0 means none in the configuration and the default in
// queue.Options, so it maps to queue.NoLimit.
func queueOptions(cfg *config.Config) queue.Options {
	q := &cfg.Queue
	return queue.Options{
		Stream:             q.Stream,
		Subjects:           append([]string(nil), q.Subjects...),
		Consumer:           q.Consumer,
		DeadLetterSubject:  q.DeadLetterSubject,
		DeadLetterStream:   q.DeadLetterStream,
		AckWait:            q.AckWait,
		MaxAckPending:      q.MaxAckPending,
		MaxBytes:           noLimitIfZero(int64(q.MaxBytes)),
		MaxAge:             noLimitIfZero(q.MaxAge),
		Discard:            queue.Discard(q.Discard),
		DeadLetterMaxBytes: noLimitIfZero(int64(q.DeadLetterMaxBytes)),
		DeadLetterMaxAge:   noLimitIfZero(q.DeadLetterMaxAge),
		DeadLetterDiscard:  queue.Discard(q.DeadLetterDiscard),
		Migrate:            q.Migrate,
	}
}

// kafkaOptions configures the Kafka source (queue.kind: kafka).
func kafkaOptions(cfg *config.Config) kafkasrc.Options {
	k := &cfg.Queue.Kafka
	return kafkasrc.Options{
		Brokers:         append([]string(nil), k.Brokers...),
		Topics:          append([]string(nil), k.Topics...),
		Group:           k.Group,
		DeadLetterTopic: k.DeadLetterTopic,
		SessionTimeout:  k.SessionTimeout,
	}
}

// noLimitIfZero maps a configured limit of 0 (none) to queue.NoLimit.
func noLimitIfZero[T int64 | time.Duration](v T) T {
	if v == 0 {
		return queue.NoLimit
	}
	return v
}

// pipelineOptions configures the worker pool.
func pipelineOptions(cfg *config.Config) pipeline.Options {
	p := &cfg.Pipeline
	return pipeline.Options{
		Workers:            p.Workers,
		BatchSize:          p.BatchSize,
		FetchWait:          p.FetchWait,
		MaxInflightRecords: int64(p.MaxInflightRecords),
		MaxInflightBytes:   int64(p.MaxInflightBytes),
		ShutdownTimeout:    p.ShutdownTimeout,
	}
}

// sinkOptions configures the socket writer.
func sinkOptions(cfg *config.Config) sink.Options {
	s := &cfg.Sink
	return sink.Options{
		Path:         s.Socket,
		BackoffMin:   s.BackoffMin,
		BackoffMax:   s.BackoffMax,
		WriteTimeout: s.WriteTimeout,
		MaxConnAge:   s.MaxConnAge,
		Framing:      s.Framing,
		Instance:     s.Instance,
		AckTimeout:   s.AckTimeout,
		WindowFrames: s.WindowFrames,
		WindowBytes:  int64(s.WindowBytes),
	}
}

// drainOptions configures the reference drainer. The framing is the
// sink's: both ends of the socket read the same key. Errors name the
// configuration key of a user or group id that is not a number.
func drainOptions(cfg *config.Config) (drain.Options, error) {
	d := &cfg.Drain
	uids, err := parseIDs(d.AllowUIDs)
	if err != nil {
		return drain.Options{}, fmt.Errorf("drain.allow_uids: %w", err)
	}
	gids, err := parseIDs(d.AllowGIDs)
	if err != nil {
		return drain.Options{}, fmt.Errorf("drain.allow_gids: %w", err)
	}
	return drain.Options{
		Socket:        d.Socket,
		Out:           d.Out,
		Framing:       cfg.Sink.Framing,
		RotateBytes:   int64(d.RotateBytes),
		SocketMode:    os.FileMode(d.SocketMode),
		PeerUIDs:      uids,
		PeerGIDs:      gids,
		WriteIdentity: d.WriteIdentity,
		AcceptRewind:  d.AcceptRewind,
		WriteReceived: d.WriteReceived,
	}, nil
}

// flightOptions configures the flight recorder (when flight.enabled).
func flightOptions(cfg *config.Config) obs.FlightOptions {
	f := &cfg.Flight
	return obs.FlightOptions{
		Window:      f.Window,
		MaxBytes:    uint64(f.MaxBytes),
		Dir:         f.Dir,
		MinInterval: f.MinInterval,
		MaxFiles:    f.MaxFiles,
	}
}

// parseIDs converts numeric user or group ids.
func parseIDs(ss []string) ([]uint32, error) {
	out := make([]uint32, 0, len(ss))
	for _, s := range ss {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a numeric id", s)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}
