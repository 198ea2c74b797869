package process

import "unsafe"

// box makes interface values of the strings and numbers a worker reads
// from records without allocating: Go boxes a string or a float64 into an
// interface by copying it to the heap, which for the two or three fields
// an expression reads costs more allocations than the whole rest of a
// step. Instead each value is stored in a slot of a worker-owned slab, and
// the interface's data word points at the slot, the way the runtime's own
// boxing points at its heap copy.
//
// This is safe because a slot is written only when it is handed out, and
// handed out again only after reset, which Process calls when it starts a
// record: by then no interface made for the previous record is in use
// (the environment's entries are overwritten before the VM runs, and the
// VM's stack is cleared at each run). A slab that fills up is replaced,
// not reused, so the interfaces that still point into it stay valid.
type box struct {
	strs   []string
	floats []float64
	ints   []int
	ns     int // slots handed out since reset
	nf     int
	ni     int
}

// eface is the layout of an interface value with no methods (any).
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

var (
	stringType  = typeOf("")
	float64Type = typeOf(0.0)
	intType     = typeOf(0)
)

func typeOf(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

const slabSize = 64

// reset makes every slot free again. The string slots are cleared: they
// alias the payloads of earlier messages, which must not stay reachable.
func (b *box) reset() {
	clear(b.strs[:b.ns])
	b.ns, b.nf, b.ni = 0, 0, 0
}

func make1(typ, data unsafe.Pointer) any {
	var v any
	e := (*eface)(unsafe.Pointer(&v))
	e.typ, e.data = typ, data
	return v
}

func (b *box) str(s string) any {
	if b.ns == len(b.strs) {
		b.strs, b.ns = make([]string, slabSize), 0
	}
	p := &b.strs[b.ns]
	b.ns++
	*p = s
	return make1(stringType, unsafe.Pointer(p))
}

func (b *box) float(f float64) any {
	if b.nf == len(b.floats) {
		b.floats, b.nf = make([]float64, slabSize), 0
	}
	p := &b.floats[b.nf]
	b.nf++
	*p = f
	return make1(float64Type, unsafe.Pointer(p))
}

func (b *box) int(n int) any {
	if n >= 0 && n < 256 {
		return n // the runtime boxes these without allocating
	}
	if b.ni == len(b.ints) {
		b.ints, b.ni = make([]int, slabSize), 0
	}
	p := &b.ints[b.ni]
	b.ni++
	*p = n
	return make1(intType, unsafe.Pointer(p))
}
