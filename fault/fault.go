// Package fault provides named fault-injection points that can be switched on
// at run time to widen race windows, slow a path down or make it fail.
//
// A Point is declared once per place in the code, as a package variable:
//
//	var beforeClose = fault.Register("sink.reconnect.before_close", "between deciding to reconnect and closing the old connection")
//
// and hit on the path it guards:
//
//	if err := beforeClose.Hit(ctx); err != nil { ... }
//
// When no action is set, Hit costs one atomic load. Actions are set with a
// spec string such as "sink.write.before=delay(5ms)" (see Parse).
//
// fault is a leaf package: it imports nothing from sluice.
package fault

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
)

// Point is one named injection point. Its zero value is not usable; create
// points with Register.
type Point struct {
	name string
	doc  string
	act  atomic.Pointer[Action] // nil when off: the fast path
	hits atomic.Uint64          // activations since start
}

var (
	mu     sync.Mutex            // guards points
	points = map[string]*Point{} // by name
)

// Register declares a point. Registering the same name twice returns the
// first point, so package variables in tests may repeat it.
func Register(name, doc string) *Point {
	mu.Lock()
	defer mu.Unlock()
	if p, ok := points[name]; ok {
		return p
	}
	p := &Point{name: name, doc: doc}
	points[name] = p
	return p
}

// Name returns the point's name.
func (p *Point) Name() string { return p.name }

// Hits returns how many times the point's action has fired.
func (p *Point) Hits() uint64 { return p.hits.Load() }

// Hit runs the point's action, if any. It returns nil when the point is off or
// its action did not fire, ErrInjected or ErrInjectedClose when it fired an
// error, and ctx.Err() when ctx ended during an injected delay.
//
// Hit is small enough to be inlined, so on an off point a call site costs one
// atomic load and a nil check (BenchmarkPoint_HitOff against
// BenchmarkAtomicPointerLoad shows it).
func (p *Point) Hit(ctx context.Context) error {
	if p.act.Load() != nil {
		return p.hitOn(ctx)
	}
	return nil
}

// hitOn is Hit's slow path, kept out of line so Hit inlines. It loads the
// action again: the point may have been switched off in between.
func (p *Point) hitOn(ctx context.Context) error {
	a := p.act.Load()
	if a == nil {
		return nil
	}
	return a.fire(ctx, p)
}

// Lookup returns the point registered under name.
func Lookup(name string) (*Point, bool) {
	mu.Lock()
	defer mu.Unlock()
	p, ok := points[name]
	return p, ok
}

// All returns every registered point, sorted by name.
func All() []*Point {
	mu.Lock()
	defer mu.Unlock()
	out := make([]*Point, 0, len(points))
	for _, p := range points {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Doc returns the point's one-line description.
func (p *Point) Doc() string { return p.doc }
