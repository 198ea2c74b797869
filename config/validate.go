package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// Limits and choices enforced by Validate.
const (
	// MaxWorkers is the most pipeline.workers allowed.
	MaxWorkers = 1024
	// MaxBatchSize is the most pipeline.batch_size allowed.
	MaxBatchSize = 10000
	// MinInflightBytes is the least pipeline.max_inflight_bytes allowed.
	MinInflightBytes = 64 * KiB
	// MaxSocketPath is the longest Unix socket path, in bytes: sun_path in
	// struct sockaddr_un holds 108 bytes on Linux, one of them the
	// terminating NUL. (It is 104 on macOS and the BSDs.) The limit applies
	// to the path as written, relative or not.
	MaxSocketPath = 107

	// AdminOff as admin.listen disables the admin server.
	AdminOff = "off"

	// QueueNATS and QueueKafka are the choices for queue.kind.
	QueueNATS  = "nats"
	QueueKafka = "kafka"
	// DiscardNew and DiscardOld are the choices for queue.discard and
	// queue.dead_letter_discard.
	DiscardNew = "new"
	DiscardOld = "old"
	// MinStreamBytes is the least non-zero queue.max_bytes and
	// queue.dead_letter_max_bytes allowed.
	MinStreamBytes = 64 * KiB
)

// Validate reports every impossible value at once, joined with errors.Join
// one per line, as *FieldError values naming the field and where its value
// came from (file:line:col, environment variable, command line or default),
// those with a line first in line order. It returns nil when the config is
// usable.
func (c *Config) Validate() error {
	return joinSorted(c.problems())
}

