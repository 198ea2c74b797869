package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

func sampleFrames() []wire.Frame {
	many := make([]record.Record, 0, 40)
	for i := range 40 {
		// 20 distinct streams, to exercise the interner beyond its
		// allocation-free small table.
		many = append(many, record.Record{
			ID:   record.ID{Stream: fmt.Sprintf("S%02d", i%20), Epoch: uint64(i % 3), Seq: uint64(i / 2), Index: uint32(i % 2)},
			Data: bytes.Repeat([]byte{byte(i)}, i),
		})
	}
	return []wire.Frame{
		{Type: wire.TypeHello, Hello: wire.Hello{MinVersion: 1, MaxVersion: 3, MaxFrameBytes: 1 << 20, Window: 8, Instance: "host-a/1234/ü",
			Positions: []wire.StreamPosition{{Stream: "A", Epoch: 1<<64 - 1, LastSeq: 1<<64 - 1}, {Stream: "A", Epoch: 0, LastSeq: 0}, {Stream: "ü", Epoch: 5, LastSeq: 6}}}},
		{Type: wire.TypeHello, Hello: wire.Hello{MinVersion: 2, MaxVersion: 2, Instance: "no positions"}},
		{Type: wire.TypeHello, Hello: wire.Hello{MinVersion: 1, MaxVersion: 1, Window: 8, Instance: "version-1 layout"}},
		{Type: wire.TypeWelcome, Welcome: wire.Welcome{Version: 2, MaxFrameBytes: 65536, MaxRecords: 100, Window: 8}},
		{Type: wire.TypeData, Data: wire.Data{FrameID: 1, Records: []record.Record{{ID: record.ID{Stream: "A", Epoch: 1<<64 - 1, Seq: 1<<64 - 1, Index: 1<<32 - 1}, Data: []byte("x")}}}},
		{Type: wire.TypeData, Data: wire.Data{FrameID: 2, Records: many}},
		{Type: wire.TypeData, Data: wire.Data{FrameID: 1<<64 - 1, Records: []record.Record{}}},
		{Type: wire.TypeAck, Ack: wire.Ack{UpTo: 0}},
		{Type: wire.TypeAck, Ack: wire.Ack{UpTo: 2}},
		{Type: wire.TypeClose, Close: wire.Close{Code: wire.CloseCode(0x7777), Reason: "unknown codes pass through"}},
	}
}

func TestReader_RoundTrip(t *testing.T) {
	frames := sampleFrames()
	var stream []byte
	for _, f := range frames {
		stream = encode(t, stream, f)
	}
	readers := map[string]func() io.Reader{
		"whole":     func() io.Reader { return bytes.NewReader(stream) },
		"one-byte":  func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":      func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"chunks":    func() io.Reader { return newChunkReader(stream, 1, 37) },
		"data+eof":  func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
		"timeout-1": func() io.Reader { return &retryReader{r: iotest.TimeoutReader(bytes.NewReader(stream))} },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			reenc, got, err := readAll(t, wire.NewReader(mk()))
			if err != io.EOF {
				t.Fatalf("after %d frames: %v, want io.EOF", len(got), err)
			}
			if !reflect.DeepEqual(got, frames) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, frames)
			}
			if !bytes.Equal(reenc, stream) {
				t.Fatal("re-encoding differs from the stream")
			}
		})
	}
}

// retryReader retries once after iotest.ErrTimeout, like a caller that
// handles a deadline; the Reader must surface the error, so this checks that
// it wraps it.
type retryReader struct{ r io.Reader }

func (r *retryReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if errors.Is(err, iotest.ErrTimeout) && n == 0 {
		return r.r.Read(p)
	}
	return n, err
}

