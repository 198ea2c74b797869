package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/wire"
)

// issueSteps is the example of process.steps from the issue and the docs.
var issueSteps = []config.Step{
	{Filter: `event != "drop"`},
	{Set: []config.Pair{{Key: "seen", Value: "true"}, {Key: "user", Value: "upper(user)"}, {Key: "geo.country", Value: `lower(geo.country ?? "unknown")`}}},
	{Delete: []string{"password", "debug.trace"}},
	{Rename: []config.Pair{{Key: "usr", Value: "user_name"}}},
	{Reject: &config.Reject{If: "amount < 0", Reason: "negative amount"}},
}

// drained returns every record line the drainer committed in out.
func drained(t *testing.T, out string) [][]byte {
	t.Helper()
	var lines [][]byte
	if _, err := os.Stat(out); os.IsNotExist(err) {
		return nil
	}
	if err := ledger.ReadCommitted(out, func(line []byte) error {
		lines = append(lines, bytes.Clone(line))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return lines
}

// deadLetters returns the dead letters stored so far.
func deadLetters(t *testing.T, js jetstream.JetStream, cfg *config.Config) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, cfg.Queue.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestService_ProcessSteps runs the issue's steps through the real queue,
// sink and drainer, in both framings: transformed records reach the
// drainer exactly once, filtered ones are dropped, rejected and broken ones
// are dead-lettered with their reason, and every message is acked.
func TestService_ProcessSteps(t *testing.T) {
	for _, framing := range []wire.Framing{wire.FramingLines, wire.FramingAcked} {
		t.Run(string(framing), func(t *testing.T) {
			cfg, dir := testConfig(t)
			cfg.Sink.Framing = framing
			cfg.Process.Steps = issueSteps
			out := filepath.Join(dir, "out")
			startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: framing})
			svc, stop := startService(t, cfg)
			js := publisher(t, svc)
			ctx := context.Background()

			var want []string
			var msg strings.Builder
			for i := range 300 {
				switch i % 6 {
				case 0:
					fmt.Fprintf(&msg, `{"n":%d,"event":"drop","user":"x"}`+"\n", i)
				case 1:
					fmt.Fprintf(&msg, `{"n":%d,"event":"e","user":"u%d","amount":-1}`+"\n", i, i)
				case 2:
					fmt.Fprintf(&msg, "{\"n\":%d,\"event\":\"e\",\"user\":\"bad \xff\"}\n", i)
				default:
					fmt.Fprintf(&msg, `{"n":%d,"event":"click","user":"u%d","password":"p","usr":"a","geo":{"country":"FR"},"amount":%d}`+"\r\n", i, i, i)
					want = append(want, fmt.Sprintf(`{"n":%d,"event":"click","user":"U%d","geo":{"country":"fr"},"amount":%d,"seen":true,"user_name":"a"}`, i, i, i))
				}
				if i%50 == 49 {
					if _, err := js.Publish(ctx, "ingest.steps", []byte(msg.String())); err != nil {
						t.Fatal(err)
					}
					msg.Reset()
				}
			}
			waitFor(t, 30*time.Second, "every message acked", consumerSettled(t, js, cfg))
			waitFor(t, 30*time.Second, "all records drained", func() error {
				if n := len(drained(t, out)); n < len(want) {
					return fmt.Errorf("%d of %d drained", n, len(want))
				}
				return nil
			})
			var got []string
			for _, l := range drained(t, out) {
				got = append(got, string(l))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("drained %d records, want %d:\n got %q\nwant %q", len(got), len(want), got[:min(3, len(got))], want[:3])
			}
			var rejected, badUTF8 int
			for _, m := range deadLetters(t, js, cfg) {
				switch r := m.Header.Get("Sluice-Reason"); {
				case r == "step 4 (reject): negative amount":
					rejected++
				case strings.HasPrefix(r, "invalid_utf8: invalid UTF-8 byte 0xff inside a string (at byte "):
					badUTF8++
				default:
					t.Errorf("unexpected dead letter %q: %s", m.Data, r)
				}
			}
			if rejected != 50 || badUTF8 != 50 {
				t.Fatalf("dead letters: %d rejected, %d invalid UTF-8; want 50 of each", rejected, badUTF8)
			}
			if got := metricSum(t, svc, "sluice_pipeline_records_dropped_total"); got != 50 {
				t.Errorf("dropped = %v, want 50", got)
			}
			if got := metricSum(t, svc, "sluice_dead_letters_total"); got != 100 {
				t.Errorf("sluice_dead_letters_total = %v, want 100", got)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// hostileRecords returns n records, most of them broken: valid records
// with random bytes flipped, inserted or cut, and the classic traps.
func hostileRecords(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	traps := []string{
		"\"\\ud800\"", "{\"a\":\"\\udc00x\"}", "\xef\xbb\xbf{}", "{\"a\":1}\x00", "{\"a\":\"\x00\"}", "1e400", "-1e309",
		"{\"a\":1,\"a\":2}", "{\"a\":\"\xc0\xaf\"}", "\"\xed\xa0\x80\"", "[" + strings.Repeat("[", 100) + strings.Repeat("]", 101),
		"{\"a\":1} trailing", "\"\\u0000\"", "\"\xf4\x90\x80\x80\"", "\"\xf0\x9f\x98\x80\"", "{\"\\ud83d\\ude00\":1}",
		"\"\u2028\u2029\"", "{\"a\":1e-400}", "0.1e1", "-0", "[]", "{}", "\"\"", "null", "true",
	}
	base := []byte(`{"n":1,"event":"click","user":"ada","geo":{"country":"FR"},"amount":2.5,"tags":["a","\u00e9"],"s":"x\ty"}`)
	out := make([][]byte, 0, n)
	for _, s := range traps {
		out = append(out, []byte(s))
	}
	for len(out) < n {
		b := bytes.Clone(base)
		for range 1 + r.IntN(3) {
			if len(b) == 0 {
				break
			}
			switch i := r.IntN(len(b)); r.IntN(3) {
			case 0:
				b[i] = byte(r.IntN(256))
			case 1:
				b = slices.Insert(b, i, byte(r.IntN(256)))
			default:
				b = b[:i]
			}
		}
		b = bytes.ReplaceAll(b, []byte("\n"), []byte(" ")) // one record each
		if len(bytes.TrimSpace(b)) > 0 {
			out = append(out, b)
		}
	}
	return out
}

// TestService_OutputParsesEverywhere is the guarantee of the JSON gate:
// whatever producers send, every record that reaches the drainer parses
// with encoding/json, Python's json and JavaScript's JSON.parse.
func TestService_OutputParsesEverywhere(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Sink.Framing = wire.FramingAcked
	cfg.Process.Steps = []config.Step{{Set: []config.Pair{{Key: "seen", Value: "string(n ?? 0) + upper(user ?? \"\")"}}}}
	out := filepath.Join(dir, "out")
	startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: wire.FramingAcked})
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)
	ctx := context.Background()
	recs := hostileRecords(3000)
	for i := 0; i < len(recs); i += 100 {
		if _, err := js.Publish(ctx, "ingest.hostile", bytes.Join(recs[i:min(i+100, len(recs))], []byte("\n"))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "every message acked", consumerSettled(t, js, cfg))
	lines := drained(t, out)
	dead := deadLetters(t, js, cfg)
	if len(lines)+len(dead) != len(recs) {
		t.Fatalf("%d drained + %d dead letters, want all %d records accounted for", len(lines), len(dead), len(recs))
	}
	if len(lines) < 30 || len(dead) < 30 {
		t.Fatalf("%d drained, %d dead letters: the corpus should hold plenty of both", len(lines), len(dead))
	}
	for _, m := range dead {
		if m.Header.Get("Sluice-Reason") == "" {
			t.Fatalf("dead letter %q has no reason", m.Data)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "drained.jsonl")
	if err := os.WriteFile(file, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		var v any
		if err := json.Unmarshal(l, &v); err != nil {
			t.Fatalf("encoding/json refuses drained record %d %q: %v", i, l, err)
		}
	}
	parsers := map[string][]string{
		"python3": {"-c", `import json, sys
n = 0
with open(sys.argv[1], encoding="utf-8", errors="strict") as f:
    for line in f:
        json.loads(line)
        n += 1
print(n)`, file},
		"node": {"-e", `const fs = require("fs");
const buf = fs.readFileSync(process.argv[1]);
new TextDecoder("utf-8", {fatal: true}).decode(buf);
const lines = buf.toString("utf8").split("\n").filter(l => l.length > 0);
for (const l of lines) JSON.parse(l);
console.log(lines.length);`, file},
	}
	for name, args := range parsers {
		path, err := exec.LookPath(name)
		if err != nil {
			t.Logf("%s not installed: not checked", name)
			continue
		}
		outp, err := exec.Command(path, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s refuses sluice's output: %v\n%s", name, err, outp)
		}
		if got := strings.TrimSpace(string(outp)); got != fmt.Sprint(len(lines)) {
			t.Fatalf("%s parsed %s records, want %d", name, got, len(lines))
		}
	}
}

// TestService_OrderByKeepsPerKeyOrder: with pipeline.order_by, 8 workers,
// the acked framing and the real queue and drainer, the records of each of
// 50 keys reach the drainer in the order they were published, while the
// records are processed (and transformed) on every worker.
func TestService_OrderByKeepsPerKeyOrder(t *testing.T) {
	cfg, dir := testConfig(t)
	cfg.Sink.Framing = wire.FramingAcked
	cfg.Pipeline.Workers = 8
	cfg.Pipeline.OrderBy = "user_id"
	cfg.Process.Steps = []config.Step{{Set: []config.Pair{{Key: "tag", Value: `upper(string(user_id)) + "-" + string(n)`}}}}
	out := filepath.Join(dir, "out")
	startDrainOpts(t, drain.Options{Socket: cfg.Sink.Socket, Out: out, Framing: wire.FramingAcked})
	svc, stop := startService(t, cfg)
	js := publisher(t, svc)
	const msgs, perMsg, keys = 600, 10, 50
	next := map[int]int{}
	var futures []jetstream.PubAckFuture
	for m := range msgs {
		var b strings.Builder
		for i := range perMsg {
			k := (m*7 + i*11) % keys
			fmt.Fprintf(&b, `{"user_id":%d,"n":%d}`+"\n", k, next[k])
			next[k]++
		}
		f, err := js.PublishAsync("ingest.ordered", []byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitAcks(ctx, t, futures)
	waitFor(t, 60*time.Second, "every message acked", consumerSettled(t, js, cfg))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	lines := drained(t, out)
	if len(lines) != msgs*perMsg {
		t.Fatalf("drained %d records, want %d", len(lines), msgs*perMsg)
	}
	seen := map[int]int{}
	for i, l := range lines {
		var v struct {
			UserID int `json:"user_id"`
			N      int
			Tag    string
		}
		if err := json.Unmarshal(l, &v); err != nil {
			t.Fatal(err)
		}
		if v.N != seen[v.UserID] || v.Tag != fmt.Sprintf("%d-%d", v.UserID, v.N) {
			t.Fatalf("line %d: %s; key %d's record %d was due", i, l, v.UserID, seen[v.UserID])
		}
		seen[v.UserID]++
	}
}
