// Package obs holds sluice's observability: the slog logger, the admin HTTP
// server (/metrics, /healthz, /readyz and the operator endpoints other
// packages mount on it), the Prometheus collector for fault points, the
// fault-point API and the flight recorder.
//
// # Flight recorder
//
// StartFlightRecorder keeps the last seconds of execution trace in memory
// (runtime/trace.FlightRecorder). Parts call Trigger("reconnect") when
// something anomalous happens; the recorder writes
// Dir/sluice-trace-<UTC time>-<reason>.trace for `go tool trace`, at most
// one per MinInterval, keeping at most MaxFiles / MaxTotalBytes of dumps.
// WatchStall dumps when pending work stops progressing, NotifySignal on
// SIGUSR1. A nil *FlightRecorder is a valid, disabled recorder.
//
// # Operator endpoints
//
// MountFaultAPI and MountFlightAPI add, on the admin server:
//
//	curl -s 127.0.0.1:9464/faults
//	curl -s -X PUT --data 'delay(5ms)' 127.0.0.1:9464/faults/sink.write.before
//	curl -s -X DELETE 127.0.0.1:9464/faults/sink.write.before
//	curl -s -X DELETE 127.0.0.1:9464/faults
//	curl -s -X POST 127.0.0.1:9464/debug/flight/dump
//
// Other packages mount more: GET /status (package status) and GET
// /tap/{stage} (package tap). AdminURL and AdminError are shared by their
// clients.
//
// obs observes the other parts only through what they hand it (a registry,
// handlers, readiness checks, Trigger calls); it imports none of them except
// the leaf package fault.
package obs
