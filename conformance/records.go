package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/sluice-dev/sluice/record"
)

// message is one queue message as the suite makes them up: a sequence of
// the run's stream and its records, numbered over the run.
type message struct {
	seq  uint64
	ns   []int
	recs []record.Record
}

func (r *run) stream() string { return "conformance-" + r.id }

// newMessage returns the next message of the run's stream, with n records.
func (r *run) newMessage(n int) message {
	r.mu.Lock()
	r.seq++
	m := message{seq: r.seq}
	for i := range n {
		r.n++
		m.ns = append(m.ns, r.n)
		m.recs = append(m.recs, record.Record{
			ID:   record.ID{Stream: r.stream(), Epoch: r.epoch, Seq: m.seq, Index: uint32(i)},
			Data: fmt.Appendf(nil, `{"conformance":%q,"n":%d}`, r.id, r.n),
		})
	}
	r.mu.Unlock()
	return m
}

// newMessages returns count messages of 1 to 3 records.
func (r *run) newMessages(count int) []message {
	ms := make([]message, count)
	for i := range ms {
		ms[i] = r.newMessage(1 + i%3)
	}
	return ms
}

// nextFrame returns a frame id above every one handed out before.
func (r *run) nextFrame() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frame++
	return r.frame
}

func records(ms ...message) []record.Record {
	var out []record.Record
	for _, m := range ms {
		out = append(out, m.recs...)
	}
	return out
}

func (r *run) mark(set map[int]bool, ms ...message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range ms {
		for _, n := range m.ns {
			set[n] = true
		}
	}
}

func (r *run) markSent(ms ...message)  { r.mark(r.sent, ms...) }
func (r *run) markAcked(ms ...message) { r.mark(r.acked, ms...) }

// sendAcked sends ms as one frame on c and waits for its ACK.
func (r *run) sendAcked(c *client, ms ...message) error {
	r.markSent(ms...)
	if err := c.sendAcked(r.nextFrame(), records(ms...)); err != nil {
		return err
	}
	r.markAcked(ms...)
	return nil
}

// output counts the run's records in Options.Out: how many times each
// record number was written.
func (r *run) output() (map[int]int, error) {
	marker := fmt.Appendf(nil, `{"conformance":%q,"n":`, r.id)
	counts := map[int]int{}
	count := func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			i := bytes.Index(line, marker)
			if i < 0 {
				continue
			}
			rest := line[i+len(marker):]
			j := bytes.IndexByte(rest, '}')
			n, err := strconv.Atoi(string(rest[:max(j, 0)]))
			if j < 0 || err != nil {
				return fmt.Errorf("%s: a torn or altered record of this run: %q", path, line)
			}
			counts[n]++
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		return nil
	}
	st, err := os.Stat(r.opts.Out)
	if err != nil {
		return nil, fmt.Errorf("the drainer's output %s: %w", r.opts.Out, err)
	}
	if !st.IsDir() {
		return counts, count(r.opts.Out)
	}
	err = filepath.WalkDir(r.opts.Out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		return count(path)
	})
	return counts, err
}

// checkOutput fails unless every record in want is in the output exactly
// once and every record acknowledged so far is there too.
func (r *run) checkOutput(want ...message) (string, error) {
	if r.opts.Out == "" {
		return "", nil
	}
	got, err := r.output()
	if err != nil {
		return "", err
	}
	var lost, dup []int
	for n, c := range got {
		if c > 1 {
			dup = append(dup, n)
		}
	}
	missing := map[int]bool{}
	r.mu.Lock()
	for n := range r.acked {
		if got[n] == 0 {
			missing[n] = true
		}
	}
	r.mu.Unlock()
	for _, m := range want {
		for _, n := range m.ns {
			if got[n] == 0 {
				missing[n] = true
			}
		}
	}
	for n := range missing {
		lost = append(lost, n)
	}
	if len(lost) > 0 || len(dup) > 0 {
		slices.Sort(lost)
		slices.Sort(dup)
		return "", fmt.Errorf("output: %d acknowledged records missing %s, %d written more than once %s", len(lost), head(lost), len(dup), head(dup))
	}
	return fmt.Sprintf("%d records of this run in the output, each once", len(got)), nil
}

// head shows the first few of ns.
func head(ns []int) string {
	if len(ns) > 8 {
		return fmt.Sprintf("%v…", ns[:8])
	}
	return fmt.Sprint(ns)
}
