package config

import (
	"fmt"
	"maps"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

const envPrefix = "SLUICE_"

// kind is how a field's value is written as text.
type kind int

const (
	kindString kind = iota
	kindInt
	kindDuration
	kindBytes
	kindMode
	kindList
	kindBool
	kindSteps // process.steps: only in the file
)

var kindNames = [...]string{
	kindString:   "string",
	kindInt:      "int",
	kindDuration: "duration",
	kindBytes:    "bytes",
	kindMode:     "mode",
	kindList:     "list",
	kindBool:     "bool",
	kindSteps:    "steps",
}

// field is one settable leaf of Config.
type field struct {
	key   string // dotted yaml path, "queue.tls.ca_file"
	env   string // SLUICE_QUEUE_TLS_CA_FILE
	kind  kind
	index []int // reflect field index path from Config
}

var (
	fields     = buildFields()
	fieldByKey = func() map[string]*field {
		m := make(map[string]*field, len(fields))
		for i := range fields {
			m[fields[i].key] = &fields[i]
		}
		return m
	}()
	stepsType    = reflect.TypeFor[[]Step]()
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

// buildFields walks Config's yaml tags, in declaration order.
func buildFields() []field {
	var out []field
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || name == "" || name == "-" {
				continue
			}
			key := prefix + name
			idx := append(append([]int(nil), index...), i)
			if sf.Type.Kind() == reflect.Struct {
				walk(sf.Type, key+".", idx)
				continue
			}
			out = append(out, field{key: key, env: EnvName(key), kind: kindOf(sf.Type, key), index: idx})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

func kindOf(t reflect.Type, key string) kind {
	switch {
	case t == durationType:
		return kindDuration
	case t == byteSizeType:
		return kindBytes
	case t == stepsType:
		return kindSteps
	case t.Kind() == reflect.String:
		return kindString
	case t.Kind() == reflect.Int:
		return kindInt
	case t.Kind() == reflect.Uint32:
		return kindMode
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return kindList
	case t.Kind() == reflect.Bool:
		return kindBool
	}
	panic(fmt.Sprintf("config: field %s has unsupported type %s", key, t))
}

// EnvName returns the environment variable that sets key:
// "queue.tls.ca_file" → "SLUICE_QUEUE_TLS_CA_FILE".
func EnvName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Keys lists every settable key with its type, as "key type", in the order
// of the schema, e.g. "pipeline.workers int". The types are string, int,
// duration ("200ms"), bytes (ByteSize: 16777216 or "16MiB"), mode (octal
// permission bits, 0600) and list (comma-separated for Set and the
// environment). Each key's environment variable is EnvName(key).
func Keys() []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.key + " " + kindNames[f.kind]
	}
	return out
}

// Set parses value for the field named by key (its dotted yaml path, as
// listed by Keys) with the same rules as the environment, and records that
// the command line set it; Validate still has to be called. Lists are
// comma-separated; an empty value sets an empty list or string. Setting
// sink.socket also moves drain.socket when that still follows it.
//
// An unknown key returns an error wrapping ErrUnknownKey that suggests the
// closest key; a value that does not parse returns a *FieldError with no
// Source, e.g. `pipeline.workers: must be an integer (got "many")`.
func (c *Config) Set(key, value string) error {
	f := fieldByKey[key]
	if f == nil {
		if s := suggest(key, allKeys()); s != "" {
			return fmt.Errorf("%w %q (did you mean %q?)", ErrUnknownKey, key, s)
		}
		return fmt.Errorf("%w %q", ErrUnknownKey, key)
	}
	follow := key == "sink.socket" && c.drainFollowsSink()
	if err := c.setText(f, value); err != nil {
		return &FieldError{Field: key, Msg: err.Error()}
	}
	c.src = c.src.clone()
	c.src.origin[key] = origin{source: SourceFlag}
	if follow {
		c.Drain.Socket = c.Sink.Socket
	}
	return nil
}

// applyEnv applies every non-empty SLUICE_* variable that names a field.
func (c *Config) applyEnv() []*FieldError {
	var errs []*FieldError
	for i := range fields {
		f := &fields[i]
		v, ok := os.LookupEnv(f.env)
		if !ok || v == "" {
			continue
		}
		if err := c.setText(f, v); err != nil {
			errs = append(errs, &FieldError{Field: f.key, Msg: err.Error(), Source: f.env})
			continue
		}
		c.src.origin[f.key] = origin{source: f.env}
	}
	return errs
}

// value returns the reflect.Value of f inside c.
func (c *Config) value(f *field) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(f.index)
}

