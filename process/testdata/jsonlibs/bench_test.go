// Package jsonlibs measures the JSON libraries considered for sluice's
// processing path against what sluice does (package process), on one
// 230-byte event record. It is a module of its own so that the libraries
// not chosen stay out of sluice's go.mod. Results and the command are in
// ../../BENCH.md.
package jsonlibs

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"

	"github.com/buger/jsonparser"
	segjson "github.com/segmentio/encoding/json"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/valyala/fastjson"
)

var rec = []byte(`{"id":"r1-42","event":"click","user":"ada","password":"hunter2","amount":12.5,"geo":{"country":"FR","city":"Paris"},"ts":1732460000123456789,"tags":["a","b"],"ok":true,"debug":{"trace":"abcdef0123456789"},"pad":"xxxxxxxxxxxxxxxx"}`)

func BenchmarkValid_encodingjson(b *testing.B) {
	for b.Loop() {
		if !json.Valid(rec) {
			b.Fatal()
		}
	}
}
func BenchmarkValid_segmentio(b *testing.B) {
	for b.Loop() {
		if !segjson.Valid(rec) {
			b.Fatal()
		}
	}
}
func BenchmarkValid_gjson(b *testing.B) {
	for b.Loop() {
		if !gjson.ValidBytes(rec) {
			b.Fatal()
		}
	}
}
func BenchmarkValid_fastjson(b *testing.B) {
	for b.Loop() {
		if fastjson.ValidateBytes(rec) != nil {
			b.Fatal()
		}
	}
}

func BenchmarkGet2_gjson(b *testing.B) {
	for b.Loop() {
		r := gjson.GetManyBytes(rec, "event", "geo.country")
		if r[0].Str != "click" || r[1].Str != "FR" {
			b.Fatal()
		}
	}
}
func BenchmarkGet2_gjsonSeparate(b *testing.B) {
	for b.Loop() {
		a, c := gjson.GetBytes(rec, "event"), gjson.GetBytes(rec, "geo.country")
		if a.Str != "click" || c.Str != "FR" {
			b.Fatal()
		}
	}
}
func BenchmarkGet2_jsonparser(b *testing.B) {
	for b.Loop() {
		a, _, _, _ := jsonparser.Get(rec, "event")
		c, _, _, _ := jsonparser.Get(rec, "geo", "country")
		if string(a) != "click" || string(c) != "FR" {
			b.Fatal()
		}
	}
}
func BenchmarkGet2_jsonparserEachKey(b *testing.B) {
	paths := [][]string{{"event"}, {"geo", "country"}}
	for b.Loop() {
		n := 0
		jsonparser.EachKey(rec, func(idx int, v []byte, _ jsonparser.ValueType, _ error) { n++ }, paths...)
		if n != 2 {
			b.Fatal()
		}
	}
}
func BenchmarkGet2_fastjson(b *testing.B) {
	var p fastjson.Parser
	for b.Loop() {
		v, err := p.ParseBytes(rec)
		if err != nil {
			b.Fatal(err)
		}
		if string(v.GetStringBytes("event")) != "click" || string(v.GetStringBytes("geo", "country")) != "FR" {
			b.Fatal()
		}
	}
}

// getStruct decodes the two fields into a struct.
func getStruct(b *testing.B, unmarshal func([]byte, any) error) {
	for b.Loop() {
		var v struct {
			Event string `json:"event"`
			Geo   struct {
				Country string `json:"country"`
			} `json:"geo"`
		}
		if err := unmarshal(rec, &v); err != nil || v.Event != "click" {
			b.Fatal()
		}
	}
}

func BenchmarkGet2_encodingjsonStruct(b *testing.B) { getStruct(b, json.Unmarshal) }
func BenchmarkGet2_segmentioStruct(b *testing.B)    { getStruct(b, segjson.Unmarshal) }

