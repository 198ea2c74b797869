package testkit

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Promtool returns the path of Prometheus' promtool: $PROMTOOL if set, else
// promtool on PATH, else the one scripts/test put in the repository's
// .tools/. Without one the test fails (never skips), saying how to get it.
func Promtool(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		if local, ok := repoTool("promtool"); ok {
			return local
		}
		t.Fatalf("promtool not found (%v): run the tests with scripts/test, which installs it as root with apt-get, "+
			"or install it yourself: sudo apt-get install prometheus (Debian/Ubuntu), or "+
			"go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0; "+
			"or set PROMTOOL to its path", err)
	}
	return p
}

// RunPromtool runs promtool with args in dir, with stdin as its input (nil:
// none), and fails the test with its output when it exits non-zero.
func RunPromtool(t testing.TB, dir string, stdin io.Reader, args ...string) string {
	t.Helper()
	cmd := exec.Command(Promtool(t), args...)
	cmd.Dir, cmd.Stdin = dir, stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

// repoTool returns .tools/name in the repository holding the working
// directory (the nearest parent with a go.mod), if it is there.
func repoTool(name string) (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".tools", name)
			_, err := os.Stat(p)
			return p, err == nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
