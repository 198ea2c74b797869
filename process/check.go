package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr"

	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/record"
)

// Case is one unit test of a processing configuration (sluice test): a
// queue message and what should become of each of its records.
type Case struct {
	Name    string
	Subject string // "": "ingest.test"
	Input   []byte // the message payload: one record a line
	// Expect holds one expectation per record (the payload's non-empty
	// lines, in order), or a single DeadLetter expectation for a message
	// rejected whole (process.max_message_bytes).
	Expect []Expect
}

// Expect is what should become of one record: exactly one of Output,
// Where, Drop and DeadLetter, and optionally Key.
type Expect struct {
	// Key is the record's ordering key (pipeline.order_by on the record
	// as it came in), as fmt.Sprint prints it.
	Key *string
	// Output is the exact record delivered.
	Output *string
	// Where are expressions over the delivered record's fields, all true.
	Where []string
	// Drop: a filter drops the record.
	Drop bool
	// DeadLetter: the record is dead-lettered as described.
	DeadLetter *DeadLetterExpect
}

// DeadLetterExpect describes a dead letter; empty fields match anything.
type DeadLetterExpect struct {
	Reason string // a substring of the whole reason, e.g. "negative amount"
	Rule   string // the rule, e.g. "invalid_utf8" or "reject"
	Step   *int   // the step's index (-1: the gate)
}

// Outcome is what processing did to one record.
type Outcome struct {
	Output []byte              // delivered bytes, nil when dropped or rejected
	Reject *pipeline.Rejection // why it was dead-lettered
	Key    string              // the ordering key, when there is an order_by
	HasKey bool
}

func (o Outcome) String() string {
	if o.HasKey {
		k := o
		k.HasKey = false
		return k.String() + ", key " + o.Key
	}
	switch {
	case o.Reject != nil:
		return "dead letter: " + o.Reject.Error()
	case o.Output == nil:
		return "dropped"
	}
	return "output " + string(o.Output)
}

// Failure is one expectation a case did not meet.
type Failure struct {
	Record int // index of the record among the message's records; -1: the message
	Want   string
	Got    string
}

// Run runs c through p as the pipeline would (the message check, then each
// record) and returns the expectations it did not meet.
func (p *Processor) Run(c Case) []Failure {
	subject := c.Subject
	if subject == "" {
		subject = "ingest.test"
	}
	var got []Outcome
	if err := p.CheckMessage(c.Input); err != nil {
		var rej *pipeline.Rejection
		errors.As(err, &rej)
		got = append(got, Outcome{Reject: rej})
	} else {
		w := p.newWorker()
		recs, _ := record.Append(nil, record.MsgID{Stream: "TEST", Seq: 1}, c.Input)
		for _, r := range recs {
			out, _, err := w.Process(pipeline.Input{Subject: subject, ID: r.ID, Data: r.Data}, nil)
			o := Outcome{Output: out}
			if err != nil {
				if !errors.As(err, &o.Reject) {
					o.Reject = &pipeline.Rejection{Reason: pipeline.ReasonError, Step: -1, Offset: -1, Msg: err.Error()}
				}
			}
			if k, ok, err := w.Key(pipeline.Input{Subject: subject, ID: r.ID, Data: r.Data}); ok {
				o.HasKey = true
				if o.Key = fmt.Sprint(k); err != nil {
					o.Key = "error: " + err.Error()
				}
			}
			got = append(got, o)
		}
	}
	var fails []Failure
	for i := range max(len(got), len(c.Expect)) {
		idx := i
		if len(got) == 1 && got[0].Reject != nil && got[0].Reject.Rule == RuleMaxMessageBytes {
			idx = -1
		}
		switch {
		case i >= len(c.Expect):
			fails = append(fails, Failure{Record: idx, Want: "no record (the case expects fewer)", Got: got[i].String()})
		case i >= len(got):
			fails = append(fails, Failure{Record: idx, Want: c.Expect[i].String(), Got: "no record (the input has fewer)"})
		default:
			if ok, note := c.Expect[i].check(got[i]); !ok {
				fails = append(fails, Failure{Record: idx, Want: c.Expect[i].String(), Got: got[i].String() + note})
			}
		}
	}
	return fails
}

func (e Expect) String() string {
	if e.Key != nil {
		k := e
		k.Key = nil
		return k.String() + ", key " + *e.Key
	}
	switch {
	case e.Output != nil:
		return "output " + *e.Output
	case len(e.Where) > 0:
		return "output where " + strings.Join(e.Where, " && ")
	case e.Drop:
		return "dropped"
	case e.DeadLetter != nil:
		var parts []string
		if d := e.DeadLetter; d.Rule != "" {
			parts = append(parts, "rule "+d.Rule)
		}
		if d := e.DeadLetter; d.Step != nil {
			parts = append(parts, fmt.Sprintf("step %d", *d.Step))
		}
		if d := e.DeadLetter; d.Reason != "" {
			parts = append(parts, fmt.Sprintf("reason containing %q", d.Reason))
		}
		return "dead letter " + strings.Join(parts, ", ")
	}
	return "(nothing expected)"
}

// check reports whether o meets e, with a note on why not when there is
// more to say than the outcome itself.
func (e Expect) check(o Outcome) (bool, string) {
	if e.Key != nil && (!o.HasKey || o.Key != *e.Key) {
		return false, ""
	}
	delivered := o.Reject == nil && o.Output != nil
	switch {
	case e.Output != nil:
		return delivered && string(o.Output) == *e.Output, ""
	case len(e.Where) > 0:
		if !delivered {
			return false, ""
		}
		var fields map[string]any
		if err := json.Unmarshal(o.Output, &fields); err != nil {
			return false, fmt.Sprintf(" (not an object: %v)", err)
		}
		for _, w := range e.Where {
			v, err := expr.Eval(w, fields)
			if err != nil {
				return false, fmt.Sprintf(" (where %q: %v)", w, err)
			}
			if v != true {
				return false, fmt.Sprintf(" (where %q is %v)", w, v)
			}
		}
		return true, ""
	case e.Drop:
		return o.Reject == nil && o.Output == nil, ""
	case e.DeadLetter != nil:
		d := e.DeadLetter
		return o.Reject != nil && (d.Rule == "" || o.Reject.Rule == d.Rule) &&
			(d.Step == nil || o.Reject.Step == *d.Step) && strings.Contains(o.Reject.Error(), d.Reason), ""
	}
	return false, " (the expectation sets nothing)"
}