// set two fields + delete one
func BenchmarkEdit_sjson(b *testing.B) {
	buf := make([]byte, 0, 512)
	for b.Loop() {
		out, _ := sjson.SetRawBytesOptions(append(buf[:0], rec...), "ingested_at", []byte(`"2026-12-02T14:00:00.123456789Z"`), &sjson.Options{ReplaceInPlace: true})
		out, _ = sjson.SetBytesOptions(out, "user", "ADA", &sjson.Options{ReplaceInPlace: true})
		out, _ = sjson.DeleteBytes(out, "password")
		_ = out
	}
}
func BenchmarkEdit_jsonparser(b *testing.B) {
	for b.Loop() {
		out, _ := jsonparser.Set(rec, []byte(`"2026-12-02T14:00:00.123456789Z"`), "ingested_at")
		out, _ = jsonparser.Set(out, []byte(`"ADA"`), "user")
		out = jsonparser.Delete(out, "password")
		_ = out
	}
}
func BenchmarkEdit_fastjson(b *testing.B) {
	var p fastjson.Parser
	var a fastjson.Arena
	buf := make([]byte, 0, 512)
	for b.Loop() {
		v, _ := p.ParseBytes(rec)
		a.Reset()
		v.Set("ingested_at", a.NewString("2026-12-02T14:00:00.123456789Z"))
		v.Set("user", a.NewString("ADA"))
		v.Del("password")
		buf = v.MarshalTo(buf[:0])
	}
}

// mapRoundTrip is the full decode into map[string]any, the edit, and the
// encode that the hot path must avoid.
func mapRoundTrip(b *testing.B, unmarshal func([]byte, any) error, marshal func(any) ([]byte, error)) {
	for b.Loop() {
		var m map[string]any
		_ = unmarshal(rec, &m)
		m["ingested_at"] = "2026-12-02T14:00:00.123456789Z"
		m["user"] = "ADA"
		delete(m, "password")
		_, _ = marshal(m)
	}
}

func BenchmarkEdit_mapEncodingjson(b *testing.B) { mapRoundTrip(b, json.Unmarshal, json.Marshal) }
func BenchmarkEdit_mapSegmentio(b *testing.B)    { mapRoundTrip(b, segjson.Unmarshal, segjson.Marshal) }

func sluiceWorker(b *testing.B, steps ...process.Step) pipeline.Worker {
	p, err := process.New(process.Options{Steps: steps, Now: func() time.Time { return time.Unix(0, 0) }})
	if err != nil {
		b.Fatal(err)
	}
	return p.NewWorker()
}

// BenchmarkValid_sluiceGate is sluice's gate: stricter than the others
// (UTF-8, lone surrogates, depth, number range) and it indexes the
// top-level members in the same pass.
func BenchmarkValid_sluiceGate(b *testing.B) {
	w := process.Validator{}.NewWorker()
	for b.Loop() {
		if _, _, err := w.Process(pipeline.Input{Data: rec}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet2_sluiceFilter is the gate plus a filter reading two fields.
func BenchmarkGet2_sluiceFilter(b *testing.B) {
	w := sluiceWorker(b, process.Step{Filter: `event == "click" && geo.country == "FR"`})
	for b.Loop() {
		if out, _, err := w.Process(pipeline.Input{Data: rec}, nil); err != nil || out == nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEdit_sluice is the gate plus set two fields and delete one,
// spliced into a reused buffer.
func BenchmarkEdit_sluice(b *testing.B) {
	w := sluiceWorker(b, process.Step{Set: []process.Assignment{{Path: "ingested_at", Expr: "now()"}, {Path: "user", Expr: `"ADA"`}}},
		process.Step{Delete: []string{"password"}})
	buf := make([]byte, 0, 64<<10)
	for b.Loop() {
		out, nbuf, err := w.Process(pipeline.Input{Data: rec}, buf[:0])
		if err != nil || out == nil {
			b.Fatal(err)
		}
		buf = nbuf
	}
}
