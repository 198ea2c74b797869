package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/config"
)

// The systemd units pass systemd-analyze verify without a warning: every
// key is known and every value parses. The binary's path is pointed at one
// that exists here, since verify checks it.
func TestSystemdUnits_Verify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed to check deploy/systemd: %v (apt-get install systemd)", err)
	}
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) != 2 {
		t.Fatalf("units %v, want sluice.service and sluice-drain.service", units)
	}
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart=/usr/local/bin/sluice ") || !strings.Contains(string(b), "Type=notify") {
			t.Errorf("%s: want Type=notify and ExecStart=/usr/local/bin/sluice", u)
		}
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/sluice", os.Args[0])), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The example configurations load and validate.
func TestExampleConfigs(t *testing.T) {
	files, _ := filepath.Glob("config/*.yaml")
	if len(files) < 3 {
		t.Fatalf("example configs %v, want single-host, nats-cluster and kafka", files)
	}
	for _, f := range files {
		c, err := config.Read(f)
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
