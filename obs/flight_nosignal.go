//go:build !unix

package obs

// NotifySignal does nothing on systems without SIGUSR1.
func (f *FlightRecorder) NotifySignal() {}