// problems lists what Validate reports, unsorted.
func (c *Config) problems() []*FieldError {
	v := &validator{c: c}
	q := &c.Queue

	if q.URL == "" {
		v.nonEmpty("queue.data_dir", q.DataDir)
		v.hostPort("queue.listen", q.Listen, false)
		if _, _, err := ParseSync(q.Sync); err != nil {
			v.fail("queue.sync", "%v", err)
		}
		switch q.Auth {
		case AuthToken:
		case AuthUser:
			if q.User == "" || q.Password == "" {
				v.fail("queue.auth", "\"user\" needs queue.user and queue.password (or SLUICE_QUEUE_PASSWORD) for the embedded server's clients")
			}
		case AuthNone:
			if _, _, err := net.SplitHostPort(q.Listen); err == nil && !isLoopbackListen(q.Listen) {
				v.fail("queue.auth", "\"none\" with queue.listen %s, not a loopback address: anyone on the network could publish, consume and delete the streams; use queue.auth: token (the default) or user, or listen on 127.0.0.1", q.Listen)
			}
		default:
			v.fail("queue.auth", "must be \"token\", \"user\" or \"none\" (got %q)", q.Auth)
		}
	}
	v.name("queue.stream", q.Stream)
	v.name("queue.consumer", q.Consumer)
	v.name("queue.dead_letter_stream", q.DeadLetterStream)
	if q.DeadLetterStream != "" && q.DeadLetterStream == q.Stream {
		v.fail("queue.dead_letter_stream", "must differ from queue.stream (got %q for both)", q.Stream)
	}
	if len(q.Subjects) == 0 {
		v.fail("queue.subjects", "must not be empty")
	}
	for i, s := range q.Subjects {
		if msg := subjectProblem(s, true); msg != "" {
			v.fail(fmt.Sprintf("queue.subjects[%d]", i), "%s (got %q)", msg, s)
		}
	}
	if msg := subjectProblem(q.DeadLetterSubject, false); msg != "" {
		v.fail("queue.dead_letter_subject", "%s (got %q)", msg, q.DeadLetterSubject)
	} else {
		for _, s := range q.Subjects {
			if subjectProblem(s, true) == "" && subjectMatches(s, q.DeadLetterSubject) {
				v.fail("queue.dead_letter_subject", "must not match consumed subject %q, or dead letters would be consumed again (got %q)", s, q.DeadLetterSubject)
				break
			}
		}
	}
	v.positive("queue.ack_wait", q.AckWait)
	v.atLeast("queue.max_ack_pending", q.MaxAckPending, 1)
	v.streamBytes("queue.max_bytes", q.MaxBytes)
	v.streamBytes("queue.dead_letter_max_bytes", q.DeadLetterMaxBytes)
	v.notNegative("queue.max_age", q.MaxAge)
	v.notNegative("queue.dead_letter_max_age", q.DeadLetterMaxAge)
	v.oneOf("queue.discard", q.Discard, DiscardNew, DiscardOld)
	v.oneOf("queue.dead_letter_discard", q.DeadLetterDiscard, DiscardNew, DiscardOld)
	if q.NKeyFile != "" && q.CredsFile != "" {
		v.fail("queue.nkey_file", "set either queue.nkey_file or queue.creds_file, not both")
	}
	if (q.TLS.CertFile == "") != (q.TLS.KeyFile == "") {
		if q.TLS.CertFile == "" {
			v.fail("queue.tls.key_file", "needs queue.tls.cert_file as well")
		} else {
			v.fail("queue.tls.cert_file", "needs queue.tls.key_file as well")
		}
	}

	v.oneOf("queue.kind", q.Kind, QueueNATS, QueueKafka)
	if k := &q.Kafka; q.Kind == QueueKafka {
		if len(k.Brokers) == 0 {
			v.fail("queue.kafka.brokers", "must not be empty")
		}
		if len(k.Topics) == 0 {
			v.fail("queue.kafka.topics", "must not be empty")
		}
		if k.Group == "" {
			v.fail("queue.kafka.group", "must not be empty")
		}
		if k.DeadLetterTopic == "" {
			v.fail("queue.kafka.dead_letter_topic", "must not be empty")
		} else if slices.Contains(k.Topics, k.DeadLetterTopic) {
			v.fail("queue.kafka.dead_letter_topic", "must not be one of queue.kafka.topics, or dead letters would be consumed again (got %q)", k.DeadLetterTopic)
		}
		v.positive("queue.kafka.session_timeout", k.SessionTimeout)
	}

	p := &c.Pipeline
	v.between("pipeline.workers", p.Workers, 1, MaxWorkers)
	v.between("pipeline.batch_size", p.BatchSize, 1, MaxBatchSize)
	v.positive("pipeline.fetch_wait", p.FetchWait)
	v.positive("pipeline.fetch_linger", p.FetchLinger)
	if p.MaxInflightRecords < p.BatchSize {
		v.fail("pipeline.max_inflight_records", "must be at least pipeline.batch_size (got %d < %d)", p.MaxInflightRecords, p.BatchSize)
	}
	if p.MaxInflightBytes < MinInflightBytes {
		v.fail("pipeline.max_inflight_bytes", "must be at least %s (got %s)", MinInflightBytes, p.MaxInflightBytes)
	}
	if c.Queue.MaxDeliver < 1 {
		v.fail("queue.max_deliver", "must be at least 1 (got %d)", c.Queue.MaxDeliver)
	}
	pr := &c.Process
	if pr.MaxDepth < 1 || pr.MaxDepth > 10000 {
		v.fail("process.max_depth", "must be 1 to 10000 (got %d)", pr.MaxDepth)
	}
	if pr.MaxRecordBytes < 1 {
		v.fail("process.max_record_bytes", "must be at least 1 byte (got %s)", pr.MaxRecordBytes)
	}
	if pr.MaxMessageBytes < pr.MaxRecordBytes {
		v.fail("process.max_message_bytes", "must be at least process.max_record_bytes (got %s < %s)", pr.MaxMessageBytes, pr.MaxRecordBytes)
	}
	v.positive("pipeline.shutdown_timeout", p.ShutdownTimeout)

	s := &c.Sink
	v.socket("sink.socket", s.Socket)
	v.framing("sink.framing", s.Framing)
	v.positive("sink.backoff_min", s.BackoffMin)
	v.positive("sink.backoff_max", s.BackoffMax)
	if s.BackoffMin > 0 && s.BackoffMax > 0 && s.BackoffMin > s.BackoffMax {
		v.fail("sink.backoff_min", "must not exceed sink.backoff_max (got %s > %s)", s.BackoffMin, s.BackoffMax)
	}
	v.positive("sink.write_timeout", s.WriteTimeout)
	if s.MaxConnAge < 0 {
		v.fail("sink.max_conn_age", "must not be negative; 0 means never (got %s)", s.MaxConnAge)
	}
	v.positive("sink.ack_timeout", s.AckTimeout)
	v.between("sink.window_frames", s.WindowFrames, 1, 65536)
	if s.WindowBytes < 64*KiB {
		v.fail("sink.window_bytes", "must be at least 64KiB (got %s)", s.WindowBytes)
	}

	if c.Queue.Replicas != 1 && c.Queue.Replicas != 3 && c.Queue.Replicas != 5 {
		v.fail("queue.replicas", "must be 1, 3 or 5 (got %d)", c.Queue.Replicas)
	}
	if c.Queue.Storage != "file" && c.Queue.Storage != "memory" {
		v.fail("queue.storage", "must be \"file\" or \"memory\" (got %q)", c.Queue.Storage)
	}

	d := &c.Drain
	if d.Socket != s.Socket { // when equal, sink.socket's checks cover it
		v.socket("drain.socket", d.Socket)
	}
	v.nonEmpty("drain.out", d.Out)
	if d.RotateBytes < 1 {
		v.fail("drain.rotate_bytes", "must be at least 1 byte (got %d)", int64(d.RotateBytes))
	}
	if d.SocketMode&^0o777 != 0 {
		v.fail("drain.socket_mode", "must be permission bits within 0777 (got %s)", formatMode(d.SocketMode))
	}
	v.ids("drain.allow_uids", d.AllowUIDs)
	v.ids("drain.allow_gids", d.AllowGIDs)
	if d.MaxLineBytes < 1 {
		v.fail("drain.max_line_bytes", "must be at least 1 byte (got %s)", d.MaxLineBytes)
	}
	if d.MaxFrameBytes < wire.MaxHandshakeBytes || d.MaxFrameBytes > wire.HardMaxFrameBytes {
		v.fail("drain.max_frame_bytes", "must be %s to %s (got %s)", ByteSize(wire.MaxHandshakeBytes), ByteSize(wire.HardMaxFrameBytes), d.MaxFrameBytes)
	}
	v.limitsAgree(c)

	if m := c.Runtime.MemoryLimit; m != 0 && m < 16*MiB {
		v.fail("runtime.memory_limit", "must be 0 (auto) or at least 16MiB (got %s)", m)
	}

	fl := &c.Flight
	if fl.Enabled {
		v.positive("flight.window", fl.Window)
		if fl.MaxBytes < 64*KiB {
			v.fail("flight.max_bytes", "must be at least 64KiB (got %s)", fl.MaxBytes)
		}
		v.nonEmpty("flight.dir", fl.Dir)
		v.positive("flight.min_interval", fl.MinInterval)
		v.atLeast("flight.max_files", fl.MaxFiles, 1)
		if fl.StallAfter < 0 {
			v.fail("flight.stall_after", "must not be negative; 0 turns stall detection off (got %s)", fl.StallAfter)
		}
	}

	if c.Admin.Listen != AdminOff {
		v.hostPort("admin.listen", c.Admin.Listen, true)
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err == nil && !c.Admin.AllowRemote && !isLoopbackListen(c.Admin.Listen) {
			v.fail("admin.listen", "%s is not a loopback address: /metrics, /healthz, /readyz and /status need no token and would be open to the network; listen on 127.0.0.1, or set admin.allow_remote: true to serve them beyond this host on purpose (the private endpoints still need admin.token)", c.Admin.Listen)
		}
		if c.Admin.Token == "" && c.Admin.TokenFile == "" {
			v.fail("admin.token_file", "must name a file when admin.token is empty: the private endpoints need a token")
		}
	}
	v.oneOf("log.format", c.Log.Format, "text", "json")
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")

	for i, f := range c.Faults {
		point, action, ok := strings.Cut(f, "=")
		if !ok || strings.TrimSpace(point) == "" || strings.TrimSpace(action) == "" {
			v.fail(fmt.Sprintf("faults[%d]", i), "must be point=action, e.g. \"sink.write=delay(5ms)\" (got %q)", f)
			continue
		}
		if _, err := fault.ParseAction(strings.TrimSpace(action)); err != nil {
			v.fail(fmt.Sprintf("faults[%d]", i), "%v", err)
		}
	}
	return v.errs
}

