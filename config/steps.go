package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// stepKinds are the keys a step may have, each alone.
var stepKinds = []string{"filter", "set", "delete", "rename", "reject"}

// steps decodes process.steps: a list of one-key mappings. The expressions
// are compiled by the process package when sluice starts (and by sluice
// check), which reports their errors at the Line and Column kept here.
func (d *decoder) steps(f *field, mv *ast.MappingValueNode, n ast.Node) {
	seq, ok := d.sequence(mv, f.key, n, "a list of steps like \"- filter: 'x > 1'\"")
	if !ok {
		return
	}
	var out []Step
	for i, item := range seq.Values {
		key := fmt.Sprintf("%s[%d]", f.key, i)
		st, good := d.step(key, d.resolve(item))
		ok = ok && good
		out = append(out, st)
	}
	if ok {
		d.c.Process.Steps = out
		line, col := position(mv.Key)
		d.c.src.origin[f.key] = origin{source: SourceFile, line: line, column: col}
	}
}

func (d *decoder) pairs(n ast.Node) []*ast.MappingValueNode {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}
	}
	return nil
}

func (d *decoder) step(key string, n ast.Node) (Step, bool) {
	values := d.pairs(n)
	if len(values) != 1 {
		got, at := nodeKind(n), n
		if len(values) > 1 {
			var names []string
			for _, v := range values {
				names = append(names, keyName(v.Key))
			}
			got, at = strings.Join(names, " and "), values[0].Key
		}
		d.fail(at, key, "must be a mapping with exactly one of %s (got %s)", strings.Join(stepKinds, ", "), got)
		return Step{}, false
	}
	mv := values[0]
	kind := keyName(mv.Key)
	line, col := position(mv.Key)
	st := Step{Line: line, Column: col}
	val := d.resolve(mv.Value)
	key += "." + kind
	switch kind {
	case "filter":
		s, ok := scalarText(val)
		if !ok || s == "" {
			d.fail(mv.Key, key, "must be an expression (got %s)", nodeKind(val))
			return st, false
		}
		st.Filter = s
	case "set", "rename":
		entries := d.pairs(val)
		if len(entries) == 0 {
			d.fail(mv.Key, key, "must be a mapping of field paths to %s (got %s)", map[string]string{"set": "expressions", "rename": "new paths"}[kind], nodeKind(val))
			return st, false
		}
		for _, e := range entries {
			k := keyName(e.Key)
			v, ok := scalarText(d.resolve(e.Value))
			if !ok || v == "" {
				d.fail(e.Key, key+"."+k, "must be a string (got %s)", nodeKind(d.resolve(e.Value)))
				return st, false
			}
			l, c := position(e.Key)
			p := Pair{Key: k, Value: v, Line: l, Column: c}
			if kind == "set" {
				st.Set = append(st.Set, p)
			} else {
				st.Rename = append(st.Rename, p)
			}
		}
	case "delete":
		seq, ok := val.(*ast.SequenceNode)
		if !ok || len(seq.Values) == 0 {
			got := nodeKind(val)
			if ok {
				got = "an empty list"
			}
			d.fail(mv.Key, key, "must be a list of field paths (got %s)", got)
			return st, false
		}
		for i, item := range seq.Values {
			s, ok := scalarText(d.resolve(item))
			if !ok || s == "" {
				d.fail(item, fmt.Sprintf("%s[%d]", key, i), "must be a field path (got %s)", nodeKind(d.resolve(item)))
				return st, false
			}
			st.Delete = append(st.Delete, s)
		}
	case "reject":
		r := &Reject{}
		for _, e := range d.pairs(val) {
			k := keyName(e.Key)
			v, ok := scalarText(d.resolve(e.Value))
			switch {
			case k != "if" && k != "reason":
				d.fail(e.Key, key+"."+k, "unknown field (a reject step has if and reason)")
				return st, false
			case !ok || v == "":
				d.fail(e.Key, key+"."+k, "must be a string (got %s)", nodeKind(d.resolve(e.Value)))
				return st, false
			case k == "if":
				r.If = v
			default:
				r.Reason = v
			}
		}
		if r.If == "" || r.Reason == "" {
			d.fail(mv.Key, key, "must have both if and reason, like {if: 'amount < 0', reason: 'negative amount'}")
			return st, false
		}
		st.Reject = r
	default:
		msg := "unknown step"
		if s := suggest(kind, stepKinds); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		d.fail(mv.Key, key, "%s; a step is one of %s", msg, strings.Join(stepKinds, ", "))
		return st, false
	}
	return st, true
}

// stepsText renders steps as a YAML flow sequence that steps reads back.
func stepsText(steps []Step) string {
	if len(steps) == 0 {
		return "[]"
	}
	q := strconv.Quote
	pairs := func(ps []Pair) string {
		var out []string
		for _, p := range ps {
			out = append(out, q(p.Key)+": "+q(p.Value))
		}
		return "{" + strings.Join(out, ", ") + "}"
	}
	var items []string
	for _, s := range steps {
		switch {
		case s.Filter != "":
			items = append(items, "{filter: "+q(s.Filter)+"}")
		case len(s.Set) > 0:
			items = append(items, "{set: "+pairs(s.Set)+"}")
		case len(s.Delete) > 0:
			var ds []string
			for _, d := range s.Delete {
				ds = append(ds, q(d))
			}
			items = append(items, "{delete: ["+strings.Join(ds, ", ")+"]}")
		case len(s.Rename) > 0:
			items = append(items, "{rename: "+pairs(s.Rename)+"}")
		case s.Reject != nil:
			items = append(items, "{reject: {if: "+q(s.Reject.If)+", reason: "+q(s.Reject.Reason)+"}}")
		}
	}
	return "[" + strings.Join(items, ", ") + "]"
}
