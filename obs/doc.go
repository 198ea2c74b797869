// Package obs holds sluice's observability: the slog logger, the admin HTTP
// server (/metrics, /healthz, /readyz and the operator endpoints other
// packages mount on it), the Prometheus collector for fault points, and the
// flight recorder.
//
// obs observes the other parts only through what they hand it (a registry,
// handlers, readiness checks); it imports none of them except the leaf
// package fault.
package obs