func TestReader_Errors(t *testing.T) {
	data := encode(t, nil, vData)
	hello := encode(t, nil, vHello)
	ack := wire.AppendAck(nil, wire.Ack{UpTo: 1})
	// frame builds a frame with a correct CRC around an arbitrary body.
	frame := func(typ wire.FrameType, body ...[]byte) []byte {
		b := make([]byte, wire.HeaderLen)
		for _, p := range body {
			b = append(b, p...)
		}
		binary.BigEndian.PutUint32(b, uint32(len(b)-wire.HeaderLen))
		b[8] = byte(typ)
		return refix(b)
	}
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	str := func(s string) []byte { return append(u16(uint16(len(s))), s...) }
	rec := func(si uint16, n uint32, payload string) []byte {
		return slicesConcat(u16(si), u64(1), u32(0), u32(n), []byte(payload))
	}
	ent := func(s string, epoch uint64) []byte { return append(str(s), u64(epoch)...) } // a DATA stream table entry
	helloBody := func(instance []byte) []byte {
		return slicesConcat([]byte("SLUICE"), u16(1), u16(1), u32(0), u32(0), instance)
	}
	hello2 := func(rest ...[]byte) []byte { // a version-2 HELLO body
		return slicesConcat(slicesConcat([]byte("SLUICE"), u16(2), u16(2), u32(0), u32(0), str("i")), slicesConcat(rest...))
	}
	pos := func(s string, epoch, last uint64) []byte { return slicesConcat(str(s), u64(epoch), u64(last)) }

	tests := []struct {
		name  string
		input []byte
		limit int // Limits.MaxFrameBytes
		want  string
	}{
		{"empty stream", nil, 0, "EOF"},
		{"partial header", data[:5], 0, "UNEXPECTED_EOF"},
		{"header only", data[:wire.HeaderLen], 0, "UNEXPECTED_EOF"},
		{"partial body", data[:len(data)-1], 0, "UNEXPECTED_EOF"},
		{"length over limit", data, len(data) - wire.HeaderLen - 1, "FRAME_TOO_LARGE"},
		{"length at limit", data, len(data) - wire.HeaderLen, "EOF"},
		{"handshake limit", frame(wire.TypeData, make([]byte, wire.MaxHandshakeBytes+1)), wire.MaxHandshakeBytes, "FRAME_TOO_LARGE"},
		{"crc over type byte", func() []byte { b := bytes.Clone(ack); b[8] = byte(wire.TypeData); return b }(), 0, "BAD_CHECKSUM"},
		{"crc over body", func() []byte { b := bytes.Clone(data); b[len(b)-1] ^= 1; return b }(), 0, "BAD_CHECKSUM"},
		{"crc checked before flags", func() []byte { b := bytes.Clone(ack); b[9] = 0x80; return b }(), 0, "BAD_CHECKSUM"},
		{"flags bit 7", refix(func() []byte { b := bytes.Clone(ack); b[9] = 0x80; return b }()), 0, "BAD_FLAGS"},
		{"type 0", frame(0), 0, "UNKNOWN_TYPE"},
		{"type 0xff", frame(0xff, u64(1)), 0, "UNKNOWN_TYPE"},
		{"hello short magic", frame(wire.TypeHello, []byte("SLU")), 0, "BAD_MAGIC"},
		{"hello lower-case magic", frame(wire.TypeHello, helloBody(str("x"))[:0], []byte("sluice"), hello[wire.HeaderLen+6:]), 0, "BAD_MAGIC"},
		{"hello short", frame(wire.TypeHello, []byte("SLUICE"), u16(1)), 0, "MALFORMED"},
		{"hello no instance", frame(wire.TypeHello, helloBody(nil)), 0, "MALFORMED"},
		{"hello empty instance", frame(wire.TypeHello, helloBody(str(""))), 0, "MALFORMED"},
		{"hello long instance", frame(wire.TypeHello, helloBody(str(strings.Repeat("i", 256)))), 0, "MALFORMED"},
		{"hello instance past end", frame(wire.TypeHello, helloBody(u16(5)), []byte("ab")), 0, "MALFORMED"},
		{"hello invalid utf-8", frame(wire.TypeHello, helloBody(str("a\xffb"))), 0, "MALFORMED"},
		{"hello trailing", frame(wire.TypeHello, helloBody(str("x")), []byte{0}), 0, "MALFORMED"},
		{"hello v2 no position count", frame(wire.TypeHello, hello2()), 0, "MALFORMED"},
		{"hello v2 empty positions", frame(wire.TypeHello, hello2(u16(0))), 0, "EOF"},
		{"hello v2 position count past end", frame(wire.TypeHello, hello2(u16(2), pos("S", 1, 1))), 0, "MALFORMED"},
		{"hello v2 position cut", frame(wire.TypeHello, hello2(u16(1), pos("S", 1, 1)[:12])), 0, "MALFORMED"},
		{"hello v2 empty position stream", frame(wire.TypeHello, hello2(u16(1), pos("", 1, 1))), 0, "MALFORMED"},
		{"hello v2 invalid utf-8 position stream", frame(wire.TypeHello, hello2(u16(1), pos("\xc0", 1, 1))), 0, "MALFORMED"},
		{"hello v2 duplicate position", frame(wire.TypeHello, hello2(u16(2), pos("S", 1, 1), pos("S", 1, 2))), 0, "MALFORMED"},
		{"hello v2 same stream, two epochs", frame(wire.TypeHello, hello2(u16(2), pos("S", 1, 1), pos("S", 2, 1))), 0, "EOF"},
		{"hello v2 65 positions", frame(wire.TypeHello, hello2(u16(65), bytes.Repeat(pos("S", 1, 1), 65))), 0, "MALFORMED"},
		{"hello over the handshake limit", frame(wire.TypeHello, hello2(u16(64), bytes.Repeat(pos(strings.Repeat("s", 60), 1, 1), 64))[:wire.MaxHandshakeBytes+1]), 0, "FRAME_TOO_LARGE"},
		{"hello v2 trailing", frame(wire.TypeHello, hello2(u16(1), pos("S", 1, 1), []byte{0})), 0, "MALFORMED"},
		{"welcome short", frame(wire.TypeWelcome, u16(1)), 0, "MALFORMED"},
		{"welcome trailing", frame(wire.TypeWelcome, u16(1), u32(1), u32(1), u32(1), str(""), []byte{0}), 0, "MALFORMED"},
		{"ack short", frame(wire.TypeAck, u32(1)), 0, "MALFORMED"},
		{"close short", frame(wire.TypeClose, []byte{0}), 0, "MALFORMED"},
		{"close no reason", frame(wire.TypeClose, u16(0)), 0, "MALFORMED"},
		{"close long reason", frame(wire.TypeClose, u16(0), str(strings.Repeat("r", 1025))), 0, "MALFORMED"},
		{"data short", frame(wire.TypeData, u64(1)), 0, "MALFORMED"},
		{"data frame id 0", frame(wire.TypeData, u64(0), u16(0), u32(0)), 0, "MALFORMED"},
		{"data no record count", frame(wire.TypeData, u64(1), u16(0)), 0, "MALFORMED"},
		{"data empty stream name", frame(wire.TypeData, u64(1), u16(1), ent("", 1), u32(1), rec(0, 0, "")), 0, "MALFORMED"},
		{"data duplicate stream", frame(wire.TypeData, u64(1), u16(2), ent("A", 1), ent("A", 1), u32(2), rec(0, 0, ""), rec(1, 0, "")), 0, "MALFORMED"},
		{"data same stream, two epochs", frame(wire.TypeData, u64(1), u16(2), ent("A", 1), ent("A", 2), u32(2), rec(0, 0, ""), rec(1, 0, "")), 0, "EOF"},
		{"data stream entry without epoch", frame(wire.TypeData, u64(1), u16(1), str("A"), u32(1), rec(0, 0, "")), 0, "MALFORMED"},
		{"data duplicate stream, large table", frame(wire.TypeData, u64(1), u16(10), ent("0", 1), ent("1", 1), ent("2", 1), ent("3", 1), ent("4", 1), ent("5", 1), ent("6", 1), ent("7", 1), ent("8", 1), ent("3", 1)), 0, "MALFORMED"},
		{"data stream table cannot fit", frame(wire.TypeData, u64(1), u16(65535), ent("A", 1), u32(0)), 0, "MALFORMED"},
		{"data stream index out of range", frame(wire.TypeData, u64(1), u16(1), ent("A", 1), u32(1), rec(1, 0, "")), 0, "MALFORMED"},
		{"data stream index skips ahead", frame(wire.TypeData, u64(1), u16(2), ent("A", 1), ent("B", 1), u32(2), rec(1, 0, ""), rec(0, 0, "")), 0, "MALFORMED"},
		{"data stream unused", frame(wire.TypeData, u64(1), u16(1), ent("A", 1), u32(0)), 0, "MALFORMED"},
		{"data too many records", frame(wire.TypeData, u64(1), u16(0), u32(65537)), 0, "TOO_MANY_RECORDS"},
		{"data records cannot fit", frame(wire.TypeData, u64(1), u16(0), u32(65536)), 0, "MALFORMED"},
		{"data payload past end", frame(wire.TypeData, u64(1), u16(1), ent("A", 1), u32(1), rec(0, 10, "abc"), make([]byte, 0)), 0, "MALFORMED"},
		{"data record header cut", frame(wire.TypeData, u64(1), u16(1), ent("A", 1), u32(2), rec(0, 1, "a"), rec(0, 0, "")[:17]), 0, "MALFORMED"},
		{"data fewer records than counted", frame(wire.TypeData, u64(1), u16(1), ent("A", 1), u32(2), rec(0, 0, ""), make([]byte, 18)[:17], []byte{}), 0, "MALFORMED"},
		{"data trailing", frame(wire.TypeData, u64(1), u16(1), ent("A", 1), u32(1), rec(0, 1, "a"), []byte{0}), 0, "MALFORMED"},
		{"valid then garbage", append(bytes.Clone(data), 0xde, 0xad), 0, "UNEXPECTED_EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := wire.NewReader(bytes.NewReader(tt.input))
			rd.Limits.MaxFrameBytes = tt.limit
			var err error
			for err == nil {
				_, err = rd.ReadFrame()
			}
			if got := errKind(err); got != tt.want {
				t.Fatalf("error %v (%s), want %s", err, got, tt.want)
			}
			var pe *wire.ProtocolError
			if errors.As(err, &pe) && (pe.Msg == "" || !strings.Contains(pe.Error(), pe.Code.String())) {
				t.Errorf("error text %q lacks its code or message", pe.Error())
			}
		})
	}
	_ = hello
}

