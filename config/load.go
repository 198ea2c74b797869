package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Load builds the configuration: Default, then the YAML file at path (none
// when path is ""), then SLUICE_* environment variables, then resolves
// drain.socket (it follows sink.socket unless set), then Validate. Every
// problem found is returned at once; see FieldError for the format. A file
// that cannot be read returns that error, wrapped.
func Load(path string) (*Config, error) { return LoadIgnoring(path) }

// LoadIgnoring is Load for a file that holds more than sluice's
// configuration: the top-level keys named in ignore are skipped instead of
// being unknown fields. sluice test reads its test files with it (their
// tests: section beside a process: section).
func LoadIgnoring(path string, ignore ...string) (*Config, error) {
	c, errs, err := readIgnoring(path, ignore)
	if err != nil {
		return nil, err
	}
	errs = append(errs, c.problems()...)
	if len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	return c, nil
}

// LoadWith is Load with overrides: after the file and the environment,
// override (command-line flags, applied with Set) runs, and then every parse
// and validation problem is reported at once, as Load does. An error from
// override is returned as it is.
func LoadWith(path string, override func(*Config) error) (*Config, error) {
	c, errs, err := read(path)
	if err != nil {
		return nil, err
	}
	if override != nil {
		if err := override(c); err != nil {
			return nil, err
		}
	}
	errs = append(errs, c.problems()...)
	if len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	return c, nil
}

// Read is Load without the final Validate, for callers that apply more
// overrides (command-line flags, with Set) and then call Validate
// themselves. It still rejects what cannot be parsed: YAML syntax, unknown
// fields, wrong types, bad environment values.
func Read(path string) (*Config, error) {
	c, errs, err := read(path)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	return c, nil
}

// fileKind names what a non-regular file is.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}

// read layers defaults, the file and the environment. Values that could not
// be parsed keep their defaults and are reported in errs; err is for a file
// that cannot be read.
func read(path string) (c *Config, errs []*FieldError, err error) {
	return readIgnoring(path, nil)
}

func readIgnoring(path string, ignore []string) (c *Config, errs []*FieldError, err error) {
	cfg := Default()
	c = &cfg
	c.src = &sources{file: path, loaded: true, origin: map[string]origin{}}
	if path != "" {
		// A FIFO or a device would block or never end: only a regular
		// file (or a symlink to one) is a configuration.
		if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("read config %s: it is a %s, not a regular file; give the path of a YAML file (--config)", path, fileKind(st.Mode()))
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("read config: %w", err)
		}
		// A byte-order mark (some editors on Windows write one) is not
		// YAML content.
		data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		errs = c.decode(path, data, ignore)
	}
	errs = append(errs, c.applyEnv()...)
	if _, set := c.src.lookup("drain.socket"); !set {
		c.Drain.Socket = c.Sink.Socket
	}
	return c, errs, nil
}

// decode applies the YAML document in data to c, recording each field's
// position. It reports every problem it can find rather than stopping at
// the first, except for YAML syntax errors.
func (c *Config) decode(file string, data []byte, ignore []string) []*FieldError {
	// Duplicate keys are reported by mapping, which knows their full path.
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		fe := &FieldError{File: file, Msg: err.Error(), Source: SourceFile}
		var ye yaml.Error
		if errors.As(err, &ye) {
			fe.Msg = ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				fe.Line, fe.Column = tk.Position.Line, tk.Position.Column
			}
		}
		return []*FieldError{fe}
	}
	d := &decoder{c: c, file: file, anchors: map[string]ast.Node{}, ignore: ignore}
	var body ast.Node
	for i, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil || i > 0 && hasBody(f.Docs[:i]) {
			d.fail(doc.Body, "", "only one YAML document is allowed")
			break
		}
		body = doc.Body
	}
	if body != nil {
		d.mapping(body, "")
	}
	return d.errs
}

func hasBody(docs []*ast.DocumentNode) bool {
	for _, d := range docs {
		if d != nil && d.Body != nil {
			return true
		}
	}
	return false
}

type decoder struct {
	c       *Config
	file    string
	anchors map[string]ast.Node
	errs    []*FieldError
	ignore  []string // top-level keys to skip
}

func (d *decoder) fail(n ast.Node, key, format string, args ...any) {
	fe := &FieldError{File: d.file, Field: key, Msg: fmt.Sprintf(format, args...), Source: SourceFile}
	fe.Line, fe.Column = position(n)
	d.errs = append(d.errs, fe)
}

func position(n ast.Node) (line, col int) {
	if n == nil {
		return 0, 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line, tk.Position.Column
	}
	return 0, 0
}

// resolve strips anchors (remembering them) and tags, and follows aliases.
// An alias it cannot follow (unknown, or a loop) is returned as is.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for hops := 0; ; hops++ {
		switch v := n.(type) {
		case *ast.AnchorNode:
			if v.Name != nil {
				d.anchors[v.Name.GetToken().Value] = v.Value
			}
			n = v.Value
		case *ast.AliasNode:
			if v.Value == nil || hops > 100 {
				return n
			}
			target, ok := d.anchors[v.Value.GetToken().Value]
			if !ok {
				return n
			}
			n = target
		case *ast.TagNode:
			n = v.Value
		default:
			return n
		}
	}
}

