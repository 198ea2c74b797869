package process

import (
	"fmt"
	"slices"

	"github.com/expr-lang/expr/vm"

	"github.com/sluice-dev/sluice/pipeline"
)

// Processor applies the JSON gate and the configured steps. It is shared by
// the pipeline's workers and holds only what compile made; each worker
// processes with a Worker of its own (NewWorker).
type Processor struct {
	opts  Options
	steps []step
	key   *step // OrderBy compiled; nil without one
}

var _ pipeline.Processor = (*Processor)(nil)

// New compiles opts' steps. A step that does not compile is a
// *CompileError (several are joined), naming the step, the expression and
// the position of the error in it.
func New(opts Options) (*Processor, error) {
	opts = opts.WithDefaults()
	steps, key, err := compile(opts)
	if err != nil {
		return nil, err
	}
	return &Processor{opts: opts, steps: steps, key: key}, nil
}

// CheckMessage rejects a message larger than MaxMessageBytes.
func (p *Processor) CheckMessage(data []byte) error {
	if len(data) > p.opts.MaxMessageBytes {
		return &pipeline.Rejection{Reason: RuleMaxMessageBytes, Step: -1, Rule: RuleMaxMessageBytes, Offset: p.opts.MaxMessageBytes,
			Msg: fmt.Sprintf("message of %d bytes is larger than process.max_message_bytes (%d)", len(data), p.opts.MaxMessageBytes)}
	}
	return nil
}

// NewWorker returns a Worker for one goroutine.
func (p *Processor) NewWorker() pipeline.Worker { return p.newWorker() }

func (p *Processor) newWorker() *Worker {
	w := &Worker{p: p, g: gate{maxDepth: p.opts.MaxDepth}, env: map[string]any{subjectName: ""}}
	w.vm.MemoryBudget = memoryBudget
	for _, st := range p.steps {
		for _, r := range st.reads {
			w.env[r.key] = nil
		}
	}
	if p.key != nil {
		for _, r := range p.key.reads {
			w.env[r.key] = nil
		}
	}
	return w
}

// Key evaluates OrderBy on a record as it came in (sluice test shows it;
// the pipeline, which keeps the queue order of every record, does not need
// it). ok is false without an OrderBy.
func (w *Worker) Key(in pipeline.Input) (key any, ok bool, err error) {
	if w.p.key == nil {
		return nil, false, nil
	}
	if ge := w.g.scan(in.Data); ge != nil {
		return nil, true, &pipeline.Rejection{Reason: ge.rule, Step: -1, Rule: ge.rule, Offset: ge.offset, Msg: ge.msg}
	}
	w.box.reset()
	w.subject, w.subjectAny = in.Subject, in.Subject
	if err := w.load(w.p.key, in.Data); err != nil {
		return nil, true, err
	}
	v, err := w.vm.Run(w.p.key.prog, w.env)
	if err != nil {
		return nil, true, stepErr(-1, "order_by", err)
	}
	return v, true, nil
}

// Worker processes records for one goroutine: it owns the gate's index,
// the expression VM and its environment, and the scratch space of the
// pending edits.
type Worker struct {
	p   *Processor
	g   gate
	sub []*gate // gates for nested objects, by level
	vm  vm.VM
	env map[string]any
	box box
	// subject is the last subject put in env, boxed once.
	subject    string
	subjectAny any
	envSubject string // the subject env holds
	// The current second, formatted, for appendNow.
	nowSec    int64
	nowPrefix []byte

	edits []edit
	vals  []byte   // set values' JSON, referenced by edits
	idx   []int32  // scratch for apply: edit indexes per level
	marks []bool   // scratch for apply: members and edits matched, per level
	sigs  []uint64 // scratch for apply: the signatures of a level's edit keys
	tmp   [2][]byte
	flip  int
}

// edit is one pending change to the record.
type edit struct {
	path []string
	val  span // in vals; unused by a delete
	del  bool
	step int
}

var _ pipeline.Worker = (*Worker)(nil)

// blockSize is the size of the arrays Process appends outputs to.
const blockSize = 64 << 10

