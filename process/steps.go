package process

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
)

// Step is one processing step as configured. Exactly one of its fields is
// set.
type Step struct {
	// Filter keeps the record when the expression is true and drops it
	// (counted, done) when it is false.
	Filter string
	// Set sets each field path to the value of its expression. The
	// expressions of one set step all see the record as it was before the
	// step; paths with dots address nested objects, created when missing.
	Set []Assignment
	// Delete removes each field path; a missing one is no error.
	Delete []string
	// Rename moves each field to its new path, keeping its raw bytes; a
	// missing field is no error.
	Rename []Renaming
	// Reject dead-letters the record with Reason when If is true.
	Reject *Reject
}

// Assignment is one field of a set step.
type Assignment struct{ Path, Expr string }

// Renaming is one field of a rename step.
type Renaming struct{ From, To string }

// Reject is a reject step.
type Reject struct{ If, Reason string }

// Options configures a Processor. A zero field takes the default given in
// its comment.
type Options struct {
	Steps []Step
	// MaxDepth bounds the nesting of objects and arrays. 0: 64.
	MaxDepth int
	// MaxRecordBytes bounds one record. 0: 1 MiB.
	MaxRecordBytes int
	// MaxMessageBytes bounds one queue message. 0: 8 MiB.
	MaxMessageBytes int
	// OrderBy is the expression of pipeline.order_by, compiled only to
	// check it (the pipeline keeps queue order when it is set, which holds
	// for any key). "": none.
	OrderBy string
	// Now is the clock behind now(). Nil: time.Now.
	Now func() time.Time
}

