package jsonlibs

import (
	"encoding/json"
	"testing"

	segjson "github.com/segmentio/encoding/json"
	"github.com/tidwall/gjson"
	"github.com/valyala/fastjson"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
)

// TestStrictness pins why no library's validator is enough for the gate:
// all of them accept a lone surrogate, a number beyond float64 and
// invalid UTF-8 inside a string, which strict parsers elsewhere refuse
// (Python's json fails on invalid UTF-8, Go's encoding/json cannot decode
// 1e400, a lone surrogate is not Unicode); sluice's gate refuses them.
func TestStrictness(t *testing.T) {
	w := process.Validator{}.NewWorker()
	for _, in := range []string{`"\ud800"`, `1e400`, "\"\xff\""} {
		b := []byte(in)
		_, _, gateErr := w.Process(pipeline.Input{Data: b}, nil)
		libs := []bool{json.Valid(b), segjson.Valid(b), gjson.ValidBytes(b), fastjson.ValidateBytes(b) == nil}
		t.Logf("%-12q encoding/json, segmentio, gjson, fastjson accept: %v; sluice accepts: %v", in, libs, gateErr == nil)
		if gateErr == nil {
			t.Errorf("the gate accepts %q", in)
		}
		for i, ok := range libs {
			if !ok {
				t.Errorf("library %d now refuses %q: update BENCH.md", i, in)
			}
		}
	}
}
