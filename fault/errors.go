package fault

import "errors"

// ErrInjected is returned by Hit when the point's action is error(p).
var ErrInjected = errors.New("fault: injected error")

// ErrInjectedClose is returned by Hit when the point's action is close(p):
// the caller should close the connection the point guards, as if the peer
// had dropped it.
var ErrInjectedClose = errors.New("fault: injected connection close")

// ErrUnknownPoint is wrapped by Apply for a name no point was registered
// under.
var ErrUnknownPoint = errors.New("unknown fault point")

// IsInjected reports whether err is, or wraps, an error a point's action
// injected (ErrInjected or ErrInjectedClose), as opposed to ctx.Err() from
// a delay cut short: the one check every caller of Hit makes.
func IsInjected(err error) bool {
	return errors.Is(err, ErrInjected) || errors.Is(err, ErrInjectedClose)
}
