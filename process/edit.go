package process

import (
	"fmt"
	"slices"
	"unsafe"
)

// apply writes the object src (whose members the gate indexed) with the
// edits idx (indexes into w.edits, in order) applied at level: each
// existing member is copied as it is or replaced, and the members the
// edits add come last, in the order first written. Nested objects that an
// edit reaches into are scanned and rewritten the same way; nothing else
// is decoded.
func (w *Worker) apply(dst, src []byte, members []member, level int, idx []int32) ([]byte, error) {
	// Mark the members some edit names, and the edits that name a member.
	mark := len(w.marks)
	w.marks = slices.Grow(w.marks, len(members)+len(idx))[:mark+len(members)+len(idx)]
	clear(w.marks[mark:])
	touched, matched := w.marks[mark:mark+len(members)], w.marks[mark+len(members):]
	dst, err := w.applyMarked(dst, src, members, level, idx, touched, matched)
	w.marks = w.marks[:mark]
	return dst, err
}

func (w *Worker) applyMarked(dst, src []byte, members []member, level int, idx []int32, touched, matched []bool) ([]byte, error) {
	// A key's signature (length, first and last byte) rules most pairs
	// out with one comparison of integers.
	edits := w.edits
	sigs := w.sigs[:0]
	for _, e := range idx {
		sigs = append(sigs, signature(edits[e].path[level]))
	}
	w.sigs = sigs
	for mi, m := range members {
		if m.escaped {
			for ei, e := range idx {
				if escapedKeyIs(src, m, edits[e].path[level]) {
					touched[mi], matched[ei] = true, true
				}
			}
			continue
		}
		key := src[m.key.lo:m.key.hi]
		ks := signature(unsafe.String(unsafe.SliceData(key), len(key)))
		for ei, sig := range sigs {
			if sig == ks && string(key) == edits[idx[ei]].path[level] {
				touched[mi], matched[ei] = true, true
			}
		}
	}
	dst = append(dst, '{')
	n := 0
	var err error
	for mi := 0; mi < len(members); {
		if !touched[mi] {
			// Copy the run of untouched members as it is, commas and all.
			end := mi
			for end+1 < len(members) && !touched[end+1] {
				end++
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, src[members[mi].key.lo-1:members[end].val.hi]...)
			n += end - mi + 1
			mi = end + 1
			continue
		}
		m := members[mi]
		at := len(w.idx)
		for _, e := range idx {
			if keyIs(src, m, w.edits[e].path[level]) {
				w.idx = append(w.idx, e)
			}
		}
		dst, n, err = w.member(dst, n, src[m.key.lo-1:m.key.hi+1], "", src[m.val.lo:m.val.hi], level, w.idx[at:])
		w.idx = w.idx[:at]
		if err != nil {
			return dst, err
		}
		mi++
	}
	for i, e := range idx {
		name := w.edits[e].path[level]
		if matched[i] || seenBefore(w.edits, idx[:i], level, name) {
			continue
		}
		at := len(w.idx)
		for _, e2 := range idx[i:] {
			if w.edits[e2].path[level] == name {
				w.idx = append(w.idx, e2)
			}
		}
		dst, n, err = w.member(dst, n, nil, name, nil, level, w.idx[at:])
		w.idx = w.idx[:at]
		if err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// signature packs a key's length and its first and last bytes.
func signature(k string) uint64 {
	if len(k) == 0 {
		return 0
	}
	return uint64(len(k))<<16 | uint64(k[0])<<8 | uint64(k[len(k)-1])
}

func seenBefore(edits []edit, idx []int32, level int, name string) bool {
	for _, e := range idx {
		if edits[e].path[level] == name {
			return true
		}
	}
	return false
}

// member writes one member whose key is rawKey (quoted, as in the record)
// or name (a new key), with the edits rel applied to its value base (nil:
// the member is new).
func (w *Worker) member(dst []byte, n int, rawKey []byte, name string, base []byte, level int, rel []int32) ([]byte, int, error) {
	// The last edit of the member itself wins over the ones before it;
	// edits deeper down after it apply to its value.
	j := -1
	for k, e := range rel {
		if len(w.edits[e].path) == level+1 {
			j = k
		}
	}
	val := base
	if j >= 0 {
		e := w.edits[rel[j]]
		val = nil
		if !e.del {
			val = w.vals[e.val.lo:e.val.hi]
		}
	}
	deeper := rel[j+1:]
	var setter *edit
	for _, e := range deeper {
		if !w.edits[e].del {
			setter = &w.edits[e]
			break
		}
	}
	writeKey := func() {
		if n > 0 {
			dst = append(dst, ',')
		}
		if rawKey != nil {
			dst = append(dst, rawKey...)
		} else {
			dst = appendString(dst, name)
		}
		dst = append(dst, ':')
		n++
	}
	switch {
	case len(deeper) == 0:
		if val == nil {
			return dst, n, nil
		}
		writeKey()
		return append(dst, val...), n, nil
	case val == nil:
		if setter == nil {
			return dst, n, nil // only deletes below a missing member
		}
		writeKey()
		d, err := w.apply(dst, nil, nil, level+1, deeper)
		return d, n, err
	case val[0] != '{':
		if setter != nil {
			return dst, n, stepErr(setter.step, "set", fmt.Errorf("cannot set %s: %s is %s, not an object",
				pathString(setter.path), pathString(setter.path[:level+1]), typeName(val[0])))
		}
		writeKey()
		return append(dst, val...), n, nil
	}
	g := w.subGate(level + 1)
	if ge := g.scan(val); ge != nil {
		return dst, n, stepErr(-1, "set", fmt.Errorf("internal error: a nested value broke %s: %s", ge.rule, ge.msg))
	}
	writeKey()
	d, err := w.apply(dst, val, g.members, level+1, deeper)
	return d, n, err
}