func slicesConcat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestReader_TooManyRecordsLimit(t *testing.T) {
	recs := make([]record.Record, 5)
	for i := range recs {
		recs[i] = record.Record{ID: record.ID{Stream: "S", Seq: 1, Index: uint32(i)}}
	}
	b, err := wire.AppendData(nil, 1, recs, wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	rd := wire.NewReader(bytes.NewReader(b))
	rd.Limits.MaxRecords = 4
	_, err = rd.ReadFrame()
	if !errors.Is(err, wire.ErrTooManyRecords) || errKind(err) != "TOO_MANY_RECORDS" {
		t.Fatalf("MaxRecords 4: %v", err)
	}
	rd = wire.NewReader(bytes.NewReader(b))
	rd.Limits.MaxRecords = 5
	if _, err := rd.ReadFrame(); err != nil {
		t.Fatalf("MaxRecords 5: %v", err)
	}
}

func TestReader_OtherErrorsWrapped(t *testing.T) {
	boom := errors.New("boom")
	rd := wire.NewReader(io.MultiReader(bytes.NewReader(vectorBytes(t, "ack.bin")[:3]), iotest.ErrReader(boom)))
	_, err := rd.ReadFrame()
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want it to wrap %v", err, boom)
	}
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		t.Fatalf("an I/O error is not a protocol error: %v", err)
	}
}

