package tap

import "errors"

// ErrUnknownStage is returned (wrapped) for a stage name other than in, out
// or dead.
var ErrUnknownStage = errors.New("unknown tap stage")
