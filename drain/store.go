package drain

import (
	"github.com/sluice-dev/sluice/ledger"
	"github.com/sluice-dev/sluice/record"
)

// Store is where an acked drainer makes records durable when they do not go
// to its output files (Options.Store): the user's side of a drainer written
// in Go. The Server speaks the protocol, groups the frames of every
// connection into group commits, drops the records of messages already
// committed, and acknowledges a frame only once the Store has committed it
// and the dedup journal (in Options.StateDir) has recorded it.
//
// The Server calls a Store from one goroutine at a time: Recover once,
// before it accepts connections, then Append and Commit for each group
// commit.
//
// The crash rule is the output files' (docs/protocol.md, section 10): the
// journal records, with each group commit's messages, the Point the Store's
// Commit returned, and Recover gets the last one recorded, so a Store that
// removes what it committed after that point (a crash between its commit
// and the journal's) never holds a record twice and never loses an
// acknowledged one. A Store that cannot roll back should make Append
// idempotent by record identity instead.
type Store interface {
	// Recover brings the store back to p, the point of the last group
	// commit the journal recorded: whatever was committed after it was
	// never acknowledged and will be sent again, so it must go. The zero
	// Point means nothing was ever committed. An error stops the drainer
	// from starting.
	Recover(p ledger.Point) error
	// Append adds rec to the group commit being built. rec.Data is valid
	// only during the call.
	Append(rec record.Record) error
	// Commit makes every record appended since the previous Commit durable
	// and returns once they are, with the point the store reached (a name
	// and an offset of the store's choosing: a file and its length, a
	// transaction id; Recover gets it back). An error fails the drainer:
	// nothing of the group commit is acknowledged.
	Commit() (ledger.Point, error)
}