// mapping decodes n as the section whose dotted key is prefix ("" for the
// top level, else "queue", "queue.tls", ...).
func (d *decoder) mapping(n ast.Node, prefix string) {
	n = d.resolve(n)
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	case *ast.NullNode, nil:
		return // an empty section keeps its defaults
	default:
		if prefix == "" {
			d.fail(n, "", "must be a mapping of sections like \"queue:\" (got %s)", nodeKind(n))
		} else {
			d.fail(n, prefix, "must be a mapping (got %s)", nodeKind(n))
		}
		return
	}
	children := childNames(prefix)
	seen := map[string]ast.Node{}
	for _, mv := range values {
		name := keyName(mv.Key)
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if prefix == "" && slices.Contains(d.ignore, name) {
			continue
		}
		if first, dup := seen[name]; dup {
			where := ""
			if tk := first.GetToken(); tk != nil && tk.Position != nil {
				where = fmt.Sprintf(" (first at line %d)", tk.Position.Line)
			}
			d.fail(mv.Key, key, "set twice%s: keep one", where)
			continue
		}
		seen[name] = mv.Key
		if _, known := children[name]; !known {
			d.fail(mv.Key, key, "%s", unknownField(name, children))
			continue
		}
		if children[name] {
			d.mapping(mv.Value, key)
			continue
		}
		d.leaf(fieldByKey[key], mv)
	}
}

// childNames returns the names directly under prefix, true for sections.
func childNames(prefix string) map[string]bool {
	out := map[string]bool{}
	for _, f := range fields {
		rest := f.key
		if prefix != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(f.key, prefix+"."); !ok {
				continue
			}
		}
		name, _, nested := strings.Cut(rest, ".")
		out[name] = out[name] || nested
	}
	return out
}

// unknownField builds the message for an unknown name, suggesting a sibling with a similar name, or the same name elsewhere.
func unknownField(name string, siblings map[string]bool) string {
	if s := suggest(name, slices.Sorted(mapKeys(siblings))); s != "" {
		return fmt.Sprintf("unknown field (did you mean %q?)", s)
	}
	for _, f := range fields {
		if strings.HasSuffix(f.key, "."+name) || f.key == name {
			return fmt.Sprintf("unknown field (did you mean %q?)", f.key)
		}
	}
	return "unknown field"
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func keyName(k ast.MapKeyNode) string {
	if s, ok := k.(*ast.StringNode); ok {
		return s.Value
	}
	if tk := k.GetToken(); tk != nil {
		return tk.Value
	}
	return k.String()
}

// leaf decodes one field's value.
func (d *decoder) leaf(f *field, mv *ast.MappingValueNode) {
	n := d.resolve(mv.Value)
	line, col := position(mv.Key)
	if _, null := n.(*ast.NullNode); null || n == nil {
		return // written with no value: keep the default
	}
	if f.kind == kindSteps {
		d.steps(f, mv, n)
		return
	}
	if f.kind == kindList {
		seq, ok := d.sequence(mv, f.key, n, "a list")
		if !ok {
			return
		}
		var items []string
		for i, item := range seq.Values {
			item = d.resolve(item)
			ikey := fmt.Sprintf("%s[%d]", f.key, i)
			s, isScalar := scalarText(item)
			if !isScalar {
				d.fail(item, ikey, "must be a string (got %s)", nodeKind(item))
				ok = false
				continue
			}
			il, ic := position(item)
			d.c.src.origin[ikey] = origin{source: SourceFile, line: il, column: ic}
			items = append(items, s)
		}
		if ok {
			d.c.value(f).Set(reflect.ValueOf(items))
			d.c.src.origin[f.key] = origin{source: SourceFile, line: line, column: col}
		}
		return
	}
	s, ok := scalarText(n)
	if !ok {
		d.fail(mv.Key, f.key, "must be %s (got %s)", kindArticle[f.kind], nodeKind(n))
		return
	}
	if err := setScalar(d.c.value(f), f.kind, s); err != nil {
		d.fail(mv.Key, f.key, "%s", err)
		return
	}
	d.c.src.origin[f.key] = origin{source: SourceFile, line: line, column: col}
}

var kindArticle = [...]string{
	kindString:   "a string",
	kindInt:      "an integer",
	kindDuration: "a duration",
	kindBytes:    "a byte size",
	kindMode:     "octal permission bits",
	kindList:     "a list",
	kindBool:     "true or false",
	kindSteps:    "a list of steps",
}

// scalarText returns the text of a scalar as written (unquoted), so that
// 0600 stays "0600" and 16MiB stays "16MiB".
func scalarText(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		if v.Value == nil {
			return "", true
		}
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return v.GetToken().Value, true
	}
	return "", false
}

func nodeKind(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.AliasNode:
		return "an alias that resolves to nothing"
	case nil, *ast.NullNode:
		return "nothing"
	}
	if s, ok := scalarText(n); ok {
		return fmt.Sprintf("%q", s)
	}
	return n.Type().String()
}

// joinSorted joins errs with errors.Join, those with a line first in (line,
// column) order, the rest in the order found.
func joinSorted(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int {
		if (a.Line > 0) != (b.Line > 0) {
			if a.Line > 0 {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// sequence returns n as a list, or reports that the field key must be
// what.
func (d *decoder) sequence(mv *ast.MappingValueNode, key string, n ast.Node, what string) (*ast.SequenceNode, bool) {
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(mv.Key, key, "must be %s (got %s)", what, nodeKind(n))
	}
	return seq, ok
}
