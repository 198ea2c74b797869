package main

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/config"
)

// TestOptions_DefaultsMatchConfig pins config.Default() to the parts' own
// defaults: the default config mapped onto each part's Options gives
// exactly what the part makes of its zero Options (its WithDefaults method),
// field by field for the value fields (loggers, registerers, writers and
// function seams are the wiring's, not defaults). A default changed in
// config and not in the part, or the other way round, fails here.
//
// Fields that legitimately differ are listed with the reason: required
// fields the part has no default for (the CLI supplies one), and fields
// the configuration does not hold (the part's default always applies).
// A listed field that no longer differs fails too, so the lists stay true.
func TestOptions_DefaultsMatchConfig(t *testing.T) {
	def := config.Default()
	drainOpts, err := drainOptions(&def)
	if err != nil {
		t.Fatal(err)
	}
	const (
		required      = "required by the part, which has no default; the CLI's default is config's"
		notConfigured = "not in the configuration: the part's default applies"
	)
	for _, tc := range []struct {
		part   string
		mapped any
		// differ maps the fields whose mapped value is not the part's
		// default to why.
		differ map[string]string
	}{
		{"queue.EmbeddedOptions", embeddedOptions(&def), nil},
		{"queue.ConnectOptions", connectOptions(&def), nil},
		{"queue.Options", queueOptions(&def), nil},
		{"kafkasrc.Options", kafkaOptions(&def), nil},
		{"pipeline.Options", pipelineOptions(&def), map[string]string{
			"ChunkRecords": notConfigured,
		}},
		{"process.Options", processOptions(&def), map[string]string{
			"Now": notConfigured,
		}},
		{"sink.Options", sinkOptions(&def), map[string]string{
			"Path":     required,
			"Instance": "computed at run time (hostname and pid) when empty, as config documents",
		}},
		{"drain.Options", drainOpts, map[string]string{
			"Socket":          required,
			"Out":             required,
			"DrainTimeout":    notConfigured,
			"FrameTimeout":    notConfigured,
			"AckWriteTimeout": notConfigured,
			"DedupSpans":      notConfigured,
			"JournalBytes":    notConfigured,
			"ServerID":        "computed at run time (host and pid)",
		}},
		{"obs.FlightOptions", flightOptions(&def), map[string]string{
			"MaxTotalBytes": notConfigured,
		}},
	} {
		t.Run(tc.part, func(t *testing.T) {
			// The part's defaults, from a zero Options with only its
			// required fields set (WithDefaults may reject them unset).
			base := reflect.New(reflect.TypeOf(tc.mapped)).Elem()
			mapped := reflect.ValueOf(tc.mapped)
			for name, why := range tc.differ {
				if why == required {
					base.FieldByName(name).Set(mapped.FieldByName(name))
				}
			}
			defaults, err := withDefaults(base)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range valueFields(mapped.Type(), "") {
				got, want := mapped.FieldByIndex(f.index), defaults.FieldByIndex(f.index)
				why, listed := tc.differ[f.name]
				switch same := sameValue(got, want); {
				case !same && !listed:
					t.Errorf("%s: config.Default() gives %v, the part's own default is %v; change one to match the other", f.name, got, want)
				case same && listed && why != required:
					t.Errorf("%s is listed as differing (%s), but both are %v: remove it from the list", f.name, why, got)
				}
			}
		})
	}
}

// withDefaults calls the WithDefaults method of the Options in v, which
// returns either the Options or the Options and an error.
func withDefaults(v reflect.Value) (reflect.Value, error) {
	m := v.MethodByName("WithDefaults")
	if !m.IsValid() {
		return reflect.Value{}, fmt.Errorf("%s has no WithDefaults method: every part's Options exposes its defaults as func (o Options) WithDefaults() Options (or (Options, error))", v.Type())
	}
	out := m.Call(nil)
	if len(out) == 2 && !out[1].IsNil() {
		return reflect.Value{}, fmt.Errorf("%s.WithDefaults: %v", v.Type(), out[1].Interface())
	}
	if len(out) == 0 || out[0].Type() != v.Type() {
		return reflect.Value{}, fmt.Errorf("%s.WithDefaults does not return a %s", v.Type(), v.Type())
	}
	return out[0], nil
}

type valueField struct {
	name  string // "TLS.CAFile"
	index []int
}

// valueFields lists the fields of struct type t that hold configuration
// values, descending into nested structs: not pointers (loggers),
// interfaces (registerers, writers), functions or channels (seams).
func valueFields(t reflect.Type, prefix string) []valueField {
	var out []valueField
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		switch sf.Type.Kind() {
		case reflect.Pointer, reflect.Interface, reflect.Func, reflect.Chan:
			continue
		case reflect.Struct:
			for _, f := range valueFields(sf.Type, prefix+sf.Name+".") {
				out = append(out, valueField{f.name, append([]int{i}, f.index...)})
			}
			continue
		}
		out = append(out, valueField{prefix + sf.Name, []int{i}})
	}
	return out
}

// sameValue is reflect.DeepEqual with a nil and an empty slice equal.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func TestOptions_DrainIDs(t *testing.T) {
	cfg := config.Default()
	cfg.Drain.AllowUIDs = []string{"1000", "1001"}
	cfg.Drain.AllowGIDs = []string{"50"}
	o, err := drainOptions(&cfg)
	if err != nil || !reflect.DeepEqual(o.PeerUIDs, []uint32{1000, 1001}) || !reflect.DeepEqual(o.PeerGIDs, []uint32{50}) {
		t.Fatalf("drainOptions = uids %v gids %v, %v; want [1000 1001] [50]", o.PeerUIDs, o.PeerGIDs, err)
	}
	for key, set := range map[string]func(*config.Config){
		"drain.allow_uids": func(c *config.Config) { c.Drain.AllowUIDs = []string{"root"} },
		"drain.allow_gids": func(c *config.Config) { c.Drain.AllowGIDs = []string{"-1"} },
	} {
		c := config.Default()
		set(&c)
		_, err := drainOptions(&c)
		if err == nil || !strings.HasPrefix(err.Error(), key+": ") {
			t.Errorf("drainOptions with a bad id in %s = %v, want an error naming it", key, err)
		}
	}
}
