package config_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/config"
)

// TestReference keeps docs/config.md, the configuration reference linked
// from the README, in step with the schema and the commented example:
// go test ./config -run TestReference -update rewrites it.
func TestReference(t *testing.T) {
	docs := exampleComments(t, "../sluice.example.yaml")
	def := config.Default()
	defaults := map[string]string{}
	y, err := def.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, line := range strings.Split(string(y), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		depth := (len(line) - len(strings.TrimLeft(line, " "))) / 2
		name, val, _ := strings.Cut(strings.TrimSpace(line), ":")
		path = append(path[:depth], name)
		if v := strings.TrimSpace(val); v != "" {
			defaults[strings.Join(path, ".")] = v
		}
	}
	defaults["pipeline.workers"] = "number of CPUs" // machine-dependent
	var b bytes.Buffer
	b.WriteString("# sluice configuration reference\n\n")
	b.WriteString("Generated from the schema and `sluice.example.yaml` by `go test ./config -run TestReference -update`; do not edit by hand.\n\n")
	b.WriteString("Precedence: defaults < config file (`--config`) < environment < command-line flags.\n")
	b.WriteString("Durations take a unit (`200ms`, `5s`); sizes take bytes or a unit (`16MiB`); lists are YAML lists in the file and comma-separated in the environment.\n\n")
	b.WriteString("| key | environment | type | default | meaning |\n| --- | --- | --- | --- | --- |\n")
	for _, kt := range config.Keys() {
		key, typ, _ := strings.Cut(kt, " ")
		doc := docs[key]
		if doc == "" {
			t.Errorf("sluice.example.yaml has no comment above %s", key)
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | `%s` | %s |\n", key, config.EnvName(key), typ, defaults[key], strings.ReplaceAll(doc, "|", "\\|"))
	}
	golden(t, "../docs/config.md", b.Bytes())
}

// exampleComments maps each key of the example file to the comment lines
// above it (or above its commented-out line). Keys written one after the
// other under one comment share it ("backoff_min" and "backoff_max"), and a
// section's comment ("tls:") documents its fields.
func exampleComments(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	var keyPath []string
	var comment, group []string
	section := map[int]string{} // comment of the section open at each depth
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trim := strings.TrimSpace(line)
		if trim == "" {
			comment, group = nil, nil
			continue
		}
		depth := (len(line) - len(strings.TrimLeft(line, " "))) / 2
		body := trim
		if strings.HasPrefix(trim, "#") {
			body = strings.TrimSpace(strings.TrimPrefix(trim, "#"))
			name, _, ok := strings.Cut(body, ":")
			// A commented-out key ("# socket: ./sluice.sock") after a
			// comment documents that key; anything else is prose.
			if !ok || len(comment) == 0 || strings.ContainsAny(name, " `\"(") {
				comment = append(comment, body)
				continue
			}
		}
		name, val, _ := strings.Cut(body, ":")
		keyPath = append(keyPath[:min(depth, len(keyPath))], name)
		key := strings.Join(keyPath, ".")
		doc := comment
		if len(doc) == 0 {
			doc = group
		}
		if len(doc) == 0 && depth > 0 {
			doc = strings.Fields(section[depth-1])
		}
		if strings.TrimSpace(val) == "" { // a section, or a block list
			out[key] = strings.Join(doc, " ")
			section[depth] = strings.Join(comment, " ")
			comment, group = nil, nil
			continue
		}
		out[key] = strings.Join(doc, " ")
		group, comment = doc, nil
	}
	return out
}