// isLoopbackListen reports whether a listen address binds only loopback.
func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckFaultPoints reports, located like Validate's problems, every faults
// entry naming a point the running program does not have (the points are
// registered by the packages linked in, so Validate, which config's own
// tests run without them, checks only the action).
func (c *Config) CheckFaultPoints() error {
	var errs []error
	for i, f := range c.Faults {
		name, _, _ := strings.Cut(f, "=")
		if _, ok := fault.Lookup(strings.TrimSpace(name)); !ok {
			var names []string
			for _, p := range fault.All() {
				names = append(names, p.Name())
			}
			errs = append(errs, c.Problem(fmt.Sprintf("faults[%d]", i), "unknown fault point %q; the points are %s", strings.TrimSpace(name), strings.Join(names, ", ")))
		}
	}
	return errors.Join(errs...)
}

// Problem returns a *FieldError about key located where its value came
// from (file, line and column for a value from the config file), for
// checks a caller makes beyond Validate's, such as fault point names that
// only the linked program knows.
func (c *Config) Problem(key, format string, args ...any) error {
	v := &validator{c: c}
	v.fail(key, format, args...)
	return v.errs[0]
}

type validator struct {
	c    *Config
	errs []*FieldError
}

// fail records a problem with key, located where its value came from.
func (v *validator) fail(key, format string, args ...any) {
	fe := &FieldError{Field: key, Msg: fmt.Sprintf(format, args...)}
	if v.c.src != nil && v.c.src.loaded { // else built in Go code: the source is unknown
		fe.Source = SourceDefault
	}
	if o, ok := v.c.src.lookup(key); ok {
		fe.Source = o.source
		if o.source == SourceFile {
			fe.File, fe.Line, fe.Column = v.c.src.file, o.line, o.column
		}
	}
	v.errs = append(v.errs, fe)
}

