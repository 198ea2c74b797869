package testkit

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"testing"
)

// Promtool returns the path of Prometheus' promtool: $PROMTOOL if set, else
// promtool on PATH. Without one the test fails (never skips), saying how to
// get it: scripts/test installs Debian's prometheus package, which has it.
func Promtool(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
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
