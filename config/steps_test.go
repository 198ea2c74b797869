package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/config"
)

const issueSteps = `process:
  steps:
    - filter: 'event != "drop"'
    - set:
        ingested_at: 'now()'
        user: 'upper(user)'
        geo.country: 'lower(geo.country ?? "unknown")'
    - delete: [password, debug.trace]
    - rename: {usr: user_name}
    - reject:
        if: 'amount < 0'
        reason: 'negative amount'
`

func writeYAML(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad_Steps(t *testing.T) {
	clearEnv(t)
	c := mustLoad(t, writeYAML(t, issueSteps))
	want := []config.Step{
		{Filter: `event != "drop"`, Line: 3, Column: 7},
		{Set: []config.Pair{{Key: "ingested_at", Value: "now()", Line: 5, Column: 9}, {Key: "user", Value: "upper(user)", Line: 6, Column: 9},
			{Key: "geo.country", Value: `lower(geo.country ?? "unknown")`, Line: 7, Column: 9}}, Line: 4, Column: 7},
		{Delete: []string{"password", "debug.trace"}, Line: 8, Column: 7},
		{Rename: []config.Pair{{Key: "usr", Value: "user_name", Line: 9, Column: 16}}, Line: 9, Column: 7},
		{Reject: &config.Reject{If: "amount < 0", Reason: "negative amount"}, Line: 10, Column: 7},
	}
	if !reflect.DeepEqual(c.Process.Steps, want) {
		t.Fatalf("steps:\n got %+v\nwant %+v", c.Process.Steps, want)
	}
	// --print writes them back so that they load the same.
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	again := mustLoad(t, writeYAML(t, string(b)))
	strip := func(steps []config.Step) []config.Step {
		var out []config.Step
		for _, s := range steps {
			s.Line, s.Column = 0, 0
			for _, ps := range [][]config.Pair{s.Set, s.Rename} {
				for i := range ps {
					ps[i].Line, ps[i].Column = 0, 0
				}
			}
			out = append(out, s)
		}
		return out
	}
	if got, want := strip(again.Process.Steps), strip(c.Process.Steps); !reflect.DeepEqual(got, want) {
		t.Fatalf("printed steps load as\n %+v\nwant %+v\nprinted:\n%s", got, want, b)
	}
}

func TestLoad_BadSteps(t *testing.T) {
	clearEnv(t)
	p := writeYAML(t, `process:
  steps:
    - filter: 'a'
      set: {b: '1'}
    - fliter: 'x'
    - reject: {if: 'a'}
    - delete: []
    - set: 'x'
    - 7
  max_depth: 0
`)
	_, err := config.Load(p)
	if err == nil {
		t.Fatal("Load accepted bad steps")
	}
	for _, want := range []string{
		p + ":3:7: process.steps[0]: must be a mapping with exactly one of filter, set, delete, rename, reject",
		p + `:5:7: process.steps[1].fliter: unknown step (did you mean "filter"?)`,
		p + ":6:7: process.steps[2].reject: must have both if and reason",
		p + ":7:7: process.steps[3].delete: must be a list of field paths",
		p + ":8:7: process.steps[4].set: must be a mapping of field paths to expressions",
		p + ":9:7: process.steps[5]: must be a mapping with exactly one of",
		p + ":10:3: process.max_depth: must be 1 to 10000 (got 0)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