// WithDefaults returns o with its zero fields replaced by their defaults.
func (o Options) WithDefaults() Options {
	if o.MaxDepth <= 0 {
		o.MaxDepth = 64
	}
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = 1 << 20
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 8 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Expression limits, kept on: expr's node limit at compile time and its
// memory budget at run time (what one evaluation may allocate in strings,
// arrays and ranges).
const (
	maxNodes     = 2000
	memoryBudget = 1 << 20
)

type stepKind uint8

const (
	kindFilter stepKind = iota
	kindSet
	kindDelete
	kindRename
	kindReject
	kindKey // pipeline.order_by, evaluated only by Worker.Key
)

var kindNames = [...]string{kindFilter: "filter", kindSet: "set", kindDelete: "delete", kindRename: "rename", kindReject: "reject", kindKey: "order_by"}

// step is a compiled Step.
type step struct {
	kind   stepKind
	index  int
	prog   *vm.Program // filter, reject
	cmp    *fastCmp    // prog is a plain comparison of a field with a constant
	sets   []setOp
	dels   [][]string
	moves  []moveOp
	reason string
	reads  []fieldRead // the fields the step's expressions use
	// flush: an earlier step changed a field this one reads, so the
	// pending edits are written into the record before this step runs.
	flush bool
	// loadAll (set): some expression always runs on the VM, so the
	// environment is loaded before the step; otherwise only when an
	// expression falls back to the VM.
	loadAll bool
}

type setOp struct {
	path []string
	src  string
	prog *vm.Program
	now  bool // the expression is exactly now(): written without the VM
	// cased is set when the expression is upper(field) or lower(field):
	// an ASCII string without escapes is written without the VM (or the
	// environment); any other value goes to the VM, so the result is
	// always expr's.
	cased *caseCall
	// konst is the JSON of an expression that is a literal (true, 7,
	// "x", nil), written as it is, without the VM; nil otherwise.
	konst []byte
}

type moveOp struct{ from, to []string }

// fieldRead is one field an expression reads: its env key ("geo.country")
// and its path.
type fieldRead struct {
	key  string
	path []string
}

// CompileError is a step that does not compile: Step is its index in
// process.steps, Field the part of it ("filter", "set.user", "reject.if"),
// Expr the expression and Line/Column the error's position in it (1-based;
// 0 when the error has no position).
type CompileError struct {
	Step         int
	Field        string
	Expr         string
	Line, Column int
	Msg          string
}

func (e *CompileError) Error() string {
	pos := ""
	if e.Line > 0 {
		pos = fmt.Sprintf(" at %d:%d", e.Line, e.Column)
	}
	if e.Step < 0 {
		return fmt.Sprintf("pipeline.%s: expression %q%s: %s", e.Field, e.Expr, pos, e.Msg)
	}
	if e.Expr == "" {
		return fmt.Sprintf("process.steps[%d].%s: %s", e.Step, e.Field, e.Msg)
	}
	return fmt.Sprintf("process.steps[%d].%s: expression %q%s: %s", e.Step, e.Field, e.Expr, pos, e.Msg)
}

// compile compiles the configured steps.
func compile(opts Options) ([]step, *step, error) {
	var errs []error
	out := make([]step, 0, len(opts.Steps))
	for i, s := range opts.Steps {
		st, err := compileStep(i, s, opts.Now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, st)
	}
	var key *step
	if opts.OrderBy != "" {
		c := compiler{now: opts.Now}
		prog, err := c.compile(-1, "order_by", opts.OrderBy)
		if err != nil {
			errs = append(errs, err)
		}
		key = &step{kind: kindKey, index: -1, prog: prog, reads: c.reads}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	planFlushes(out)
	return out, key, nil
}

func compileStep(i int, s Step, now func() time.Time) (step, error) {
	set := 0
	for _, b := range []bool{s.Filter != "", len(s.Set) > 0, len(s.Delete) > 0, len(s.Rename) > 0, s.Reject != nil} {
		if b {
			set++
		}
	}
	if set != 1 {
		return step{}, &CompileError{Step: i, Field: "", Msg: "a step has exactly one of filter, set, delete, rename or reject"}
	}
	st := step{index: i}
	var err error
	c := compiler{now: now}
	switch {
	case s.Filter != "":
		st.kind = kindFilter
		st.prog, err = c.compile(i, "filter", s.Filter)
		st.cmp = c.cmp
	case len(s.Set) > 0:
		st.kind = kindSet
		for _, a := range s.Set {
			p, perr := parsePath(i, "set", a.Path)
			if perr != nil {
				return st, perr
			}
			op := setOp{path: p, src: a.Expr}
			switch k, isConst := constant(a.Expr); {
			case isNowCall(a.Expr):
				op.now = true
			case isConst:
				op.konst = k
			default:
				if op.prog, err = c.compile(i, "set."+a.Path, a.Expr); err != nil {
					return st, err
				}
				op.cased = c.cased
				if op.cased == nil {
					st.loadAll = true
				}
			}
			st.sets = append(st.sets, op)
		}
	case len(s.Delete) > 0:
		st.kind = kindDelete
		for _, d := range s.Delete {
			p, perr := parsePath(i, "delete", d)
			if perr != nil {
				return st, perr
			}
			st.dels = append(st.dels, p)
		}
	case len(s.Rename) > 0:
		st.kind = kindRename
		for _, r := range s.Rename {
			from, perr := parsePath(i, "rename", r.From)
			if perr != nil {
				return st, perr
			}
			to, perr := parsePath(i, "rename."+r.From, r.To)
			if perr != nil {
				return st, perr
			}
			st.moves = append(st.moves, moveOp{from: from, to: to})
		}
	default:
		st.kind = kindReject
		if s.Reject.If == "" {
			return st, &CompileError{Step: i, Field: "reject.if", Msg: "a reject step needs an if expression"}
		}
		if s.Reject.Reason == "" {
			return st, &CompileError{Step: i, Field: "reject.reason", Msg: "a reject step needs a reason"}
		}
		st.reason = s.Reject.Reason
		st.prog, err = c.compile(i, "reject.if", s.Reject.If)
		st.cmp = c.cmp
	}
	if err != nil {
		return st, err
	}
	st.reads = c.reads
	return st, nil
}

// parsePath splits a field path at its dots.
func parsePath(i int, field, p string) ([]string, error) {
	parts := strings.Split(p, ".")
	for _, s := range parts {
		if s == "" {
			return nil, &CompileError{Step: i, Field: field, Msg: fmt.Sprintf("field path %q has an empty part (write paths like geo.country)", p)}
		}
	}
	return parts, nil
}

// isNowCall reports whether src is exactly a call of now().
func isNowCall(src string) bool {
	t, err := parser.Parse(src)
	if err != nil {
		return false
	}
	switch n := t.Node.(type) {
	case *ast.BuiltinNode:
		return n.Name == "now" && len(n.Arguments) == 0
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		return ok && id.Value == "now" && len(n.Arguments) == 0
	}
	return false
}

// constant returns the JSON of src when src is a literal: a string, a
// number, true, false or nil.
func constant(src string) ([]byte, bool) {
	t, err := parser.Parse(src)
	if err != nil {
		return nil, false
	}
	var v any
	switch n := t.Node.(type) {
	case *ast.StringNode:
		v = n.Value
	case *ast.IntegerNode:
		v = n.Value
	case *ast.FloatNode:
		v = n.Value
	case *ast.BoolNode:
		v = n.Value
	case *ast.NilNode:
		v = nil
	default:
		return nil, false
	}
	b, err := appendJSON(nil, v)
	return b, err == nil
}

// compiler compiles one step's expressions, collecting the fields they read.
type compiler struct {
	now   func() time.Time
	reads []fieldRead
	cmp   *fastCmp  // of the last expression compiled, when it is one
	cased *caseCall // likewise
}

// names the environment holds besides the record's fields.
const subjectName = "subject"

func (c *compiler) compile(i int, field, src string) (*vm.Program, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, compileError(i, field, src, err)
	}
	// Collect the fields: flatten member chains, then every identifier
	// left that is not a function, a let variable or subject is a field.
	lets := map[string]bool{}
	ast.Walk(&tree.Node, letCollector(lets))
	fl := &flattener{lets: lets}
	ast.Walk(&tree.Node, fl)
	c.cmp = comparison(tree.Node)
	c.cased = casing(tree.Node)
	env := types.Map{subjectName: types.String}
	for _, k := range fl.fields {
		env[k] = types.Any
		if !c.has(k) {
			c.reads = append(c.reads, fieldRead{key: k, path: strings.Split(k, ".")})
		}
	}
	now := c.now
	prog, err := expr.Compile(src,
		expr.Env(env),
		expr.Patch(&flattener{lets: lets}),
		expr.Function("now", func(...any) (any, error) { return now(), nil }, new(func() time.Time)),
		expr.MaxNodes(maxNodes),
	)
	if err != nil {
		return nil, compileError(i, field, src, err)
	}
	return prog, nil
}

func (c *compiler) has(k string) bool {
	for _, r := range c.reads {
		if r.key == k {
			return true
		}
	}
	return false
}

func compileError(i int, field, src string, err error) error {
	ce := &CompileError{Step: i, Field: field, Expr: src, Msg: err.Error()}
	var fe *file.Error
	if errors.As(err, &fe) {
		ce.Msg = fe.Message
		ce.Line, ce.Column = fe.Line, fe.Column+1
	}
	return ce
}

// caseCall is an expression upper(field) or lower(field).
type caseCall struct {
	path  []string
	upper bool
}

// casing returns the caseCall that n (flattened) is, or nil.
func casing(n ast.Node) *caseCall {
	var name string
	var args []ast.Node
	switch v := n.(type) {
	case *ast.BuiltinNode:
		name, args = v.Name, v.Arguments
	case *ast.CallNode:
		if id, ok := v.Callee.(*ast.IdentifierNode); ok {
			name, args = id.Value, v.Arguments
		}
	}
	if name != "upper" && name != "lower" || len(args) != 1 {
		return nil
	}
	id, ok := args[0].(*ast.IdentifierNode)
	if !ok || id.Value == subjectName || strings.HasPrefix(id.Value, "$") {
		return nil
	}
	return &caseCall{path: strings.Split(id.Value, "."), upper: name == "upper"}
}

// appendCased appends the JSON string raw with its letters upper- or
// lower-cased, and reports true, when raw is a string of ASCII characters
// without escapes; otherwise it appends nothing and reports false.
func (c *caseCall) appendCased(dst, raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return dst, false
	}
	body := raw[1 : len(raw)-1]
	for _, b := range body {
		if b >= utf8.RuneSelf || b == '\\' {
			return dst, false
		}
	}
	dst = append(dst, '"')
	for _, b := range body {
		switch {
		case c.upper && 'a' <= b && b <= 'z':
			b -= 'a' - 'A'
		case !c.upper && 'A' <= b && b <= 'Z':
			b += 'a' - 'A'
		}
		dst = append(dst, b)
	}
	return append(dst, '"'), true
}

