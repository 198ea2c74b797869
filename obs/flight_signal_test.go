//go:build unix

package obs_test

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkit"

	"github.com/sluice-dev/sluice/obs"
)

func TestFlightRecorder_NotifySignal(t *testing.T) {
	e := startRecorder(t, obs.FlightOptions{MinInterval: time.Hour})
	e.f.NotifySignal()
	e.f.NotifySignal() // idempotent
	// The rate limit does not apply to an operator's signal: trigger a dump
	// first so the signal falls inside MinInterval.
	e.f.Trigger("first")
	e.waitHandled(t, 1)
	for i := 1; i <= 2; i++ {
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, stallGuard, func() error {
			if n := e.metric(t, "sluice_flight_dumps_total", "reason", obs.ReasonSignal); n < float64(i) {
				return fmt.Errorf("%v signal dumps, want %d", n, i)
			}
			return nil
		})
	}
	var signalFiles int
	for _, p := range e.dumps(t) {
		if strings.HasSuffix(p, "-signal.trace") || strings.Contains(p, "-signal-") {
			signalFiles++
		}
	}
	if signalFiles != 2 {
		t.Fatalf("files %v, want 2 signal dumps", e.dumps(t))
	}
}
