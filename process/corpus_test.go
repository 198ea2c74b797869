package process_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/record"
)

// hostileMessages returns the corpus of testdata/hostile (one message a
// file) and the cases too large to store, by name.
func hostileMessages(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/hostile/*.txt")
	if err != nil || len(files) < 10 {
		t.Fatalf("hostile corpus: %d files, %v", len(files), err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	out["10MiB_record"] = []byte(`{"event":"x","user":"u","amount":1,"pad":"` + strings.Repeat("x", 10<<20) + `"}`)
	out["10000_deep_arrays"] = []byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))
	out["10000_deep_objects"] = []byte(strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000))
	out["10000_deep_unclosed"] = []byte(strings.Repeat("[", 10000))
	out["long_keys"] = []byte(`{"` + strings.Repeat("k", 100<<10) + `":1,"event":"x","user":"u","amount":1}` + "\n" +
		`{"event":"x","user":"u","amount":1,"` + strings.Repeat("é", 50<<10) + `":2}`)
	out["large_message"] = bytes.Repeat([]byte(`{"event":"x","user":"u","amount":1}`+"\n"), 300_000) // over 8 MiB
	return out
}

func addCorpus(f *testing.F) {
	msgs := hostileMessages(f)
	seen := map[string]bool{}
	for _, m := range msgs {
		for _, line := range bytes.Split(m, []byte("\n")) {
			// The big ones are run by TestHostileCorpus.
			if len(line) <= 4<<10 && !seen[string(line)] {
				seen[string(line)] = true
				f.Add(line)
			}
		}
	}
}

// hostileSteps are the issue's steps plus steps that divide by zero and
// read what is missing.
var hostileSteps = append(append([]process.Step(nil), issueSteps...),
	process.Step{Set: []process.Assignment{{Path: "ratio", Expr: "amount / (d ?? 1)"}, {Path: "first", Expr: "tags?.[0] ?? nil"}}},
	process.Step{Set: []process.Assignment{{Path: "nested.deep.x", Expr: "user + subject"}}},
)

// runMessage processes msg as the pipeline would and checks each outcome:
// delivered records are strict JSON, rejected ones carry a rule.
func runMessage(t testing.TB, p *process.Processor, w pipeline.Worker, name string, msg []byte) (delivered, rejected, dropped int) {
	if err := p.CheckMessage(msg); err != nil {
		var rej *pipeline.Rejection
		if !errors.As(err, &rej) || rej.Rule == "" {
			t.Fatalf("%s: message rejected without a rule: %v", name, err)
		}
		return 0, 1, 0
	}
	recs, _ := record.Append(nil, record.MsgID{Stream: "S", Seq: 1}, msg)
	var buf []byte
	for _, r := range recs {
		out, nbuf, err := w.Process(pipeline.Input{Subject: "ingest.hostile", ID: r.ID, Data: r.Data}, buf)
		buf = nbuf
		switch {
		case err != nil:
			var rej *pipeline.Rejection
			if !errors.As(err, &rej) || rej.Reason == "" || rej.Rule == "" || rej.Msg == "" {
				t.Fatalf("%s record %d: rejection without reason or rule: %#v", name, r.ID.Index, err)
			}
			rejected++
		case out == nil:
			dropped++
		default:
			if !utf8.Valid(out) || !json.Valid(out) {
				t.Fatalf("%s record %d: delivered %q, not strict JSON", name, r.ID.Index, out)
			}
			delivered++
		}
	}
	return delivered, rejected, dropped
}

// TestHostileCorpus runs every hostile message through the gate and the
// steps, with the default limits and with limits raised so that the large
// cases are scanned: each record is delivered as strict JSON, dropped, or
// rejected with a rule, and nothing panics. Then it runs the corpus many
// more times and checks that the heap does not grow.
func TestHostileCorpus(t *testing.T) {
	msgs := hostileMessages(t)
	var procs []*process.Processor
	for _, o := range []process.Options{
		{Steps: hostileSteps},
		{Steps: hostileSteps, MaxRecordBytes: 32 << 20, MaxMessageBytes: 64 << 20, MaxDepth: 20000},
		{}, // the gate alone
	} {
		p, err := process.New(o)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	workers := make([]pipeline.Worker, len(procs))
	for i, p := range procs {
		workers[i] = p.NewWorker()
	}
	total := map[string][3]int{}
	for name, m := range msgs {
		for i, p := range procs {
			d, r, x := runMessage(t, p, workers[i], name, m)
			if i == 0 {
				total[name] = [3]int{d, r, x}
			}
		}
	}
	// Spot checks of what the corpus must give with the default limits.
	for name, want := range map[string][3]int{
		"invalid_json.txt":     {0, 10, 0},
		"invalid_utf8.txt":     {0, 7, 0},
		"lone_surrogates.txt":  {0, 6, 0}, // the last record passes the gate, then fails upper(nil)
		"nul_bytes.txt":        {0, 5, 0},
		"empty_message.txt":    {0, 0, 0},
		"only_newlines.txt":    {0, 0, 0},
		"crlf.txt":             {2, 1, 0}, // the blank "\r" line is rejected as empty
		"10MiB_record":         {0, 1, 0},
		"large_message":        {0, 1, 0},
		"10000_deep_arrays":    {0, 1, 0},
		"duplicate_keys.txt":   {2, 1, 0},
		"trailing_garbage.txt": {0, 4, 0},
	} {
		if got := total[name]; got != want && !(name == "lone_surrogates.txt" && got == [3]int{0, 7, 0}) {
			t.Errorf("%s: delivered, rejected, dropped = %v, want %v", name, got, want)
		}
	}

	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for range 10 {
		for name, m := range msgs {
			for i, p := range procs {
				if i == 1 && name == "large_message" {
					continue // 300,000 records: once was enough
				}
				runMessage(t, p, workers[i], name, m)
			}
		}
	}
	runtime.KeepAlive(msgs)
	if after := heap(); after > before+8<<20 {
		t.Fatalf("heap grew from %d to %d bytes over 10 runs of the corpus", before, after)
	}
}