// fastCmp is an expression of the form `field OP constant` (or
// `constant OP field`), which the worker evaluates without the VM when the
// field's value has the constant's type; any other case (a missing field,
// another type) goes to the VM, so the result is always expr's.
type fastCmp struct {
	key     string // the field's env key
	op      string // ==, !=, <, <=, >, >=
	str     string // the constant, when isStr
	num     float64
	inum    int  // the constant, when isInt
	isInt   bool // an integer constant: compared with integers exactly
	isStr   bool
	swapped bool // the constant is on the left
}

func comparison(n ast.Node) *fastCmp {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil
	}
	switch b.Operator {
	case "==", "!=", "<", "<=", ">", ">=":
	default:
		return nil
	}
	f := &fastCmp{op: b.Operator}
	id, ok := b.Left.(*ast.IdentifierNode)
	k := b.Right
	if !ok {
		id, ok = b.Right.(*ast.IdentifierNode)
		k, f.swapped = b.Left, true
	}
	if !ok || id.Value == subjectName {
		return nil
	}
	f.key = id.Value
	switch v := k.(type) {
	case *ast.StringNode:
		f.str, f.isStr = v.Value, true
	case *ast.IntegerNode:
		f.num, f.inum, f.isInt = float64(v.Value), v.Value, true
	case *ast.FloatNode:
		f.num = v.Value
	default:
		return nil
	}
	return f
}

