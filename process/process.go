// Package process holds sluice's per-record processing: the strict JSON
// gate, then the configured steps (filter, set, delete, rename, reject),
// compiled once by New.
//
// It knows nothing of concurrency. A Processor holds only what New
// compiled and is shared; each pipeline worker processes with a Worker of
// its own (NewWorker), which owns the gate's index, the expression VM and
// the scratch space of the edits.
//
// # Speed
//
// A record is never decoded whole. The gate checks every byte in one pass
// and, on the way, indexes the top-level members of an object (key and
// value spans). At compile time each expression's fields are found (member
// chains like geo.country are flattened into one name), so a step reads
// only those fields, from their raw bytes. Sets, deletes and renames are
// kept as edits and spliced into the record when it is written: members no
// step touches are copied as they are. A record no step changes is
// delivered as the gate's span of the input, with no copy.
package process

import "github.com/sluice-dev/sluice/pipeline"

// Validator is the JSON gate alone, with the default limits: what sluice
// does with no process steps configured.
type Validator struct{}

var _ pipeline.Processor = Validator{}

var gateOnly = func() *Processor {
	p, err := New(Options{})
	if err != nil {
		panic(err) // no steps: cannot fail
	}
	return p
}()

// CheckMessage rejects a message larger than the default MaxMessageBytes.
func (Validator) CheckMessage(data []byte) error { return gateOnly.CheckMessage(data) }

// NewWorker returns a Worker that runs the gate only.
func (Validator) NewWorker() pipeline.Worker { return gateOnly.NewWorker() }
