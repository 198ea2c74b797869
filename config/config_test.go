package config_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// clearEnv hides any SLUICE_* variable of the machine running the tests
// (an empty variable counts as unset).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SLUICE_") {
			t.Setenv(k, "")
		}
	}
}

// loadString writes text to sluice.yaml in a fresh working directory and
// loads it, so error messages start with "sluice.yaml:". It leaves the
// environment alone: call clearEnv first.
func loadString(t *testing.T, text string) (*config.Config, error) {
	t.Helper()
	t.Chdir(t.TempDir())
	if err := os.WriteFile("sluice.yaml", []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load("sluice.yaml")
}

func mustLoad(t *testing.T, path string) *config.Config {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load(%q): %v", path, err)
	}
	return c
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestDefault(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() is invalid: %v", err)
	}
	if want := min(runtime.NumCPU(), config.MaxWorkers); c.Pipeline.Workers != want {
		t.Errorf("Workers = %d, want %d", c.Pipeline.Workers, want)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"queue.url", c.Queue.URL, ""},
		{"queue.data_dir", c.Queue.DataDir, "./sluice-data"},
		{"queue.listen", c.Queue.Listen, "127.0.0.1:4222"},
		{"queue.stream", c.Queue.Stream, "INGEST"},
		{"queue.subjects", c.Queue.Subjects, []string{"ingest.>"}},
		{"queue.consumer", c.Queue.Consumer, "sluice"},
		{"queue.dead_letter_subject", c.Queue.DeadLetterSubject, "dlq.ingest"},
		{"queue.dead_letter_stream", c.Queue.DeadLetterStream, "DLQ"},
		{"queue.ack_wait", c.Queue.AckWait, 30 * time.Second},
		{"queue.max_ack_pending", c.Queue.MaxAckPending, 20000},
		{"pipeline.batch_size", c.Pipeline.BatchSize, 500},
		{"pipeline.fetch_wait", c.Pipeline.FetchWait, 200 * time.Millisecond},
		{"pipeline.max_inflight_records", c.Pipeline.MaxInflightRecords, 50000},
		{"pipeline.max_inflight_bytes", int64(c.Pipeline.MaxInflightBytes), int64(16 << 20)},
		{"pipeline.shutdown_timeout", c.Pipeline.ShutdownTimeout, 10 * time.Second},
		{"sink.socket", c.Sink.Socket, "./sluice.sock"},
		{"sink.framing", c.Sink.Framing, wire.FramingLines},
		{"sink.backoff_min", c.Sink.BackoffMin, 50 * time.Millisecond},
		{"sink.backoff_max", c.Sink.BackoffMax, 5 * time.Second},
		{"sink.write_timeout", c.Sink.WriteTimeout, 10 * time.Second},
		{"sink.max_conn_age", c.Sink.MaxConnAge, time.Duration(0)},
		{"drain.socket", c.Drain.Socket, "./sluice.sock"},
		{"drain.out", c.Drain.Out, "./sluice-out"},
		{"drain.rotate_bytes", int64(c.Drain.RotateBytes), int64(64 << 20)},
		{"drain.socket_mode", c.Drain.SocketMode, uint32(0o600)},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:9464"},
		{"log.format", c.Log.Format, "text"},
		{"log.level", c.Log.Level, "info"},
		{"faults", len(c.Faults), 0},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
}

func TestLoad_NoFile(t *testing.T) {
	clearEnv(t)
	c := mustLoad(t, "")
	if got, want := config.WithoutSources(*c), config.Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(\"\") = %+v, want Default() %+v", got, want)
	}
}

// TestLoad_Example keeps sluice.example.yaml honest: it must load to exactly
// Default(), and write out every field (pipeline.workers and drain.socket,
// whose defaults are computed, commented out).
func TestLoad_Example(t *testing.T) {
	clearEnv(t)
	const path = "../sluice.example.yaml"
	c := mustLoad(t, path)
	if got, want := config.WithoutSources(*c), config.Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("%s differs from Default():\n got %+v\nwant %+v", path, got, want)
	}
	commented := map[string]string{"pipeline.workers": "  # workers: ", "drain.socket": "  # socket: "}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fromFile := config.FileKeys(c)
	for _, kt := range config.Keys() {
		key, _, _ := strings.Cut(kt, " ")
		if line, ok := commented[key]; ok {
			if !strings.Contains(string(text), "\n"+line) {
				t.Errorf("%s: want %s commented out as %q", path, key, line)
			}
			continue
		}
		if !slices.Contains(fromFile, key) {
			t.Errorf("%s does not set %s", path, key)
		}
	}
}

func TestLoad_Good(t *testing.T) {
	clearEnv(t)
	c := mustLoad(t, "testdata/good.yaml")
	if c.Pipeline.Workers != 8 || c.Sink.Framing != "acked" || c.Drain.SocketMode != 0o660 ||
		c.Pipeline.MaxInflightBytes != 32*config.MiB || c.Admin.Listen != "off" ||
		c.Queue.AckWait != time.Minute || !slices.Equal(c.Queue.Subjects, []string{"orders.>", "refunds.*"}) {
		t.Errorf("good.yaml loaded wrong: %+v", c)
	}
	if c.Drain.Socket != "/run/sluice/out.sock" {
		t.Errorf("drain.socket = %q, want it to follow sink.socket", c.Drain.Socket)
	}
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/good.golden", b)
}

// TestLoad_Bad pins the exact output `sluice check --config
// testdata/bad.yaml` prints; the CLI's test asserts the same text.
func TestLoad_Bad(t *testing.T) {
	clearEnv(t)
	_, err := config.Load("testdata/bad.yaml")
	if err == nil {
		t.Fatal("Load(bad.yaml) succeeded")
	}
	if !errors.Is(err, config.ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
	}
	golden(t, "testdata/bad.golden", []byte(err.Error()+"\n"))
}

func TestLoad_ReadError(t *testing.T) {
	clearEnv(t)
	_, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || errors.Is(err, config.ErrInvalid) {
		t.Errorf("err = %v, want a not-exist error that is not ErrInvalid", err)
	}
}