// ids checks a list of numeric user or group ids.
func (v *validator) ids(key string, ids []string) {
	for i, id := range ids {
		if _, err := strconv.ParseUint(id, 10, 32); err != nil {
			v.fail(fmt.Sprintf("%s[%d]", key, i), "must be a numeric id (got %q)", id)
		}
	}
}

func (v *validator) nonEmpty(key, s string) bool {
	if strings.TrimSpace(s) == "" {
		v.fail(key, "must not be empty")
		return false
	}
	return true
}

func (v *validator) between(key string, n, lo, hi int) {
	switch {
	case n < lo:
		v.fail(key, "must be at least %d (got %d)", lo, n)
	case n > hi:
		v.fail(key, "must be at most %d (got %d)", hi, n)
	}
}

func (v *validator) atLeast(key string, n, lo int) {
	if n < lo {
		v.fail(key, "must be at least %d (got %d)", lo, n)
	}
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.fail(key, "must be positive (got %s)", d)
	}
}

func (v *validator) notNegative(key string, d time.Duration) {
	if d < 0 {
		v.fail(key, "must not be negative; 0 means none (got %s)", d)
	}
}

// streamBytes checks a stream's byte limit: 0 (none) or at least
// MinStreamBytes.
func (v *validator) streamBytes(key string, b ByteSize) {
	if b != 0 && b < MinStreamBytes {
		v.fail(key, "must be at least %s, or 0 for no limit (got %s)", MinStreamBytes, b)
	}
}

// framing checks that f is one of wire.Framings (the empty name, which
// wire.ParseFraming would take for lines, is not: a config always names it).
func (v *validator) framing(key string, f wire.Framing) {
	choices := make([]string, len(wire.Framings))
	for i, c := range wire.Framings {
		choices[i] = string(c)
	}
	v.oneOf(key, string(f), choices...)
}