// Process runs the gate and the steps on one record.
func (w *Worker) Process(in pipeline.Input, buf []byte) (out, nbuf []byte, err error) {
	rec := in.Data
	if len(rec) > w.p.opts.MaxRecordBytes {
		return nil, buf, &pipeline.Rejection{Reason: RuleMaxRecordBytes, Step: -1, Rule: RuleMaxRecordBytes, Offset: w.p.opts.MaxRecordBytes,
			Msg: fmt.Sprintf("record of %d bytes is larger than process.max_record_bytes (%d)", len(rec), w.p.opts.MaxRecordBytes)}
	}
	if ge := w.g.scan(rec); ge != nil {
		return nil, buf, &pipeline.Rejection{Reason: ge.rule, Step: -1, Rule: ge.rule, Offset: ge.offset, Msg: ge.msg}
	}
	if len(w.p.steps) == 0 {
		return rec[w.g.lo:w.g.hi], buf, nil
	}
	w.edits, w.vals = w.edits[:0], w.vals[:0]
	w.box.reset()
	if in.Subject != w.subject || w.subjectAny == nil {
		w.subject, w.subjectAny = in.Subject, in.Subject
	}
	base := rec
	for i := range w.p.steps {
		st := &w.p.steps[i]
		if st.flush && len(w.edits) > 0 {
			if base, err = w.flush(base); err != nil {
				return nil, buf, err
			}
		}
		keep, err := w.run(st, base)
		if err != nil {
			return nil, buf, err
		}
		if !keep {
			return nil, buf, nil
		}
	}
	if len(w.edits) == 0 && &base[0] == &rec[0] {
		return base[w.g.lo:w.g.hi], buf, nil
	}
	// The output goes to buf: a flushed record lives in the worker's
	// scratch space, which the next record overwrites.
	need := w.g.hi - w.g.lo + len(w.vals) + 64
	if cap(buf)-len(buf) < need {
		// A new array: what buf holds stays where it is, in use.
		buf = make([]byte, 0, max(blockSize, need, 2*cap(buf)))
	}
	start := len(buf)
	if len(w.edits) == 0 {
		buf = append(buf, base[w.g.lo:w.g.hi]...)
	} else if buf, err = w.apply(buf, base, w.g.members, 0, w.allEdits()); err != nil {
		return nil, buf[:start], err
	}
	return buf[start:len(buf):len(buf)], buf, nil
}

// appendNow appends the clock's time as a JSON string in RFC 3339 with
// nanoseconds (trailing zeros trimmed), in UTC: what time.RFC3339Nano
// writes, formatted once a second and completed with the fraction.
func (w *Worker) appendNow(b []byte) []byte {
	t := w.p.opts.Now().UTC()
	if sec := t.Unix(); sec != w.nowSec || w.nowPrefix == nil {
		w.nowSec, w.nowPrefix = sec, t.AppendFormat(w.nowPrefix[:0], `"2006-01-02T15:04:05`)
	}
	b = append(b, w.nowPrefix...)
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i > 0; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z', '"')
}

// flush writes the pending edits into a scratch copy of the record and
// indexes it again.
func (w *Worker) flush(base []byte) ([]byte, error) {
	w.flip ^= 1
	b, err := w.apply(w.tmp[w.flip][:0], base, w.g.members, 0, w.allEdits())
	w.tmp[w.flip] = b
	if err != nil {
		return nil, err
	}
	w.edits, w.vals = w.edits[:0], w.vals[:0]
	if ge := w.g.scan(b); ge != nil {
		return nil, stepErr(-1, "flush", fmt.Errorf("internal error: the edited record broke %s at byte %d: %s", ge.rule, ge.offset, ge.msg))
	}
	return b, nil
}

func (w *Worker) allEdits() []int32 {
	w.idx = w.idx[:0]
	for i := range w.edits {
		w.idx = append(w.idx, int32(i))
	}
	return w.idx
}

func stepErr(i int, kind string, err error) *pipeline.Rejection {
	return &pipeline.Rejection{Reason: "step_error", Step: i, Rule: kind, Offset: -1, Msg: err.Error()}
}

// load puts the subject and the fields st reads from base into the
// environment.
func (w *Worker) load(st *step, base []byte) error {
	if len(st.reads) == 0 && st.prog == nil {
		return nil
	}
	if w.envSubject != w.subject {
		w.env[subjectName], w.envSubject = w.subjectAny, w.subject
	}
	for _, r := range st.reads {
		raw, ok := w.lookup(base, r.path)
		var v any
		if ok {
			var err error
			if v, err = decodeIn(&w.box, raw); err != nil {
				return stepErr(st.index, kindNames[st.kind], fmt.Errorf("read %s: %v", r.key, err))
			}
		}
		w.env[r.key] = v
	}
	return nil
}

