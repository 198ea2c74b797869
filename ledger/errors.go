package ledger

import "errors"

// ErrInUse is wrapped by Open when another process (another drainer) holds
// the output directory's journal. Nothing is changed.
var ErrInUse = errors.New("another drainer is using the output directory")

// ErrUnknownVersion is wrapped by Open when the journal was written in a
// version this package does not read (by a newer drainer).
var ErrUnknownVersion = errors.New("unknown dedup journal version")

// ErrDamaged is wrapped by Open when the journal or the output does not
// match what a drainer writes: a journal that does not start with a valid
// snapshot, or a committed output file shorter than its commit point.
// Nothing is changed; the error says what the operator can do.
var ErrDamaged = errors.New("output directory damaged")
