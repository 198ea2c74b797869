package obs_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/obs"
)

func TestLimitedLog(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	ll := obs.LimitedLog{Every: time.Hour}
	for range 5 {
		ll.Log(l, "a", slog.LevelWarn, "kind a")
	}
	ll.Log(l, "b", slog.LevelWarn, "kind b")
	if got := strings.Count(buf.String(), "kind a"); got != 1 {
		t.Fatalf("kind a logged %d times in one interval, want 1:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "kind b") {
		t.Fatalf("kind b, another kind, was suppressed:\n%s", buf.String())
	}

	buf.Reset()
	ll = obs.LimitedLog{Every: time.Nanosecond}
	ll.Log(l, "a", slog.LevelWarn, "first")
	time.Sleep(time.Millisecond)
	ll.Log(l, "a", slog.LevelWarn, "second")
	if !strings.Contains(buf.String(), "second") || strings.Contains(buf.String(), obs.KeySuppressed) {
		t.Fatalf("after the interval a line is logged, with nothing suppressed:\n%s", buf.String())
	}
}
