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
