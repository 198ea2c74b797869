package wire_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// encode appends f's encoding to dst, failing the test on encoder errors.
func encode(t testing.TB, dst []byte, f wire.Frame) []byte {
	t.Helper()
	var err error
	switch f.Type {
	case wire.TypeHello:
		dst, err = wire.AppendHello(dst, f.Hello)
	case wire.TypeWelcome:
		dst, err = wire.AppendWelcome(dst, f.Welcome)
	case wire.TypeData:
		dst, err = wire.AppendData(dst, f.Data.FrameID, f.Data.Records, wire.Limits{})
	case wire.TypeAck:
		dst = wire.AppendAck(dst, f.Ack)
	case wire.TypeClose:
		dst = wire.AppendClose(dst, f.Close)
	default:
		t.Fatalf("cannot encode frame type %v", f.Type)
	}
	if err != nil {
		t.Fatalf("encode %v: %v", f.Type, err)
	}
	return dst
}

// readAll reads frames from rd until an error, re-encoding each one (before
// the next read invalidates it) and returning the concatenated encodings.
func readAll(t testing.TB, rd *wire.Reader) ([]byte, []wire.Frame, error) {
	t.Helper()
	var (
		out    []byte
		frames []wire.Frame
	)
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return out, frames, err
		}
		out = encode(t, out, f)
		frames = append(frames, deepCopy(f))
	}
}

// deepCopy detaches f's records from the Reader's buffers.
func deepCopy(f wire.Frame) wire.Frame {
	if f.Type == wire.TypeData {
		recs := make([]record.Record, len(f.Data.Records))
		for i, r := range f.Data.Records {
			recs[i] = record.Record{ID: r.ID, Data: append([]byte{}, r.Data...)}
		}
		f.Data.Records = recs
	}
	return f
}

// errKind names err the way vectors.json does: a close code name,
// "UNEXPECTED_EOF" or "EOF"; anything else is "OTHER: ...".
func errKind(err error) string {
	var pe *wire.ProtocolError
	switch {
	case err == io.EOF:
		return "EOF"
	case err == io.ErrUnexpectedEOF:
		return "UNEXPECTED_EOF"
	case errors.As(err, &pe):
		return pe.Code.String()
	case err == nil:
		return "nil"
	}
	return "OTHER: " + err.Error()
}

// chunkReader returns data in short reads of pseudo-random sizes 1..max.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func newChunkReader(data []byte, seed uint64, maxChunk int) *chunkReader {
	return &chunkReader{data: data, rng: rand.New(rand.NewPCG(seed, uint64(len(data)))), max: maxChunk}
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rng.IntN(c.max))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// repeatReader returns the same bytes over and over, for steady-state tests.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}