// TestLoad_Rejects covers every rejection, one problem per input, with the
// exact message.
func TestLoad_Rejects(t *testing.T) {
	long := "/tmp/" + strings.Repeat("s", config.MaxSocketPath-4) // 108 bytes
	tests := []struct {
		name, yaml, want string
	}{
		// values Validate rejects
		{"workers zero", "pipeline:\n  workers: 0\n",
			`sluice.yaml:2:3: pipeline.workers: must be at least 1 (got 0)`},
		{"workers too many", "pipeline:\n  workers: 1025\n",
			`sluice.yaml:2:3: pipeline.workers: must be at most 1024 (got 1025)`},
		{"batch zero", "pipeline:\n  batch_size: 0\n",
			`sluice.yaml:2:3: pipeline.batch_size: must be at least 1 (got 0)`},
		{"batch too big", "pipeline:\n  batch_size: 10001\n",
			`sluice.yaml:2:3: pipeline.batch_size: must be at most 10000 (got 10001)`},
		{"fetch_wait zero", "pipeline:\n  fetch_wait: 0s\n",
			`sluice.yaml:2:3: pipeline.fetch_wait: must be positive (got 0s)`},
		{"fetch_wait negative", "pipeline:\n  fetch_wait: -1s\n",
			`sluice.yaml:2:3: pipeline.fetch_wait: must be positive (got -1s)`},
		{"shutdown_timeout zero", "pipeline:\n  shutdown_timeout: 0\n",
			`sluice.yaml:2:3: pipeline.shutdown_timeout: must be positive (got 0s)`},
		{"inflight records below batch", "pipeline:\n  batch_size: 600\n  max_inflight_records: 599\n",
			`sluice.yaml:3:3: pipeline.max_inflight_records: must be at least pipeline.batch_size (got 599 < 600)`},
		{"inflight bytes small", "pipeline:\n  max_inflight_bytes: 65535\n",
			`sluice.yaml:2:3: pipeline.max_inflight_bytes: must be at least 64KiB (got 65535)`},
		{"inflight bytes small unit", "pipeline:\n  max_inflight_bytes: 1KiB\n",
			`sluice.yaml:2:3: pipeline.max_inflight_bytes: must be at least 64KiB (got 1KiB)`},
		{"ack_wait zero", "queue:\n  ack_wait: 0s\n",
			`sluice.yaml:2:3: queue.ack_wait: must be positive (got 0s)`},
		{"max_ack_pending zero", "queue:\n  max_ack_pending: 0\n",
			`sluice.yaml:2:3: queue.max_ack_pending: must be at least 1 (got 0)`},
		{"stream max_bytes small", "queue:\n  max_bytes: 1KiB\n",
			`sluice.yaml:2:3: queue.max_bytes: must be at least 64KiB, or 0 for no limit (got 1KiB)`},
		{"dead-letter max_bytes small", "queue:\n  dead_letter_max_bytes: 1000\n",
			`sluice.yaml:2:3: queue.dead_letter_max_bytes: must be at least 64KiB, or 0 for no limit (got 1000)`},
		{"stream max_age negative", "queue:\n  max_age: -1h\n",
			`sluice.yaml:2:3: queue.max_age: must not be negative; 0 means none (got -1h0m0s)`},
		{"dead-letter max_age negative", "queue:\n  dead_letter_max_age: -1s\n",
			`sluice.yaml:2:3: queue.dead_letter_max_age: must not be negative; 0 means none (got -1s)`},
		{"discard unknown", "queue:\n  discard: oldest\n",
			`sluice.yaml:2:3: queue.discard: must be "new" or "old" (got "oldest")`},
		{"dead-letter discard unknown", "queue:\n  dead_letter_discard: \"\"\n",
			`sluice.yaml:2:3: queue.dead_letter_discard: must be "new" or "old" (got "")`},
		{"write_timeout zero", "sink:\n  write_timeout: 0s\n",
			`sluice.yaml:2:3: sink.write_timeout: must be positive (got 0s)`},
		{"backoff_min zero", "sink:\n  backoff_min: 0s\n",
			`sluice.yaml:2:3: sink.backoff_min: must be positive (got 0s)`},
		{"max_conn_age negative", "sink:\n  max_conn_age: -5m\n",
			`sluice.yaml:2:3: sink.max_conn_age: must not be negative; 0 means never (got -5m0s)`},
		{"backoff inverted", "sink:\n  backoff_min: 10s\n  backoff_max: 5s\n",
			`sluice.yaml:2:3: sink.backoff_min: must not exceed sink.backoff_max (got 10s > 5s)`},
		{"framing", "sink:\n  framing: json\n",
			`sluice.yaml:2:3: sink.framing: must be "lines" or "acked" (got "json")`},
		{"log format", "log:\n  format: xml\n",
			`sluice.yaml:2:3: log.format: must be "text" or "json" (got "xml")`},
		{"log level", "log:\n  level: verbose\n",
			`sluice.yaml:2:3: log.level: must be one of "debug", "info", "warn", "error" (got "verbose")`},
		{"empty socket", "sink:\n  socket: \"\"\n",
			`sluice.yaml:2:3: sink.socket: must not be empty`},
		{"long socket", "sink:\n  socket: " + long + "\n",
			`sluice.yaml:2:3: sink.socket: must be at most 107 bytes, the Linux limit for a Unix socket path (got 108 bytes)`},
		{"empty drain socket", "drain:\n  socket: \"\"\n",
			`sluice.yaml:2:3: drain.socket: must not be empty`},
		{"long drain socket", "drain:\n  socket: " + long + "\n",
			`sluice.yaml:2:3: drain.socket: must be at most 107 bytes, the Linux limit for a Unix socket path (got 108 bytes)`},
		{"drain out empty", "drain:\n  out: \"\"\n",
			`sluice.yaml:2:3: drain.out: must not be empty`},
		{"rotate_bytes zero", "drain:\n  rotate_bytes: 0\n",
			`sluice.yaml:2:3: drain.rotate_bytes: must be at least 1 byte (got 0)`},
		{"queue auth unknown", "queue:\n  auth: open\n",
			`sluice.yaml:2:3: queue.auth: must be "token", "user" or "none" (got "open")`},
		{"queue auth user without password", "queue:\n  auth: user\n  user: sluice\n",
			`sluice.yaml:2:3: queue.auth: "user" needs queue.user and queue.password (or SLUICE_QUEUE_PASSWORD) for the embedded server's clients`},
		{"queue auth none on the network", "queue:\n  auth: none\n  listen: 0.0.0.0:4222\n",
			`sluice.yaml:2:3: queue.auth: "none" with queue.listen 0.0.0.0:4222, not a loopback address: anyone on the network could publish, consume and delete the streams; use queue.auth: token (the default) or user, or listen on 127.0.0.1`},
		{"max_line_bytes zero", "drain:\n  max_line_bytes: 0\n",
			`sluice.yaml:2:3: drain.max_line_bytes: must be at least 1 byte (got 0)`},
		{"max_frame_bytes too small", "drain:\n  max_frame_bytes: 1KiB\n",
			`sluice.yaml:2:3: drain.max_frame_bytes: must be 4KiB to 2147483647 (got 1KiB)`},
		{"record larger than the line", "process:\n  max_record_bytes: 2MiB\n",
			`sluice.yaml:2:3: process.max_record_bytes: 2MiB is larger than drain.max_line_bytes (1MiB): a record could pass the gate and then not fit the drainer's line limit; raise drain.max_line_bytes (the drainer must use the same value) or lower process.max_record_bytes`},
		{"record larger than the frame", "sink:\n  framing: acked\nprocess:\n  max_record_bytes: 4MiB\n",
			`sluice.yaml:4:3: process.max_record_bytes: 4MiB is larger than drain.max_frame_bytes (4MiB) allows for one record with its identity (4194601): a record could pass the gate and then not fit any DATA frame; raise drain.max_frame_bytes (the drainer must grant it) or lower process.max_record_bytes`},
		{"socket_mode sticky", "drain:\n  socket_mode: 01777\n",
			`sluice.yaml:2:3: drain.socket_mode: must be permission bits within 0777 (got 01777)`},
		{"dead letter under >", "queue:\n  dead_letter_subject: ingest.dead\n",
			`sluice.yaml:2:3: queue.dead_letter_subject: must not match consumed subject "ingest.>", or dead letters would be consumed again (got "ingest.dead")`},
		{"dead letter under *", "queue:\n  subjects: [a.*, b.>]\n  dead_letter_subject: a.dead\n",
			`sluice.yaml:3:3: queue.dead_letter_subject: must not match consumed subject "a.*", or dead letters would be consumed again (got "a.dead")`},
		{"dead letter exact", "queue:\n  subjects: [orders]\n  dead_letter_subject: orders\n",
			`sluice.yaml:3:3: queue.dead_letter_subject: must not match consumed subject "orders", or dead letters would be consumed again (got "orders")`},
		{"dead letter wildcard", "queue:\n  dead_letter_subject: dlq.*\n",
			`sluice.yaml:2:3: queue.dead_letter_subject: must be a NATS subject without wildcards (got "dlq.*")`},
		{"subjects empty", "queue:\n  subjects: []\n",
			`sluice.yaml:2:3: queue.subjects: must not be empty`},
		{"subject empty token", "queue:\n  subjects:\n    - ingest.>\n    - a..b\n",
			`sluice.yaml:4:7: queue.subjects[1]: must be a NATS subject without empty tokens (got "a..b")`},
		{"subject > not last", "queue:\n  subjects:\n    - a.>.b\n",
			`sluice.yaml:3:7: queue.subjects[0]: must be a NATS subject with '>' only as the last token (got "a.>.b")`},
		{"stream name", "queue:\n  stream: in.gest\n",
			`sluice.yaml:2:3: queue.stream: must not contain whitespace, '.', '*', '>', '/' or '\' (got "in.gest")`},
		{"dead letter stream same", "queue:\n  dead_letter_stream: INGEST\n",
			`sluice.yaml:2:3: queue.dead_letter_stream: must differ from queue.stream (got "INGEST" for both)`},
		{"consumer empty", "queue:\n  consumer: \"\"\n",
			`sluice.yaml:2:3: queue.consumer: must not be empty`},
		{"nkey and creds", "queue:\n  nkey_file: a.nk\n  creds_file: b.creds\n",
			`sluice.yaml:2:3: queue.nkey_file: set either queue.nkey_file or queue.creds_file, not both`},
		{"tls cert without key", "queue:\n  tls:\n    cert_file: c.pem\n",
			`sluice.yaml:3:5: queue.tls.cert_file: needs queue.tls.key_file as well`},
		{"queue kind", "queue:\n  kind: rabbit\n",
			`sluice.yaml:2:3: queue.kind: must be "nats" or "kafka" (got "rabbit")`},
		{"kafka dead letter consumed", "queue:\n  kind: kafka\n  kafka:\n    topics: [a, b]\n    dead_letter_topic: b\n",
			`sluice.yaml:5:5: queue.kafka.dead_letter_topic: must not be one of queue.kafka.topics, or dead letters would be consumed again (got "b")`},
		{"kafka no brokers", "queue:\n  kind: kafka\n  kafka:\n    brokers: []\n",
			`sluice.yaml:4:5: queue.kafka.brokers: must not be empty`},
		{"queue listen", "queue:\n  listen: nowhere\n",
			`sluice.yaml:2:3: queue.listen: must be host:port (got "nowhere")`},
		{"admin listen", "admin:\n  listen: 9464\n",
			`sluice.yaml:2:3: admin.listen: must be host:port or "off" (got "9464")`},
		{"admin beyond loopback", "admin:\n  listen: \"0.0.0.0:9464\"\n",
			`sluice.yaml:2:3: admin.listen: 0.0.0.0:9464 is not a loopback address: /metrics, /healthz, /readyz and /status need no token and would be open to the network; listen on 127.0.0.1, or set admin.allow_remote: true to serve them beyond this host on purpose (the private endpoints still need admin.token)`},
		{"admin port", "admin:\n  listen: localhost:99999\n",
			`sluice.yaml:2:3: admin.listen: must have a port from 0 to 65535 (got "localhost:99999")`},
		{"fault without action", "faults:\n  - sink.write\n",
			`sluice.yaml:2:5: faults[0]: must be point=action, e.g. "sink.write=delay(5ms)" (got "sink.write")`},

		// values that do not parse, wrong types, wrong shapes
		{"workers not a number", "pipeline:\n  workers: many\n",
			`sluice.yaml:2:3: pipeline.workers: must be an integer (got "many")`},
		{"workers a list", "pipeline:\n  workers: [1, 2]\n",
			`sluice.yaml:2:3: pipeline.workers: must be an integer (got a list)`},
		{"duration word", "pipeline:\n  fetch_wait: fast\n",
			`sluice.yaml:2:3: pipeline.fetch_wait: must be a duration like "200ms" or "5s" (got "fast")`},
		{"duration without unit", "pipeline:\n  fetch_wait: 200\n",
			`sluice.yaml:2:3: pipeline.fetch_wait: must be a duration with a unit, like "200ms" or "5s" (got "200")`},
		{"byte size word", "pipeline:\n  max_inflight_bytes: lots\n",
			`sluice.yaml:2:3: pipeline.max_inflight_bytes: must be a byte size like 16777216 or "16MiB" (got "lots")`},
		{"byte size negative", "drain:\n  rotate_bytes: -1\n",
			`sluice.yaml:2:3: drain.rotate_bytes: must be a byte size like 16777216 or "16MiB" (got "-1")`},
		{"mode not octal", "drain:\n  socket_mode: 384\n",
			`sluice.yaml:2:3: drain.socket_mode: must be octal permission bits like 0600 (got "384")`},
		{"list given a string", "queue:\n  subjects: ingest.>\n",
			`sluice.yaml:2:3: queue.subjects: must be a list (got "ingest.>")`},
		{"list item a mapping", "faults:\n  - a: b\n",
			`sluice.yaml:2:6: faults[0]: must be a string (got a mapping)`},
		{"string given a mapping", "queue:\n  url:\n    host: x\n",
			`sluice.yaml:2:3: queue.url: must be a string (got a mapping)`},
		{"section a scalar", "pipeline: 4\n",
			`sluice.yaml:1:11: pipeline: must be a mapping (got "4")`},
		{"top level a list", "- queue\n",
			`sluice.yaml:1:1: must be a mapping of sections like "queue:" (got a list)`},
		{"two documents", "log:\n  level: info\n---\nlog:\n  level: debug\n",
			`sluice.yaml:4:4: only one YAML document is allowed`},
		{"duplicate key", "pipeline:\n  workers: 2\n  workers: 3\n",
			`sluice.yaml:3:3: pipeline.workers: set twice (first at line 2): keep one`},
		{"duplicate section", "sink:\n  framing: lines\nsink:\n  socket: x.sock\n",
			`sluice.yaml:3:1: sink: set twice (first at line 1): keep one`},
		{"syntax", "queue: [a, b\n",
			`sluice.yaml:1:8: sequence end token ']' not found`},

		// unknown fields, with and without a suggestion
		{"unknown with sibling suggestion", "pipeline:\n  wrokers: 2\n",
			`sluice.yaml:2:3: pipeline.wrokers: unknown field (did you mean "workers"?)`},
		{"unknown section", "pipelin:\n  workers: 2\n",
			`sluice.yaml:1:1: pipelin: unknown field (did you mean "pipeline"?)`},
		{"unknown in another section", "sink:\n  socket_mode: 0600\n",
			`sluice.yaml:2:3: sink.socket_mode: unknown field (did you mean "drain.socket_mode"?)`},
		{"unknown nested", "queue:\n  tls:\n    ca: x\n",
			`sluice.yaml:3:5: queue.tls.ca: unknown field`},
		{"unknown far from anything", "colour: red\n",
			`sluice.yaml:1:1: colour: unknown field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			c, err := loadString(t, tt.yaml)
			if err == nil {
				t.Fatalf("Load accepted %q: %+v", tt.yaml, c)
			}
			if err.Error() != tt.want {
				t.Errorf("Load(%q):\n got %s\nwant %s", tt.yaml, err, tt.want)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, config.ErrInvalid) {
				t.Errorf("err %T is not a *FieldError wrapping ErrInvalid", err)
			}
		})
	}
}

// TestLoad_Accepts covers the edges that must still load.
func TestLoad_Accepts(t *testing.T) {
	exact := "/tmp/" + strings.Repeat("s", config.MaxSocketPath-5) // 107 bytes
	tests := []struct {
		name, yaml string
		check      func(*config.Config) bool
	}{
		{"empty file", "", func(c *config.Config) bool { return c.Pipeline.BatchSize == 500 }},
		{"comments only", "# nothing\n", func(c *config.Config) bool { return c.Sink.Framing == "lines" }},
		{"null keeps default", "pipeline:\n  batch_size:\n", func(c *config.Config) bool { return c.Pipeline.BatchSize == 500 }},
		{"empty section", "sink:\n", func(c *config.Config) bool { return c.Sink.Socket == "./sluice.sock" }},
		{"socket at the limit", "sink:\n  socket: " + exact + "\n", func(c *config.Config) bool { return len(c.Sink.Socket) == 107 }},
		{"limits inclusive", "pipeline:\n  workers: 1024\n  batch_size: 10000\n  max_inflight_records: 10000\n  max_inflight_bytes: 64KiB\n",
			func(c *config.Config) bool {
				return c.Pipeline.Workers == 1024 && c.Pipeline.MaxInflightBytes == 64*config.KiB
			}},
		{"byte units", "pipeline:\n  max_inflight_bytes: 16 MB\ndrain:\n  rotate_bytes: 1gib\n",
			func(c *config.Config) bool {
				return c.Pipeline.MaxInflightBytes == 16e6 && c.Drain.RotateBytes == config.GiB
			}},
		{"mode forms", "drain:\n  socket_mode: 0o640\n", func(c *config.Config) bool { return c.Drain.SocketMode == 0o640 }},
		{"mode quoted", "drain:\n  socket_mode: \"660\"\n", func(c *config.Config) bool { return c.Drain.SocketMode == 0o660 }},
		{"zero duration", "sink:\n  max_conn_age: 0\n", func(c *config.Config) bool { return c.Sink.MaxConnAge == 0 }},
		{"compound duration", "queue:\n  ack_wait: 1m30s\n", func(c *config.Config) bool { return c.Queue.AckWait == 90*time.Second }},
		{"backoff equal", "sink:\n  backoff_min: 1s\n  backoff_max: 1s\n", func(c *config.Config) bool { return c.Sink.BackoffMax == time.Second }},
		{"dead letter outside subjects", "queue:\n  subjects: [a.*]\n  dead_letter_subject: a.b.dead\n",
			func(c *config.Config) bool { return c.Queue.DeadLetterSubject == "a.b.dead" }},
		{"admin off", "admin:\n  listen: \"off\"\n", func(c *config.Config) bool { return c.Admin.Listen == "off" }},
		{"admin any interface, allowed", "admin:\n  listen: \":9464\"\n  allow_remote: true\n", func(c *config.Config) bool { return c.Admin.Listen == ":9464" }},
		{"anchor and alias", "sink:\n  backoff_max: &b 2s\n  write_timeout: *b\n",
			func(c *config.Config) bool { return c.Sink.WriteTimeout == 2*time.Second }},
		{"drain socket set apart", "sink:\n  socket: /tmp/a.sock\ndrain:\n  socket: /tmp/b.sock\n",
			func(c *config.Config) bool { return c.Drain.Socket == "/tmp/b.sock" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			c, err := loadString(t, tt.yaml)
			if err != nil {
				t.Fatalf("Load(%q): %v", tt.yaml, err)
			}
			if !tt.check(c) {
				t.Errorf("Load(%q) = %+v", tt.yaml, c)
			}
		})
	}
}

// TestLoad_ManyErrors: every problem is reported at once, one per line,
// sorted by line, whatever order the checks run in.
func TestLoad_ManyErrors(t *testing.T) {
	text := `log:
  level: loud
sink:
  framing: json
  sockett: x
pipeline:
  workers: many
  batch_size: 0
`
	clearEnv(t)
	_, err := loadString(t, text)
	want := `sluice.yaml:2:3: log.level: must be one of "debug", "info", "warn", "error" (got "loud")
sluice.yaml:4:3: sink.framing: must be "lines" or "acked" (got "json")
sluice.yaml:5:3: sink.sockett: unknown field (did you mean "socket"?)
sluice.yaml:7:3: pipeline.workers: must be an integer (got "many")
sluice.yaml:8:3: pipeline.batch_size: must be at least 1 (got 0)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestLoad_Env(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte("pipeline:\n  workers: 2\nsink:\n  framing: lines\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_PIPELINE_WORKERS", "7")
	t.Setenv("SLUICE_SINK_FRAMING", "acked")
	t.Setenv("SLUICE_QUEUE_URL", "nats://a:4222,nats://b:4222")
	t.Setenv("SLUICE_QUEUE_SUBJECTS", " a.> , b.*,")
	t.Setenv("SLUICE_FAULTS", "sink.write=delay(1ms),sink.reconnect.before_close=error(0.5)")
	t.Setenv("SLUICE_QUEUE_TLS_CA_FILE", "/etc/ca.pem")
	t.Setenv("SLUICE_QUEUE_PASSWORD", "hunter2")
	t.Setenv("SLUICE_QUEUE_TOKEN", "tok")
	t.Setenv("SLUICE_PIPELINE_FETCH_WAIT", "1s")
	t.Setenv("SLUICE_DRAIN_ROTATE_BYTES", "1GiB")
	t.Setenv("SLUICE_DRAIN_SOCKET_MODE", "0640")
	t.Setenv("SLUICE_SINK_SOCKET", "/tmp/env.sock")
	t.Setenv("SLUICE_LOG_LEVEL", "") // empty: unset
	c := mustLoad(t, path)
	checks := []struct {
		name      string
		got, want any
	}{
		{"workers (env over file)", c.Pipeline.Workers, 7},
		{"framing (env over file)", c.Sink.Framing, wire.FramingAcked},
		{"url", c.Queue.URL, "nats://a:4222,nats://b:4222"},
		{"subjects", c.Queue.Subjects, []string{"a.>", "b.*"}},
		{"faults", c.Faults, []string{"sink.write=delay(1ms)", "sink.reconnect.before_close=error(0.5)"}},
		{"ca_file", c.Queue.TLS.CAFile, "/etc/ca.pem"},
		{"password", c.Queue.Password, "hunter2"},
		{"token", c.Queue.Token, "tok"},
		{"fetch_wait", c.Pipeline.FetchWait, time.Second},
		{"rotate_bytes", c.Drain.RotateBytes, config.GiB},
		{"socket_mode", c.Drain.SocketMode, uint32(0o640)},
		{"sink.socket", c.Sink.Socket, "/tmp/env.sock"},
		{"drain.socket follows sink.socket", c.Drain.Socket, "/tmp/env.sock"},
		{"log.level (empty variable ignored)", c.Log.Level, "info"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
}

func TestLoad_EnvErrors(t *testing.T) {
	t.Run("unparsable", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("SLUICE_PIPELINE_WORKERS", "many")
		t.Setenv("SLUICE_SINK_BACKOFF_MAX", "soon")
		_, err := config.Load("")
		want := `pipeline.workers: must be an integer (got "many") (from SLUICE_PIPELINE_WORKERS)
sink.backoff_max: must be a duration like "200ms" or "5s" (got "soon") (from SLUICE_SINK_BACKOFF_MAX)`
		if err == nil || err.Error() != want {
			t.Errorf("got:\n%v\nwant:\n%s", err, want)
		}
	})
	t.Run("impossible", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("SLUICE_PIPELINE_WORKERS", "0")
		_, err := config.Load("")
		want := `pipeline.workers: must be at least 1 (got 0) (from SLUICE_PIPELINE_WORKERS)`
		if err == nil || err.Error() != want {
			t.Errorf("got:\n%v\nwant:\n%s", err, want)
		}
	})
	t.Run("list item", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("SLUICE_FAULTS", "a=off,broken")
		_, err := config.Load("")
		want := `faults[1]: must be point=action, e.g. "sink.write=delay(5ms)" (got "broken") (from SLUICE_FAULTS)`
		if err == nil || err.Error() != want {
			t.Errorf("got:\n%v\nwant:\n%s", err, want)
		}
	})
	t.Run("file errors sort before env errors", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("SLUICE_LOG_FORMAT", "xml")
		_, err := loadString(t, "log:\n  level: loud\n")
		want := `sluice.yaml:2:3: log.level: must be one of "debug", "info", "warn", "error" (got "loud")
log.format: must be "text" or "json" (got "xml") (from SLUICE_LOG_FORMAT)`
		if err == nil || err.Error() != want {
			t.Errorf("got:\n%v\nwant:\n%s", err, want)
		}
	})
	t.Run("env overrides a bad file value", func(t *testing.T) {
		clearEnv(t)
		t.Chdir(t.TempDir())
		if err := os.WriteFile("sluice.yaml", []byte("pipeline:\n  workers: 0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("SLUICE_PIPELINE_WORKERS", "3")
		if _, err := config.Load("sluice.yaml"); err != nil {
			t.Errorf("Load: %v", err)
		}
	})
}

func TestConfig_Set(t *testing.T) {
	t.Run("values", func(t *testing.T) {
		c := config.Default()
		for _, kv := range [][2]string{
			{"sink.framing", "acked"},
			{"pipeline.workers", "12"},
			{"pipeline.fetch_wait", "50ms"},
			{"pipeline.max_inflight_bytes", "32MiB"},
			{"queue.subjects", "x.>,y.*"},
			{"faults", ""},
			{"drain.socket_mode", "0660"},
			{"queue.tls.ca_file", "/ca.pem"},
		} {
			if err := c.Set(kv[0], kv[1]); err != nil {
				t.Fatalf("Set(%q, %q): %v", kv[0], kv[1], err)
			}
		}
		if c.Sink.Framing != "acked" || c.Pipeline.Workers != 12 || c.Pipeline.FetchWait != 50*time.Millisecond ||
			c.Pipeline.MaxInflightBytes != 32*config.MiB || !slices.Equal(c.Queue.Subjects, []string{"x.>", "y.*"}) ||
			c.Faults != nil || c.Drain.SocketMode != 0o660 || c.Queue.TLS.CAFile != "/ca.pem" {
			t.Errorf("after Set: %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Validate: %v", err)
		}
	})
	t.Run("bad value", func(t *testing.T) {
		c := config.Default()
		err := c.Set("pipeline.workers", "x")
		var fe *config.FieldError
		if !errors.As(err, &fe) || err.Error() != `pipeline.workers: must be an integer (got "x")` {
			t.Errorf("err = %v", err)
		}
		if c.Pipeline.Workers != config.Default().Pipeline.Workers {
			t.Errorf("a failed Set changed the field to %d", c.Pipeline.Workers)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		c := config.Default()
		err := c.Set("sink.framin", "acked")
		if !errors.Is(err, config.ErrUnknownKey) || err.Error() != `unknown config key "sink.framin" (did you mean "sink.framing"?)` {
			t.Errorf("err = %v", err)
		}
		err = c.Set("nothing.like.it", "1")
		if !errors.Is(err, config.ErrUnknownKey) || err.Error() != `unknown config key "nothing.like.it"` {
			t.Errorf("err = %v", err)
		}
		if err := c.Set("sink", "x"); !errors.Is(err, config.ErrUnknownKey) {
			t.Errorf("Set of a section: err = %v", err)
		}
	})
	t.Run("validation names the command line", func(t *testing.T) {
		clearEnv(t)
		c := mustLoad(t, "")
		if err := c.Set("pipeline.batch_size", "0"); err != nil {
			t.Fatal(err)
		}
		want := `pipeline.batch_size: must be at least 1 (got 0) (from the command line)`
		if err := c.Validate(); err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
	t.Run("flag overrides env and file", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("SLUICE_SINK_FRAMING", "lines")
		c, err := loadString(t, "sink:\n  framing: acked\n")
		if err != nil {
			t.Fatal(err)
		}
		if c.Sink.Framing != "lines" {
			t.Fatalf("env did not override the file: %q", c.Sink.Framing)
		}
		if err := c.Set("sink.framing", "acked"); err != nil || c.Sink.Framing != "acked" {
			t.Errorf("Set: %v, framing %q", err, c.Sink.Framing)
		}
	})
	t.Run("drain.socket follows sink.socket", func(t *testing.T) {
		c := config.Default()
		if err := c.Set("sink.socket", "/tmp/a.sock"); err != nil {
			t.Fatal(err)
		}
		if c.Drain.Socket != "/tmp/a.sock" {
			t.Errorf("drain.socket = %q, want it to follow sink.socket", c.Drain.Socket)
		}
		if err := c.Set("drain.socket", "/tmp/d.sock"); err != nil {
			t.Fatal(err)
		}
		if err := c.Set("sink.socket", "/tmp/b.sock"); err != nil {
			t.Fatal(err)
		}
		if c.Drain.Socket != "/tmp/d.sock" {
			t.Errorf("drain.socket = %q, want the one set explicitly", c.Drain.Socket)
		}
	})
	t.Run("drain.socket set in the file stays", func(t *testing.T) {
		clearEnv(t)
		c, err := loadString(t, "drain:\n  socket: /tmp/d.sock\n")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set("sink.socket", "/tmp/b.sock"); err != nil {
			t.Fatal(err)
		}
		if c.Drain.Socket != "/tmp/d.sock" {
			t.Errorf("drain.socket = %q, want the file's", c.Drain.Socket)
		}
	})
	t.Run("copies do not share sources", func(t *testing.T) {
		clearEnv(t)
		c := mustLoad(t, "")
		d := *c
		if err := d.Set("pipeline.workers", "0"); err != nil {
			t.Fatal(err)
		}
		c.Pipeline.Workers = 0
		want := `pipeline.workers: must be at least 1 (got 0) (default value)`
		if err := c.Validate(); err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
}

func TestValidate_GoCode(t *testing.T) {
	c := config.Default()
	c.Pipeline.Workers = 0
	c.Sink.Framing = "x"
	if err := c.Set("pipeline.batch_size", "0"); err != nil {
		t.Fatal(err)
	}
	want := `pipeline.workers: must be at least 1 (got 0)
pipeline.batch_size: must be at least 1 (got 0) (from the command line)
sink.framing: must be "lines" or "acked" (got "x")`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// TestKeys_EnvAndSet checks every key is wired: its environment variable and
// Set both reach the field, identically.
func TestKeys_EnvAndSet(t *testing.T) {
	samples := map[string]string{
		"string": "zz", "int": "9999", "duration": "3s", "bytes": "3MiB", "mode": "0640", "list": "a,b", "bool": "true",
	}
	keys := config.Keys()
	if len(keys) != 87 {
		t.Errorf("len(Keys()) = %d, want 87", len(keys))
	}
	for _, want := range []string{"pipeline.workers int", "queue.subjects list", "faults list", "queue.max_bytes bytes", "queue.migrate bool",
		"drain.socket_mode mode", "drain.accept_rewind bool", "pipeline.max_inflight_bytes bytes", "queue.tls.ca_file string", "sink.backoff_min duration"} {
		if !slices.Contains(keys, want) {
			t.Errorf("Keys() lacks %q", want)
		}
	}
	clearEnv(t)
	base, err := config.Default().YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, kt := range keys {
		key, typ, _ := strings.Cut(kt, " ")
		if typ == "steps" {
			t.Run(key, func(t *testing.T) {
				t.Setenv(config.EnvName(key), "x")
				if _, err := config.Read(""); err == nil || !strings.Contains(err.Error(), "only in the config file") {
					t.Errorf("%s from the environment: %v, want refused", key, err)
				}
				c := config.Default()
				if err := c.Set(key, "x"); err == nil || !strings.Contains(err.Error(), "only in the config file") {
					t.Errorf("Set(%s): %v, want refused", key, err)
				}
			})
			continue
		}
		sample, ok := samples[typ]
		if !ok {
			t.Fatalf("no sample for type %q of %s", typ, key)
		}
		if typ == "bool" { // the sample must differ from the default
			if c := config.Default(); c.Set(key, sample) == nil {
				if y, _ := c.YAML(); string(y) == string(base) {
					sample = "false"
				}
			}
		}
		t.Run(key, func(t *testing.T) {
			t.Setenv(config.EnvName(key), sample)
			fromEnv, err := config.Read("")
			if err != nil {
				t.Fatal(err)
			}
			fromSet := config.Default()
			if err := fromSet.Set(key, sample); err != nil {
				t.Fatal(err)
			}
			e, _ := fromEnv.YAML()
			s, _ := fromSet.YAML()
			if string(e) != string(s) {
				t.Errorf("env and Set differ:\n%s\n%s", e, s)
			}
			if string(e) == string(base) {
				t.Errorf("%s=%s changed nothing", config.EnvName(key), sample)
			}
		})
	}
	if got := config.EnvName("queue.tls.ca_file"); got != "SLUICE_QUEUE_TLS_CA_FILE" {
		t.Errorf("EnvName = %q", got)
	}
}

func TestConfig_Redacted(t *testing.T) {
	c := config.Default()
	c.Queue.Password = "hunter2"
	c.Queue.Token = "s3cret-token"
	c.Queue.User = "ingest"
	r := c.Redacted()
	if r.Queue.Password != "REDACTED" || r.Queue.Token != "REDACTED" || r.Queue.User != "ingest" {
		t.Errorf("Redacted: %+v", r.Queue)
	}
	if c.Queue.Password != "hunter2" {
		t.Error("Redacted changed its receiver")
	}
	if e := config.Default().Redacted(); e.Queue.Password != "" || e.Queue.Token != "" {
		t.Errorf("empty secrets became %q, %q", e.Queue.Password, e.Queue.Token)
	}
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hunter2") || strings.Contains(string(b), "s3cret-token") {
		t.Errorf("YAML() leaks a secret:\n%s", b)
	}
}

// Redacted hides the password or token in each URL of queue.url, keeping
// the user name, host and path; YAML prints it so.
func TestConfig_RedactedURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://u:pw-SECRET@h1:4222,nats://tok-SECRET@h2:4222": "nats://u:REDACTED@h1:4222,nats://REDACTED@h2:4222",
		"tls://u:p@ss-SECRET@h:4222":                           "tls://u:REDACTED@h:4222",
		"nats://tok-SECRET@[::1":                               "nats://REDACTED@[::1",
		"ws://u:pw-SECRET@h/path@x":                            "ws://u:REDACTED@h/path@x",
		"nats://h1:4222, nats://h2:4222":                       "nats://h1:4222, nats://h2:4222",
		"":                                                     "",
	} {
		c := config.Default()
		c.Queue.URL = in
		if got := c.Redacted().Queue.URL; got != want {
			t.Errorf("Redacted queue.url %q = %q, want %q", in, got, want)
		}
		b, err := c.YAML()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "SECRET") || !strings.Contains(string(b), "url: \""+want+"\"\n") {
			t.Errorf("YAML with queue.url %q:\n%s", in, b)
		}
		if c.Queue.URL != in {
			t.Error("Redacted changed its receiver")
		}
	}
}

// TestConfig_YAMLRoundTrip: what YAML prints, Load reads back to the same
// config (secrets aside, which it prints as REDACTED).
func TestConfig_YAMLRoundTrip(t *testing.T) {
	clearEnv(t)
	for _, path := range []string{"testdata/good.yaml", "../sluice.example.yaml"} {
		t.Run(path, func(t *testing.T) {
			c := mustLoad(t, path)
			c.Queue.URL = "nats://x:1 \"quoted\"\t\u00e9"
			c.Faults = []string{"a=delay(1ms)", "b=off"}
			b, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "printed.yaml")
			if err := os.WriteFile(out, b, 0o600); err != nil {
				t.Fatal(err)
			}
			got := mustLoad(t, out)
			if g, w := config.WithoutSources(*got), config.WithoutSources(c.Redacted()); !reflect.DeepEqual(g, w) {
				t.Errorf("round trip differs:\n got %+v\nwant %+v\nYAML:\n%s", g, w, b)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want config.ByteSize
		str  string
	}{
		{"0", 0, "0"},
		{"1000", 1000, "1000"},
		{"65536", 64 * config.KiB, "64KiB"},
		{"16MiB", 16 * config.MiB, "16MiB"},
		{"16 mib", 16 * config.MiB, "16MiB"},
		{"1536KiB", 1536 * config.KiB, "1536KiB"},
		{"2GiB", 2 * config.GiB, "2GiB"},
		{"1TiB", config.TiB, "1TiB"},
		{"16MB", 16e6, "15625KiB"},
		{"3kB", 3000, "3000"},
		{"10B", 10, "10"},
	} {
		got, err := config.ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
		if got.String() != tt.str {
			t.Errorf("ByteSize(%d).String() = %q, want %q", got, got.String(), tt.str)
		}
		back, err := config.ParseByteSize(got.String())
		if err != nil || back != got {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", got.String(), back, err, got)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5GiB", "12 parsecs", "99999999999TiB"} {
		if got, err := config.ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
	var b config.ByteSize
	if err := b.UnmarshalYAML([]byte(`"8MiB"`)); err != nil || b != 8*config.MiB {
		t.Errorf("UnmarshalYAML string: %d, %v", b, err)
	}
	if err := b.UnmarshalYAML([]byte(`4096`)); err != nil || b != 4096 {
		t.Errorf("UnmarshalYAML int: %d, %v", b, err)
	}
	if err := b.UnmarshalYAML([]byte(`-5`)); err == nil {
		t.Errorf("UnmarshalYAML(-5) = %d, want an error", b)
	}
	if err := b.UnmarshalText([]byte("2KiB")); err != nil || b != 2*config.KiB {
		t.Errorf("UnmarshalText: %d, %v", b, err)
	}
}

// FuzzLoad: no input panics Load, every rejection is a *FieldError with a
// position inside the file, and whatever loads prints to YAML that loads
// back to the same config.
func FuzzLoad(f *testing.F) {
	for _, p := range []string{"testdata/good.yaml", "testdata/bad.yaml", "../sluice.example.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("sink: &s\n  socket: /x\ndrain: *s\n"))
	f.Add([]byte("queue:\n  subjects: [a.*, \"b.>\"]\n  dead_letter_subject: a.b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// YAML breaks lines at \n, \r\n and a lone \r.
		lines := strings.Count(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n") + strings.Count(string(data), "\r") -
			strings.Count(string(data), "\r\n") + 1
		var c *config.Config
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err = config.Load(path)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Load hangs on %q", data)
		}
		if err != nil {
			for _, e := range unjoin(err) {
				var fe *config.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %q is %T, not a *FieldError", e, e)
				}
				if fe.Source == config.SourceFile && (fe.Line < 1 || fe.Line > lines) {
					t.Fatalf("error %q: line %d outside the %d-line file", e, fe.Line, lines)
				}
			}
			return
		}
		b, err := c.YAML()
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "printed.yaml")
		if err := os.WriteFile(out, b, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := config.Load(out)
		if err != nil {
			t.Fatalf("printed config does not load: %v\n%s", err, b)
		}
		if g, w := config.WithoutSources(*got), config.WithoutSources(c.Redacted()); !reflect.DeepEqual(g, w) {
			t.Fatalf("round trip differs:\n got %+v\nwant %+v", g, w)
		}
	})
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// A list given as text splits on commas outside parentheses, so a fault
// action with several arguments survives SLUICE_FAULTS and --faults.
func TestSet_ListKeepsParentheses(t *testing.T) {
	c := config.Default()
	if err := c.Set("faults", "sink.write.before=delay(1ms,10ms), drain.ack.before=error(0.5)"); err != nil {
		t.Fatal(err)
	}
	want := []string{"sink.write.before=delay(1ms,10ms)", "drain.ack.before=error(0.5)"}
	if !slices.Equal(c.Faults, want) {
		t.Fatalf("faults = %q, want %q", c.Faults, want)
	}
}

// A config path that is not a regular file (a FIFO would block forever)
// is refused at once, naming what it is; a UTF-8 byte-order mark before
// the YAML is accepted.
func TestRead_PathAndBOM(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := config.Read(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "named pipe") {
			t.Fatalf("Read(FIFO) = %v, want a refusal naming the named pipe", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read(FIFO) blocked")
	}
	if _, err := config.Read(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("Read(dir) = %v, want a refusal naming the directory", err)
	}
	bom := filepath.Join(dir, "bom.yaml")
	if err := os.WriteFile(bom, []byte("\xef\xbb\xbfpipeline:\n  workers: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Read(bom)
	if err != nil || c.Pipeline.Workers != 3 {
		t.Fatalf("Read(with BOM) = %+v, %v; want workers 3", c, err)
	}
}
