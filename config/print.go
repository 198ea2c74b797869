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
// queue.token, admin.token, and the userinfo of each URL in queue.url:
// nats://user:REDACTED@host, nats://REDACTED@host for a token) replaced by
// "REDACTED", for printing and logging.
func (c Config) Redacted() Config {
	c.Queue.Subjects = slices.Clone(c.Queue.Subjects)
	c.Faults = slices.Clone(c.Faults)
	c.Queue.URL = redactURLs(c.Queue.URL)
	for _, k := range secretKeys {
		v := c.value(fieldByKey[k])
		if v.String() != "" {
			v.SetString(RedactedValue)
		}
	}
	return c
}

// redactURLs replaces the password (user:password@) or the token (token@)
// in each comma-separated URL of s by RedactedValue. A user name stays: it
// says which credentials were used. It works on text, not url.Parse, so a
// URL that does not parse is redacted too.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			continue
		}
		// The userinfo ends at the last @ before the path.
		authority, path, _ := strings.Cut(rest, "/")
		at := strings.LastIndex(authority, "@")
		if at < 0 {
			continue
		}
		user, _, hasPassword := strings.Cut(authority[:at], ":")
		info := RedactedValue
		if hasPassword {
			info = user + ":" + RedactedValue
		}
		parts[i] = scheme + "://" + info + authority[at:]
		if len(rest) > len(authority) {
			parts[i] += "/" + path
		}
	}
	return strings.Join(parts, ",")
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
