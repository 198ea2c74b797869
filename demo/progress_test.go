package demo_test

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/demo"
)

var lineRE = regexp.MustCompile(`^ +(\d+)s  published +(\d+)  drained +(\d+)  reconnects +(\d+)  rate +(\d+) rec/s\n$`)

// parseLine returns the published and drained figures of a progress line.
func parseLine(t *testing.T, line string) (published, drained int64) {
	t.Helper()
	m := lineRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("progress line %q does not match %s", line, lineRE)
	}
	published, _ = strconv.ParseInt(m[2], 10, 64)
	drained, _ = strconv.ParseInt(m[3], 10, 64)
	return published, drained
}

// TestProgress_DrainedNeverAbovePublished drives the progress line with
// fake counters and a fake clock: records keep arriving between the reads
// of one line, and the producer sees the queue's acks late. No line may
// show more drained than published.
func TestProgress_DrainedNeverAbovePublished(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)

	t.Run("records arrive between the reads", func(t *testing.T) {
		// Every read of either counter is a moment later: 100 more
		// records stored by the queue and acknowledged, and, a moment
		// later, drained. Reading published before drained would show
		// drained = published + 100.
		var now int64
		var order []string
		published := func() int64 { now++; order = append(order, "published"); return now * 100 }
		drained := func() int64 { now++; order = append(order, "drained"); return now*100 - 50 }
		p := demo.NewProgress(start, drained, published, func() int64 { return 3 })
		for i := 1; i <= 20; i++ {
			order = order[:0]
			line := p.Line(start.Add(time.Duration(i) * time.Second))
			pub, drn := parseLine(t, line)
			if drn > pub {
				t.Fatalf("line %d: %q shows drained %d > published %d", i, line, drn, pub)
			}
			if fmt.Sprint(order) != "[drained published]" {
				t.Fatalf("line %d read the counters in the order %v, want drained first", i, order)
			}
		}
	})

	t.Run("acks seen late", func(t *testing.T) {
		// The producer has seen 3230 acks, but 5483 records are already in
		// the drainer's output (the line from the issue): they were stored
		// by the queue, so published is at least 5483.
		p := demo.NewProgress(start, func() int64 { return 5483 }, func() int64 { return 3230 }, func() int64 { return 0 })
		pub, drn := parseLine(t, p.Line(start.Add(time.Second)))
		if pub != 5483 || drn != 5483 {
			t.Fatalf("published %d, drained %d; want 5483 for both", pub, drn)
		}
	})

	t.Run("rate", func(t *testing.T) {
		var drained int64
		p := demo.NewProgress(start, func() int64 { return drained }, func() int64 { return drained + 10 }, func() int64 { return 0 })
		drained = 5000
		p.Line(start.Add(time.Second))
		drained = 7000
		line := p.Line(start.Add(3 * time.Second))
		if m := lineRE.FindStringSubmatch(line); m == nil || m[1] != "3" || m[5] != "1000" {
			t.Fatalf("line %q: want 3s and rate 1000", line)
		}
	})
}
