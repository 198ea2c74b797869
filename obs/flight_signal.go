//go:build unix

package obs

import (
	"os"
	"os/signal"
	"syscall"
)

// NotifySignal makes the recorder dump on SIGUSR1 (reason "signal"), from a
// goroutine it owns, until Close. A SIGUSR1 dump ignores MinInterval: an
// operator asked for it. After Close the signal is no longer caught, so its
// default action (terminate) applies again. Calling it twice, on a nil
// recorder or after Close does nothing.
func (f *FlightRecorder) NotifySignal() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.signalOn {
		return
	}
	f.signalOn = true
	ch := make(chan os.Signal, 1) // signals arriving during a dump coalesce here
	signal.Notify(ch, syscall.SIGUSR1)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer signal.Stop(ch)
		for {
			select {
			case <-f.ctx.Done():
				return
			case <-ch:
				f.log.Info("SIGUSR1: dumping the flight recording")
				_, _ = f.dump(ReasonSignal, false)
			}
		}
	}()
}