// setText parses s as f's kind and stores it. Lists are comma-separated
// (commas inside parentheses, such as delay(1ms,10ms), do not split).
func (c *Config) setText(f *field, s string) error {
	if f.kind == kindSteps {
		return fmt.Errorf("can be set only in the config file")
	}
	if f.kind == kindList {
		var items []string
		for _, item := range splitList(s) {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		c.value(f).Set(reflect.ValueOf(items))
		return nil
	}
	return setScalar(c.value(f), f.kind, s)
}

// splitList splits s at the commas that are not inside parentheses.
func splitList(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth = max(depth-1, 0)
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// setScalar parses s as k and stores it in v.
func setScalar(v reflect.Value, k kind, s string) error {
	switch k {
	case kindString:
		v.SetString(s)
	case kindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 0)
		if err != nil {
			return fmt.Errorf("must be an integer (got %q)", s)
		}
		v.SetInt(n)
	case kindDuration:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case kindBytes:
		b, err := ParseByteSize(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(b))
	case kindMode:
		m, err := parseMode(s)
		if err != nil {
			return err
		}
		v.SetUint(uint64(m))
	case kindBool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("must be true or false (got %q)", s)
		}
		v.SetBool(b)
	default:
		panic("config: setScalar on a list")
	}
	return nil
}

// parseDuration accepts Go durations with a unit. A bare integer other than
// 0 is rejected because its unit would be a guess.
func parseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(t, 64); err == nil && t != "0" {
		return 0, fmt.Errorf("must be a duration with a unit, like \"200ms\" or \"5s\" (got %q)", s)
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("must be a duration like \"200ms\" or \"5s\" (got %q)", s)
	}
	return d, nil
}

// parseMode reads octal permission bits: "0600", "0o600" or "600".
func parseMode(s string) (uint32, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0o"), "0O")
	m, err := strconv.ParseUint(t, 8, 32)
	if err != nil || t == "" {
		return 0, fmt.Errorf("must be octal permission bits like 0600 (got %q)", s)
	}
	return uint32(m), nil
}

// formatMode writes m as octal with a leading 0, as parseMode reads it.
func formatMode(m uint32) string { return fmt.Sprintf("%#o", m) }

func allKeys() []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.key
	}
	return out
}

// origin is where one field's value came from.
type origin struct {
	source       string // SourceFile, SourceFlag or an environment variable
	line, column int    // in the file, when source is SourceFile
}

// sources records the origin of every field not at its default.
type sources struct {
	file   string            // the config file, "" for none
	loaded bool              // built by Load or Read: a field without an origin is a default
	origin map[string]origin // by key; list items as "queue.subjects[1]"
}

// clone returns a copy safe to modify (s may be shared by copies of a
// Config); a nil s clones to an empty one.
func (s *sources) clone() *sources {
	if s == nil {
		return &sources{origin: map[string]origin{}}
	}
	return &sources{file: s.file, loaded: s.loaded, origin: maps.Clone(s.origin)}
}

// lookup returns the origin of key, falling back from a list item
// ("faults[2]") to the list when the item has none of its own.
func (s *sources) lookup(key string) (origin, bool) {
	if s == nil {
		return origin{}, false
	}
	if o, ok := s.origin[key]; ok {
		return o, true
	}
	if i := strings.IndexByte(key, '['); i > 0 {
		o, ok := s.origin[key[:i]]
		return o, ok
	}
	return origin{}, false
}

// drainFollowsSink reports whether drain.socket is still the default that
// tracks sink.socket: nothing set it and it equals sink.socket.
func (c *Config) drainFollowsSink() bool {
	_, set := c.src.lookup("drain.socket")
	return !set && c.Drain.Socket == c.Sink.Socket
}

// suggest returns the candidate closest to name when it is close enough to
// be a likely typo, else "".
func suggest(name string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := levenshtein(name, c)
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := max(2, len(name)/3)
	if bestDist < 0 || bestDist > limit {
		return ""
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
