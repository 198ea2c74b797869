package demo

import (
	"context"
	"time"

	"github.com/sluice-dev/sluice/wire"
)

// NewProgress exposes the progress-line maker.
func NewProgress(start time.Time, drained, published, reconnects func() int64) *progress {
	return &progress{drained: drained, published: published, reconnects: reconnects, start: start, lastAt: start}
}

// Line exposes progress.line.
func (p *progress) Line(now time.Time) string { return p.line(now) }

// Drainer exposes the drainer child's owner.
type Drainer = drainer

// NewDrainer returns the owner of a drainer child running exe.
func NewDrainer(life context.Context, exe, socket, out, logPath string) *Drainer {
	return &drainer{life: life, exe: exe, socket: socket, out: out, framing: wire.FramingAcked, logPath: logPath}
}

func (d *drainer) Start(ctx context.Context) error { return d.start(ctx) }
func (d *drainer) Kill() bool                      { return d.kill() }
func (d *drainer) Stop()                           { d.stop() }