// run runs one step; false drops the record.
func (w *Worker) run(st *step, base []byte) (bool, error) {
	kind := kindNames[st.kind]
	// A set step whose expressions all have a fast path loads the
	// environment only when one of them falls back to the VM.
	loaded := false
	if st.kind != kindSet || st.loadAll {
		if err := w.load(st, base); err != nil {
			return false, err
		}
		loaded = true
	}
	switch st.kind {
	case kindFilter, kindReject:
		b, ok := false, false
		if st.cmp != nil {
			b, ok = st.cmp.eval(w.env[st.cmp.key])
		}
		if !ok {
			v, err := w.vm.Run(st.prog, w.env)
			if err != nil {
				return false, stepErr(st.index, kind, err)
			}
			if b, ok = v.(bool); !ok {
				return false, stepErr(st.index, kind, fmt.Errorf("expression gave %T, not true or false", v))
			}
		}
		if st.kind == kindFilter {
			return b, nil
		}
		if b {
			return false, &pipeline.Rejection{Reason: "rejected", Step: st.index, Rule: "reject", Offset: -1, Msg: st.reason}
		}
	case kindSet:
		if !w.g.object {
			return false, stepErr(st.index, kind, fmt.Errorf("the record is %s, not an object: no field can be set", typeName(base[w.g.lo])))
		}
		for _, op := range st.sets {
			lo := len(w.vals)
			switch {
			case op.now:
				w.vals = w.appendNow(w.vals)
			case op.konst != nil:
				w.vals = append(w.vals, op.konst...)
			default:
				if op.cased != nil {
					if raw, found := w.lookup(base, op.cased.path); found {
						var ok bool
						if w.vals, ok = op.cased.appendCased(w.vals, raw); ok {
							break
						}
					}
				}
				if !loaded {
					if err := w.load(st, base); err != nil {
						return false, err
					}
					loaded = true
				}
				v, err := w.vm.Run(op.prog, w.env)
				if err != nil {
					return false, stepErr(st.index, kind, fmt.Errorf("%s: %v", pathString(op.path), err))
				}
				if w.vals, err = appendJSON(w.vals, v); err != nil {
					w.vals = w.vals[:lo]
					return false, stepErr(st.index, kind, fmt.Errorf("%s: %v", pathString(op.path), err))
				}
			}
			if len(op.path) > 1 {
				// Fail at this step, not when the record is written, if a
				// parent in the record is not an object.
				for k := 1; k < len(op.path); k++ {
					if raw, ok := w.lookup(base, op.path[:k]); ok && raw[0] != '{' && !w.edited(op.path[:k]) {
						return false, stepErr(st.index, kind, fmt.Errorf("cannot set %s: %s is %s, not an object", pathString(op.path), pathString(op.path[:k]), typeName(raw[0])))
					}
				}
			}
			w.edits = append(w.edits, edit{path: op.path, val: span{int32(lo), int32(len(w.vals))}, step: st.index})
		}
	case kindDelete:
		for _, d := range st.dels {
			w.edits = append(w.edits, edit{path: d, del: true, step: st.index})
		}
	case kindRename:
		for _, m := range st.moves {
			raw, ok := w.lookup(base, m.from)
			if !ok {
				continue
			}
			if !w.g.object {
				continue
			}
			lo := len(w.vals)
			w.vals = append(w.vals, raw...)
			w.edits = append(w.edits,
				edit{path: m.from, del: true, step: st.index},
				edit{path: m.to, val: span{int32(lo), int32(len(w.vals))}, step: st.index})
		}
	}
	return true, nil
}

// edited reports whether a pending edit changes path or a parent of it.
func (w *Worker) edited(path []string) bool {
	for _, e := range w.edits {
		if len(e.path) <= len(path) && slices.Equal(e.path, path[:len(e.path)]) {
			return true
		}
	}
	return false
}

func pathString(p []string) string {
	s := p[0]
	for _, x := range p[1:] {
		s += "." + x
	}
	return s
}

// typeName names the kind of JSON value that starts with c.
func typeName(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// subGate returns the gate for nested objects at level (1 and deeper).
func (w *Worker) subGate(level int) *gate {
	for len(w.sub) < level {
		w.sub = append(w.sub, &gate{maxDepth: w.p.opts.MaxDepth})
	}
	return w.sub[level-1]
}

// lookup returns the raw value at path in the record base (as indexed by
// w.g), and whether it is there. Of duplicate keys the last one counts, as
// in Python's json, JavaScript's JSON.parse and Go's encoding/json.
func (w *Worker) lookup(base []byte, path []string) ([]byte, bool) {
	if !w.g.object {
		return nil, false
	}
	members, src := w.g.members, base
	for level, name := range path {
		var val []byte
		found := false
		for k := len(members) - 1; k >= 0; k-- {
			if keyIs(src, members[k], name) {
				val, found = src[members[k].val.lo:members[k].val.hi], true
				break
			}
		}
		if !found {
			return nil, false
		}
		if level == len(path)-1 {
			return val, true
		}
		if val[0] != '{' {
			return nil, false
		}
		g := w.subGate(level + 1)
		if g.scan(val) != nil {
			return nil, false
		}
		members, src = g.members, val
	}
	return nil, false
}

// keyIs reports whether member m of src has the key name.
func keyIs(src []byte, m member, name string) bool {
	if !m.escaped {
		return string(src[m.key.lo:m.key.hi]) == name
	}
	return escapedKeyIs(src, m, name)
}

func escapedKeyIs(src []byte, m member, name string) bool {
	d, err := decode(src[m.key.lo-1 : m.key.hi+1])
	return err == nil && d == name
}
