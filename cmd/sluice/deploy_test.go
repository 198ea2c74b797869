package main

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// metricRE finds metric names in PromQL: sluice exports only sluice_*
// metrics of its own (the Go and process collectors aside, which deploy/
// does not use).
var metricRE = regexp.MustCompile(`\bsluice_[a-z0-9_]+\b`)

// TestDeploy_MetricNamesExist checks that every metric the Grafana
// dashboard and the alert rules (and their tests) use is one that sluice
// run or sluice drain registers, so neither can drift from the code.
func TestDeploy_MetricNamesExist(t *testing.T) {
	descs := registeredMetrics(t)
	exists := func(name string) bool {
		if _, ok := descs[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if _, ok := descs[base]; ok {
					return true
				}
			}
		}
		return false
	}
	for _, file := range []string{
		"../../deploy/grafana/sluice-dashboard.json",
		"../../deploy/prometheus/sluice-alerts.yml",
		"../../deploy/prometheus/sluice-alerts.test.yml",
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, m := range metricRE.FindAllString(string(b), -1) {
			used[m] = true
		}
		if len(used) < 5 {
			t.Fatalf("%s: found only %d metric names; the scan is broken", file, len(used))
		}
		var missing []string
		for m := range used {
			if !exists(m) {
				missing = append(missing, m)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s uses metrics that sluice does not export: %s (renamed? see the README's metrics table)", file, strings.Join(missing, ", "))
		}
	}
}
