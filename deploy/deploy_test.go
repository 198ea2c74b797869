// Package deploy_test checks what deploy/ ships: the Prometheus alert rules
// pass promtool check rules and their unit tests (promtool test rules), and
// the Grafana dashboard is valid JSON whose every query is valid PromQL.
// (cmd/sluice's TestDeploy_MetricNamesExist checks that every metric they
// use is one sluice or the drainer exports.)
package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/testkit"
)

func TestAlertRules_Check(t *testing.T) {
	out := testkit.RunPromtool(t, "prometheus", nil, "check", "rules", "sluice-alerts.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules:\n%s", out)
	}
}

func TestAlertRules_UnitTests(t *testing.T) {
	out := testkit.RunPromtool(t, "prometheus", nil, "test", "rules", "sluice-alerts.test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// Every alert in the rules file has a unit test, so none is shipped
// untested.
func TestAlertRules_EveryAlertTested(t *testing.T) {
	rules, err := os.ReadFile("prometheus/sluice-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("prometheus/sluice-alerts.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(rules), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: ")
		if !ok {
			continue
		}
		n++
		if !strings.Contains(string(tests), "alertname: "+name+"\n") {
			t.Errorf("alert %s has no test in sluice-alerts.test.yml", name)
		}
	}
	if n < 6 {
		t.Fatalf("found %d alerts in sluice-alerts.yml; the parse is broken", n)
	}
}

// Dashboard is the part of a Grafana dashboard the checks read.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

// Panel is one dashboard panel.
type Panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardExprs returns every PromQL expression of the dashboard at path,
// by where it is used.
func dashboardExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Fatalf("%s: no uid or title", path)
	}
	exprs := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			exprs[fmt.Sprintf("panel %q query %d", p.Title, i)] = tg.Expr
		}
	}
	for i, a := range d.Annotations.List {
		exprs[fmt.Sprintf("annotation %d", i)] = a.Expr
	}
	return exprs
}

// templateValues stands in for the dashboard's variables, to check its
// queries as plain PromQL.
var templateValues = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$drain_instance", ".*", "$drain_job", ".*",
	"$instance", ".*", "$job", ".*",
)

// Every query of the dashboard is valid PromQL: the test writes them as
// recording rules and lets promtool check them.
func TestDashboard_QueriesAreValidPromQL(t *testing.T) {
	exprs := dashboardExprs(t, "grafana/sluice-dashboard.json")
	if len(exprs) < 20 {
		t.Fatalf("only %d queries found in the dashboard", len(exprs))
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	i := 0
	for where, e := range exprs {
		if strings.Contains(templateValues.Replace(e), "$") {
			t.Errorf("%s uses a variable the test does not know: %s", where, e)
		}
		q, _ := json.Marshal(templateValues.Replace(e)) // a JSON string is a YAML string
		fmt.Fprintf(&rules, "      # %s\n      - record: dashboard:query_%d\n        expr: %s\n", where, i, q)
		i++
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard-rules.yml"), []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// On failure, promtool names the line: the comment above it says
	// which panel the query is from.
	testkit.RunPromtool(t, dir, nil, "check", "rules", "dashboard-rules.yml")
}
