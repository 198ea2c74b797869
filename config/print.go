package config

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Redacted is the text that replaces a secret in Redacted and YAML.
const RedactedValue = "REDACTED"

// secretKeys are the fields Redacted hides.
var secretKeys = []string{"queue.password", "queue.token", "admin.token"}

// Redacted returns a copy of c with every non-empty secret (queue.password,
// queue.token) replaced by "REDACTED", for printing and logging.
func (c Config) Redacted() Config {
	c.Queue.Subjects = slices.Clone(c.Queue.Subjects)
	c.Faults = slices.Clone(c.Faults)
	for _, k := range secretKeys {
		v := c.value(fieldByKey[k])
		if v.String() != "" {
			v.SetString(RedactedValue)
		}
	}
	return c
}

// YAML renders the effective configuration, secrets redacted, as a YAML
// document that Load reads back to the same values: every field in schema
// order, durations as "200ms", byte sizes as "16MiB", socket_mode in octal,
// strings double-quoted.
func (c Config) YAML() ([]byte, error) {
	r := c.Redacted()
	var b bytes.Buffer
	var open []string // sections currently open
	for i := range fields {
		f := &fields[i]
		path := strings.Split(f.key, ".")
		sections, name := path[:len(path)-1], path[len(path)-1]
		common := 0
		for common < len(open) && common < len(sections) && open[common] == sections[common] {
			common++
		}
		open = open[:common]
		for _, s := range sections[common:] {
			b.WriteString(strings.Repeat("  ", len(open)) + s + ":\n")
			open = append(open, s)
		}
		b.WriteString(strings.Repeat("  ", len(open)) + name + ": " + r.text(f) + "\n")
	}
	return b.Bytes(), nil
}

// text renders f's value as a YAML scalar or flow sequence.
func (c *Config) text(f *field) string {
	v := c.value(f)
	switch f.kind {
	case kindString:
		return strconv.Quote(v.String())
	case kindInt:
		return strconv.FormatInt(v.Int(), 10)
	case kindDuration:
		return time.Duration(v.Int()).String()
	case kindBytes:
		return ByteSize(v.Int()).String()
	case kindMode:
		return formatMode(uint32(v.Uint()))
	case kindBool:
		return strconv.FormatBool(v.Bool())
	case kindList:
		items := v.Interface().([]string)
		q := make([]string, len(items))
		for i, s := range items {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case kindSteps:
		return stepsText(v.Interface().([]Step))
	}
	panic("config: unknown kind")
}