// eval returns the comparison's result and true, or false when the VM
// must decide (v is not of the constant's type).
func (f *fastCmp) eval(v any) (result, ok bool) {
	var c int
	switch x := v.(type) {
	case string:
		if !f.isStr {
			return false, false
		}
		c = strings.Compare(x, f.str)
	case int:
		if f.isStr {
			return false, false
		}
		if f.isInt {
			c = cmp.Compare(x, f.inum)
		} else {
			c = cmp.Compare(float64(x), f.num)
		}
	case float64:
		if f.isStr {
			return false, false
		}
		c = cmp.Compare(x, f.num)
	default:
		return false, false
	}
	if f.swapped {
		c = -c
	}
	switch f.op {
	case "==":
		return c == 0, true
	case "!=":
		return c != 0, true
	case "<":
		return c < 0, true
	case "<=":
		return c <= 0, true
	case ">":
		return c > 0, true
	}
	return c >= 0, true
}

// letCollector records the names of let variables.
type letCollector map[string]bool

func (l letCollector) Visit(n *ast.Node) {
	if v, ok := (*n).(*ast.VariableDeclaratorNode); ok {
		l[v.Name] = true
	}
}

// flattener rewrites each chain of constant member accesses on a record
// field, like geo.country or geo["country"], into one identifier
// "geo.country", which the worker reads straight from the record's bytes,
// and lists the fields it found. ast.Walk visits children first, so a chain
// is flattened from its root outwards.
type flattener struct {
	lets   map[string]bool
	fields []string
}

func (f *flattener) field(name string) bool {
	return name != subjectName && !f.lets[name] && !strings.HasPrefix(name, "$")
}

func (f *flattener) Visit(n *ast.Node) {
	switch v := (*n).(type) {
	case *ast.CallNode:
		// The callee was visited as an identifier already: take it back.
		if id, ok := v.Callee.(*ast.IdentifierNode); ok {
			f.drop(id.Value)
		}
	case *ast.IdentifierNode:
		if f.field(v.Value) {
			f.add(v.Value)
		}
	case *ast.MemberNode:
		id, ok := v.Node.(*ast.IdentifierNode)
		prop, isStr := v.Property.(*ast.StringNode)
		if !ok || !isStr || !f.field(id.Value) || strings.Contains(prop.Value, ".") || prop.Value == "" {
			return
		}
		f.drop(id.Value)
		name := id.Value + "." + prop.Value
		f.add(name)
		flat := &ast.IdentifierNode{Value: name}
		ast.Patch(n, flat)
	}
}

func (f *flattener) add(name string) {
	for _, s := range f.fields {
		if s == name {
			return
		}
	}
	f.fields = append(f.fields, name)
}

func (f *flattener) drop(name string) {
	for i, s := range f.fields {
		if s == name {
			f.fields = append(f.fields[:i], f.fields[i+1:]...)
			return
		}
	}
}

// planFlushes marks the steps that read a field an earlier step changed
// since the last flush: their pending edits are written first, so every
// step sees the record as the steps before it left it. Writes need no
// flush: the edits are applied in order when the record is written.
func planFlushes(steps []step) {
	var dirty [][]string
	for i := range steps {
		st := &steps[i]
		var reads [][]string
		for _, r := range st.reads {
			reads = append(reads, r.path)
		}
		for _, m := range st.moves {
			reads = append(reads, m.from)
		}
		for _, r := range reads {
			if overlapsAny(r, dirty) {
				st.flush = true
				dirty = nil
				break
			}
		}
		for _, s := range st.sets {
			dirty = append(dirty, s.path)
		}
		dirty = append(dirty, st.dels...)
		for _, m := range st.moves {
			dirty = append(dirty, m.from, m.to)
		}
	}
}

func overlapsAny(p []string, set [][]string) bool {
	for _, q := range set {
		n := min(len(p), len(q))
		same := true
		for k := range n {
			if p[k] != q[k] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}
