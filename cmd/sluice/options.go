package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/kafkasrc"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/queue"
	"github.com/sluice-dev/sluice/sink"
	sluicestatus "github.com/sluice-dev/sluice/status"
	"github.com/sluice-dev/sluice/wire"
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
	always, interval, _ := config.ParseSync(cfg.Queue.Sync) // checked by Validate
	return queue.EmbeddedOptions{
		DataDir:      cfg.Queue.DataDir,
		Listen:       cfg.Queue.Listen,
		SyncAlways:   always,
		SyncInterval: interval,
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
		Bind:               !q.Create,
		Replicas:           q.Replicas,
		Storage:            queue.Storage(q.Storage),
		Linger:             cfg.Pipeline.FetchLinger,
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
		MaxDeliver:         cfg.Queue.MaxDeliver,
		Ordered:            p.OrderBy != "",
	}
}

// processOptions configures the JSON gate and the processing steps.
func processOptions(cfg *config.Config) process.Options {
	p := &cfg.Process
	o := process.Options{
		OrderBy:         cfg.Pipeline.OrderBy,
		MaxDepth:        p.MaxDepth,
		MaxRecordBytes:  int(p.MaxRecordBytes),
		MaxMessageBytes: int(p.MaxMessageBytes),
	}
	for _, st := range p.Steps {
		s := process.Step{Filter: st.Filter, Delete: st.Delete}
		for _, a := range st.Set {
			s.Set = append(s.Set, process.Assignment{Path: a.Key, Expr: a.Value})
		}
		for _, r := range st.Rename {
			s.Rename = append(s.Rename, process.Renaming{From: r.Key, To: r.Value})
		}
		if st.Reject != nil {
			s.Reject = &process.Reject{If: st.Reject.If, Reason: st.Reject.Reason}
		}
		o.Steps = append(o.Steps, s)
	}
	return o
}

// newProcessor compiles cfg's processing steps. A step that does not
// compile is reported as a *config.FieldError at the step's line in the
// config file, with the expression and the position of the error in it.
func newProcessor(cfg *config.Config) (*process.Processor, error) {
	p, err := process.New(processOptions(cfg))
	if err == nil {
		return p, nil
	}
	var errs []error
	for _, e := range flatten(err) {
		var ce *process.CompileError
		if errors.As(e, &ce) && ce.Step < 0 {
			fe := &config.FieldError{Field: "pipeline." + ce.Field, Msg: fmt.Sprintf("expression %q at %d:%d: %s", ce.Expr, ce.Line, ce.Column, ce.Msg)}
			fe.File, fe.Line, fe.Column = cfg.Origin(fe.Field)
			if fe.File != "" {
				fe.Source = config.SourceFile
			}
			errs = append(errs, fe)
			continue
		}
		if !errors.As(e, &ce) || ce.Step >= len(cfg.Process.Steps) {
			errs = append(errs, e)
			continue
		}
		st := cfg.Process.Steps[ce.Step]
		fe := &config.FieldError{Line: st.Line, Column: st.Column, Field: fmt.Sprintf("process.steps[%d]", ce.Step)}
		if ce.Field != "" {
			fe.Field += "." + ce.Field
		}
		for _, a := range append(slices.Clone(st.Set), st.Rename...) {
			if ce.Field == "set."+a.Key || ce.Field == "rename."+a.Key {
				fe.Line, fe.Column = a.Line, a.Column
			}
		}
		if fe.Line > 0 {
			fe.File, fe.Source = cfg.File(), config.SourceFile
		}
		fe.Msg = ce.Msg
		if ce.Expr != "" {
			pos := ""
			if ce.Line > 0 {
				pos = fmt.Sprintf(" at %d:%d", ce.Line, ce.Column)
			}
			fe.Msg = fmt.Sprintf("expression %q%s: %s", ce.Expr, pos, ce.Msg)
		}
		errs = append(errs, fe)
	}
	return nil, errors.Join(errs...)
}

// flatten returns the errors joined in err (err itself if it joins none).
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
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
		MaxLineBytes: int(cfg.Drain.MaxLineBytes), // what the drainer takes
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
		MaxLine:       int(d.MaxLineBytes),
		MaxFrameBytes: int(d.MaxFrameBytes),
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

// statusOptions describes the running sluice to the status sampler.
// queueURL is the external queue's URL, credentials redacted ("" for the
// embedded one).
func statusOptions(cfg *config.Config, queueURL string) sluicestatus.Options {
	so, po := sinkOptions(cfg).WithDefaults(), pipelineOptions(cfg).WithDefaults()
	o := sluicestatus.Options{
		Version: versionString(), Framing: string(cfg.Sink.Framing), Socket: cfg.Sink.Socket, QueueURL: queueURL, Stream: cfg.Queue.Stream,
		MaxInflightRecords: po.MaxInflightRecords, MaxInflightBytes: po.MaxInflightBytes,
	}
	if cfg.Sink.Framing == wire.FramingAcked {
		o.WindowFrames, o.WindowBytes = int64(so.WindowFrames), so.WindowBytes
	}
	return o
}