func vectorBytes(t *testing.T, name string) []byte {
	t.Helper()
	return mustEncode(map[string]wire.Frame{
		"ack.bin":  {Type: wire.TypeAck, Ack: wire.Ack{UpTo: 7}},
		"data.bin": vData,
	}[name])
}

// TestReader_DeclaredLengthBoundsAllocation sends a header announcing a
// 4 MiB body followed by a few bytes: the Reader must not allocate the 4 MiB
// before they arrive.
func TestReader_DeclaredLengthBoundsAllocation(t *testing.T) {
	b := make([]byte, wire.HeaderLen+100)
	binary.BigEndian.PutUint32(b, wire.DefaultMaxFrameBytes)
	b[8] = byte(wire.TypeData)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		_, err := wire.NewReader(bytes.NewReader(b)).ReadFrame()
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	// Each try may allocate its 64 KiB bufio buffer and one 64 KiB step.
	if got := after.TotalAlloc - before.TotalAlloc; got > 10*(256<<10) {
		t.Fatalf("10 truncated 4 MiB frames allocated %d bytes", got)
	}
}

func TestReader_SteadyStateAllocs(t *testing.T) {
	recs := benchRecords(100, 200)
	frame, err := wire.AppendData(nil, 1, recs, wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	rd := wire.NewReader(&repeatReader{data: frame})
	if _, err := rd.ReadFrame(); err != nil { // warm the buffers
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		f, err := rd.ReadFrame()
		if err != nil || len(f.Data.Records) != 100 || f.Data.Records[99].ID.Stream != "INGEST" {
			t.Fatalf("ReadFrame: %v", err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ReadFrame of a DATA frame allocates %v times, want 0", allocs)
	}
}

func TestAppendData_NoAllocs(t *testing.T) {
	recs := benchRecords(100, 200)
	buf := make([]byte, 0, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = wire.AppendData(buf[:0], 1, recs, wire.Limits{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("AppendData allocates %v times, want 0", allocs)
	}
	if want := wire.HeaderLen + wire.DataBodySize(recs); len(buf) != want {
		t.Fatalf("frame is %d bytes, DataBodySize says %d", len(buf), want)
	}
}

func TestAppendData_Errors(t *testing.T) {
	ok := []record.Record{{ID: record.ID{Stream: "S"}, Data: make([]byte, 100)}}
	tests := []struct {
		name    string
		frameID uint64
		recs    []record.Record
		lim     wire.Limits
		want    error
	}{
		{"frame id 0", 0, ok, wire.Limits{}, wire.ErrZeroFrameID},
		{"empty stream", 1, []record.Record{{}}, wire.Limits{}, wire.ErrBadString},
		{"long stream", 1, []record.Record{{ID: record.ID{Stream: strings.Repeat("s", 256)}}}, wire.Limits{}, wire.ErrBadString},
		{"invalid utf-8 stream", 1, []record.Record{{ID: record.ID{Stream: "\xc0"}}}, wire.Limits{}, wire.ErrBadString},
		{"too many records", 1, append(ok, ok...), wire.Limits{MaxRecords: 1}, wire.ErrTooManyRecords},
		{"too large", 1, ok, wire.Limits{MaxFrameBytes: 8 + 2 + 11 + 4 + 18 + 99}, wire.ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix")
			got, err := wire.AppendData(dst, tt.frameID, tt.recs, tt.lim)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if string(got) != "prefix" {
				t.Fatalf("dst changed to %q on error", got)
			}
		})
	}
	t.Run("exactly at the limit", func(t *testing.T) {
		if _, err := wire.AppendData(nil, 1, ok, wire.Limits{MaxFrameBytes: 8 + 2 + 11 + 4 + 18 + 100}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("too many streams", func(t *testing.T) {
		recs := make([]record.Record, wire.MaxStreamsPerFrame+1)
		for i := range recs {
			recs[i].ID.Stream = fmt.Sprint(i)
		}
		if _, err := wire.AppendData(nil, 1, recs, wire.Limits{MaxRecords: len(recs)}); !errors.Is(err, wire.ErrTooManyStreams) {
			t.Fatalf("error %v, want ErrTooManyStreams", err)
		}
		b, err := wire.AppendData(nil, 1, recs[1:], wire.Limits{MaxRecords: len(recs)})
		if err != nil {
			t.Fatalf("%d streams: %v", len(recs)-1, err)
		}
		rd := wire.NewReader(bytes.NewReader(b))
		rd.Limits.MaxRecords = len(recs)
		f, err := rd.ReadFrame()
		if err != nil || f.Data.Records[len(recs)-2].ID.Stream != fmt.Sprint(len(recs)-1) {
			t.Fatalf("reading %d streams back: %v", len(recs)-1, err)
		}
	})
}

func TestAppendHelloWelcome_Errors(t *testing.T) {
	for _, inst := range []string{"", strings.Repeat("x", 256), "\xff"} {
		for _, top := range []uint16{1, 2} {
			if b, err := wire.AppendHello([]byte("p"), wire.Hello{MinVersion: 1, MaxVersion: top, Instance: inst}); !errors.Is(err, wire.ErrBadString) || string(b) != "p" {
				t.Errorf("AppendHello instance %q, max version %d: %v, dst %q", inst, top, err, b)
			}
		}
	}
	for _, srv := range []string{strings.Repeat("x", 256), "\xff"} {
		if b, err := wire.AppendWelcome([]byte("p"), wire.Welcome{Server: srv}); !errors.Is(err, wire.ErrBadString) || string(b) != "p" {
			t.Errorf("AppendWelcome server %q: %v, dst %q", srv, err, b)
		}
	}
}

func TestAppendClose_SanitizesReason(t *testing.T) {
	tests := []struct{ reason, want string }{
		{"ok", "ok"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{strings.Repeat("a", 1024), strings.Repeat("a", 1024)},
		{strings.Repeat("a", 1025), strings.Repeat("a", 1024)},
		{strings.Repeat("a", 1023) + "é", strings.Repeat("a", 1023)}, // é would straddle the limit
	}
	for _, tt := range tests {
		b := wire.AppendClose(nil, wire.Close{Code: wire.CodeInternal, Reason: tt.reason})
		f, err := wire.NewReader(bytes.NewReader(b)).ReadFrame()
		if err != nil {
			t.Fatalf("reason of %d bytes: %v", len(tt.reason), err)
		}
		if f.Close.Reason != tt.want || f.Close.Code != wire.CodeInternal {
			t.Errorf("reason %q: got %q", tt.reason, f.Close.Reason)
		}
	}
}

func TestHeader_Layout(t *testing.T) {
	b := wire.AppendAck([]byte("pre"), wire.Ack{UpTo: 0x0102030405060708})
	b = b[3:]
	want := []byte{0, 0, 0, 8, 0, 0, 0, 0, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	binary.BigEndian.PutUint32(want[4:], crc32.Checksum(want[8:], crc32.MakeTable(crc32.Castagnoli)))
	if !bytes.Equal(b, want) {
		t.Fatalf("ACK frame\n%x\nwant\n%x", b, want)
	}
}

func TestAccept(t *testing.T) {
	own := wire.Welcome{MaxFrameBytes: 1 << 20, MaxRecords: 1000, Window: 16, Server: "d"}
	tests := []struct {
		name  string
		hello wire.Hello
		own   wire.Welcome
		want  wire.Welcome
		code  string
	}{
		{"defaults", wire.Hello{MinVersion: 2, MaxVersion: 2}, wire.Welcome{}, wire.Welcome{Version: 2, MaxFrameBytes: wire.DefaultMaxFrameBytes, MaxRecords: wire.DefaultMaxRecords, Window: wire.DefaultWindow}, ""},
		{"wishes granted", wire.Hello{MinVersion: 2, MaxVersion: 2, MaxFrameBytes: 100000, Window: 4}, own, wire.Welcome{Version: 2, MaxFrameBytes: 100000, MaxRecords: 1000, Window: 4, Server: "d"}, ""},
		{"wishes capped", wire.Hello{MinVersion: 2, MaxVersion: 2, MaxFrameBytes: 8 << 20, Window: 1000}, own, wire.Welcome{Version: 2, MaxFrameBytes: 1 << 20, MaxRecords: 1000, Window: 16, Server: "d"}, ""},
		{"tiny frame wish raised", wire.Hello{MinVersion: 2, MaxVersion: 2, MaxFrameBytes: 10}, own, wire.Welcome{Version: 2, MaxFrameBytes: wire.MaxHandshakeBytes, MaxRecords: 1000, Window: 16, Server: "d"}, ""},
		{"client 1..2", wire.Hello{MinVersion: 1, MaxVersion: 2}, own, wire.Welcome{Version: 2, MaxFrameBytes: 1 << 20, MaxRecords: 1000, Window: 16, Server: "d"}, ""},
		{"client 1..3, own.Version not used", wire.Hello{MinVersion: 1, MaxVersion: 3}, wire.Welcome{Version: 3}, wire.Welcome{Version: 2, MaxFrameBytes: wire.DefaultMaxFrameBytes, MaxRecords: wire.DefaultMaxRecords, Window: wire.DefaultWindow}, ""},
		{"v1-only client", wire.Hello{MinVersion: 1, MaxVersion: 1}, own, wire.Welcome{}, "UNSUPPORTED_VERSION"},
		{"v3-only client", wire.Hello{MinVersion: 3, MaxVersion: 3}, own, wire.Welcome{}, "UNSUPPORTED_VERSION"},
		{"version 0", wire.Hello{MinVersion: 0, MaxVersion: 2}, own, wire.Welcome{}, "BAD_HANDSHAKE"},
		{"empty range", wire.Hello{MinVersion: 2, MaxVersion: 1}, own, wire.Welcome{}, "BAD_HANDSHAKE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.Accept(tt.hello, tt.own)
			if tt.code != "" {
				if errKind(err) != tt.code {
					t.Fatalf("error %v, want %s", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if err := wire.CheckWelcome(tt.hello, got); err != nil {
				t.Fatalf("client rejects the server's answer: %v", err)
			}
		})
	}
}

func TestCheckWelcome(t *testing.T) {
	h := wire.Hello{MinVersion: 1, MaxVersion: 2}
	good := wire.Welcome{Version: 2, MaxFrameBytes: wire.MaxHandshakeBytes, MaxRecords: 1, Window: 1}
	if err := wire.CheckWelcome(h, good); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*wire.Welcome){
		"version above": func(w *wire.Welcome) { w.Version = 3 },
		"version 1":     func(w *wire.Welcome) { w.Version = 1 }, // in the range, but not spoken by this package
		"version 0":     func(w *wire.Welcome) { w.Version = 0 },
		"tiny frames":   func(w *wire.Welcome) { w.MaxFrameBytes = wire.MaxHandshakeBytes - 1 },
		"huge frames":   func(w *wire.Welcome) { w.MaxFrameBytes = 1 << 31 },
		"no records":    func(w *wire.Welcome) { w.MaxRecords = 0 },
		"no window":     func(w *wire.Welcome) { w.Window = 0 },
	} {
		w := good
		mut(&w)
		if err := wire.CheckWelcome(h, w); errKind(err) != "BAD_HANDSHAKE" {
			t.Errorf("%s: %v, want BAD_HANDSHAKE", name, err)
		}
	}
}

func TestCloseFor(t *testing.T) {
	if c := wire.CloseFor(nil); c.Code != wire.CodeNormal {
		t.Errorf("nil: %+v", c)
	}
	pe := &wire.ProtocolError{Code: wire.CodeBadChecksum, Msg: "crc"}
	if c := wire.CloseFor(fmt.Errorf("conn 3: %w", pe)); c.Code != wire.CodeBadChecksum || !strings.Contains(c.Reason, "crc") {
		t.Errorf("wrapped protocol error: %+v", c)
	}
	if c := wire.CloseFor(errors.New("disk full")); c.Code != wire.CodeInternal || c.Reason != "disk full" {
		t.Errorf("other error: %+v", c)
	}
}

func TestCloseCode_String(t *testing.T) {
	if got := wire.CodeUnsupportedVersion.String(); got != "UNSUPPORTED_VERSION" {
		t.Errorf("got %q", got)
	}
	if got := wire.CloseCode(0x1234).String(); got != "CODE_0x1234" || wire.CloseCode(0x1234).Known() {
		t.Errorf("unknown code: %q", got)
	}
	if got := wire.FrameType(9).String(); got != "TYPE_0x09" {
		t.Errorf("unknown type: %q", got)
	}
}

// TestReader_CountsBoundAllocation checks that counts read from a small body
// (a 65535-entry stream table, 65536 records) are rejected before anything is
// allocated for them.
func TestReader_CountsBoundAllocation(t *testing.T) {
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	for name, body := range map[string][]byte{
		"streams": slicesConcat(binary.BigEndian.AppendUint64(nil, 1), u16(65535), u16(1), []byte("A"), make([]byte, 4)),
		"records": slicesConcat(binary.BigEndian.AppendUint64(nil, 1), u16(0), binary.BigEndian.AppendUint32(nil, 65536), make([]byte, 100)),
	} {
		t.Run(name, func(t *testing.T) {
			b := make([]byte, wire.HeaderLen, wire.HeaderLen+len(body))
			b = append(b, body...)
			binary.BigEndian.PutUint32(b, uint32(len(body)))
			b[8] = byte(wire.TypeData)
			b = refix(b)
			rd := wire.NewReader(&repeatReader{data: b})
			if _, err := rd.ReadFrame(); errKind(err) != "MALFORMED" {
				t.Fatalf("got %v, want MALFORMED", err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range 10 {
				if _, err := rd.ReadFrame(); errKind(err) != "MALFORMED" {
					t.Fatalf("got %v, want MALFORMED", err)
				}
			}
			runtime.ReadMemStats(&after)
			if got := after.TotalAlloc - before.TotalAlloc; got > 10*4096 {
				t.Fatalf("10 reads allocated %d bytes", got)
			}
		})
	}
}

// Detach keeps a DATA frame's records valid after later reads, and the
// memory given back is what the next frames are read into.
func TestReader_Detach(t *testing.T) {
	mk := func(id uint64, s string) wire.Frame {
		return wire.Frame{Type: wire.TypeData, Data: wire.Data{FrameID: id, Records: []record.Record{{ID: record.ID{Stream: "S", Seq: id}, Data: []byte(s)}}}}
	}
	var stream []byte
	for i, s := range []string{"first", "second", "third"} {
		stream = encode(t, stream, mk(uint64(i+1), s))
	}
	rd := wire.NewReader(bytes.NewReader(stream))
	f1, err := rd.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	body, recs := rd.Detach(nil, nil)
	if _, err := rd.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if got := string(f1.Data.Records[0].Data); got != "first" {
		t.Fatalf("detached record reads %q after the next frame, want \"first\"", got)
	}
	if len(recs) == 0 || &recs[0] != &f1.Data.Records[0] || cap(body) == 0 {
		t.Fatal("Detach did not return the frame's records and body")
	}
	rd.Detach(body, recs) // recycled: the third frame is read into them
	f3, err := rd.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if &f3.Data.Records[0] != &recs[0] || string(f3.Data.Records[0].Data) != "third" {
		t.Fatalf("third frame: %q, not read into the memory given back", f3.Data.Records[0].Data)
	}
}