func (v *validator) oneOf(key, s string, choices ...string) {
	for _, c := range choices {
		if s == c {
			return
		}
	}
	q := make([]string, len(choices))
	for i, c := range choices {
		q[i] = strconv.Quote(c)
	}
	if len(q) == 2 {
		v.fail(key, "must be %s or %s (got %q)", q[0], q[1], s)
		return
	}
	v.fail(key, "must be one of %s (got %q)", strings.Join(q, ", "), s)
}

func (v *validator) socket(key, path string) {
	if !v.nonEmpty(key, path) {
		return
	}
	if len(path) > MaxSocketPath {
		v.fail(key, "must be at most %d bytes, the Linux limit for a Unix socket path (got %d bytes)", MaxSocketPath, len(path))
	}
}

// hostPort checks addr is host:port with a numeric port (the host may be
// empty, meaning every interface).
func (v *validator) hostPort(key, addr string, orOff bool) {
	want := "host:port"
	if orOff {
		want = `host:port or "off"`
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(key, "must be %s (got %q)", want, addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.fail(key, "must have a port from 0 to 65535 (got %q)", addr)
	}
}

// name checks a JetStream stream or consumer name.
func (v *validator) name(key, s string) {
	if !v.nonEmpty(key, s) {
		return
	}
	if strings.ContainsAny(s, " \t\r\n.*>/\\") {
		v.fail(key, "must not contain whitespace, '.', '*', '>', '/' or '\\' (got %q)", s)
	}
}

// subjectProblem describes what makes s an invalid NATS subject, "" if
// nothing. Wildcards are allowed only when wild is true.
func subjectProblem(s string, wild bool) string {
	if s == "" {
		return "must not be empty"
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return "must be a NATS subject without whitespace"
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return "must be a NATS subject without empty tokens"
		case (t == "*" || t == ">") && !wild:
			return "must be a NATS subject without wildcards"
		case t == ">" && i != len(toks)-1:
			return "must be a NATS subject with '>' only as the last token"
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return "must be a NATS subject with wildcards only as whole tokens"
		}
	}
	return ""
}

// subjectMatches reports whether the literal subject matches pattern, where
// "*" matches one token and ">" one or more trailing tokens.
func subjectMatches(pattern, subject string) bool {
	pt := strings.Split(pattern, ".")
	st := strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || p != "*" && p != st[i] {
			return false
		}
	}
	return len(pt) == len(st)
}

// limitsAgree checks that a record the processing gate lets through
// (process.max_record_bytes) always fits what the drainer accepts in the
// configured framing: a line of drain.max_line_bytes (lines), or one
// record, with its identity, in a DATA frame of drain.max_frame_bytes
// (acked). Otherwise such a record would pass the gate and then never be
// delivered.
func (v *validator) limitsAgree(c *Config) {
	rec, d := c.Process.MaxRecordBytes, &c.Drain
	if rec < 1 {
		return // reported on its own
	}
	switch c.Sink.Framing {
	case wire.FramingLines:
		if d.MaxLineBytes >= 1 && rec > d.MaxLineBytes {
			v.fail("process.max_record_bytes", "%s is larger than drain.max_line_bytes (%s): a record could pass the gate and then not fit the drainer's line limit; raise drain.max_line_bytes (the drainer must use the same value) or lower process.max_record_bytes", rec, d.MaxLineBytes)
		}
	case wire.FramingAcked:
		// The largest stream name is the frame's worst case.
		need := ByteSize(wire.DataBodySize([]record.Record{{ID: record.ID{Stream: strings.Repeat("s", wire.MaxStreamLen)}}})) + rec
		if d.MaxFrameBytes >= wire.MaxHandshakeBytes && need > d.MaxFrameBytes {
			v.fail("process.max_record_bytes", "%s is larger than drain.max_frame_bytes (%s) allows for one record with its identity (%s): a record could pass the gate and then not fit any DATA frame; raise drain.max_frame_bytes (the drainer must grant it) or lower process.max_record_bytes", rec, d.MaxFrameBytes, need)
		}
	}
}
