package pipeline

import "errors"

// ErrAlreadyRunning is returned by Run when called twice.
var ErrAlreadyRunning = errors.New("pipeline: Run called twice")

// ErrTooLarge is wrapped by the error Sink.Send returns when the records of
// one queue message cannot fit the drainer's limits (one frame, one line); the
// pipeline then dead-letters that message whole instead of retrying it,
// since retrying cannot help.
var ErrTooLarge = errors.New("pipeline: a queue message's records do not fit the drainer's limits")

// Reasons the pipeline itself gives dead letters (Rejection.Reason).
const (
	ReasonPanic      = "panic"       // processing a record panicked
	ReasonTooLarge   = "too_large"   // a message's records do not fit in one frame
	ReasonMaxDeliver = "max_deliver" // a message redelivered more times than allowed
	ReasonError      = "error"       // a Processor's error that is not a *Rejection
)

// reasonLabel bounds the reason label of sluice_dead_letters_total: a
// Rejection's Reason comes from code (the JSON gate's rules, the reasons
// above, "rejected", "step_error"), never from user text, and anything that
// does not look like such a label is counted as "error".
func reasonLabel(r string) string {
	if r == "" || len(r) > 32 {
		return ReasonError
	}
	for i := 0; i < len(r); i++ {
		if c := r[i]; (c < 'a' || c > 'z') && c != '_' {
			return ReasonError
		}
	}
	return r
}
