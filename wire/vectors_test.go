package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors and the fuzz seeds made from them")

const vectorDir = "testdata/vectors"

// vectorFile is testdata/vectors/vectors.json: what each .bin file holds, in
// readable form, for implementers in other languages.
type vectorFile struct {
	Comment string   `json:"comment"`
	Vectors []vector `json:"vectors"`
}

type vector struct {
	File    string   `json:"file"`
	Comment string   `json:"comment"`
	Hex     string   `json:"hex"`
	Frame   *jsFrame `json:"frame,omitempty"` // valid vectors
	Error   string   `json:"error,omitempty"` // invalid vectors: close code name, or UNEXPECTED_EOF
	Code    *uint16  `json:"code,omitempty"`  // the close code's number, for invalid vectors with one
	// For HELLO vectors: the server state the answer assumes (what it
	// committed per stream incarnation) and the frame a version-2 server
	// answers, WELCOME or CLOSE.
	Committed []jsCommitted `json:"committed,omitempty"`
	Answer    *jsAnswer     `json:"answer,omitempty"`
	build     func() []byte
}

type jsCommitted struct {
	Stream string `json:"stream"`
	Epoch  uint64 `json:"epoch,string"`
	Seq    uint64 `json:"highest_seq"`
}

type jsAnswer struct {
	Hex   string   `json:"hex"`
	Frame *jsFrame `json:"frame"`
}

type jsFrame struct {
	Type    string     `json:"type"`
	Hello   *jsHello   `json:"hello,omitempty"`
	Welcome *jsWelcome `json:"welcome,omitempty"`
	Data    *jsData    `json:"data,omitempty"`
	Ack     *jsAck     `json:"ack,omitempty"`
	Close   *jsClose   `json:"close,omitempty"`
}

type jsHello struct {
	MinVersion    uint16        `json:"min_version"`
	MaxVersion    uint16        `json:"max_version"`
	MaxFrameBytes uint32        `json:"max_frame_bytes"`
	Window        uint32        `json:"window"`
	Instance      string        `json:"instance"`
	Positions     *[]jsPosition `json:"positions,omitempty"` // absent: the version-1 layout
}

// jsPosition is a wire.StreamPosition. Epochs are JSON strings: Unix
// nanoseconds exceed 2^53, where JSON parsers that use doubles lose digits.
type jsPosition struct {
	Stream  string `json:"stream"`
	Epoch   uint64 `json:"epoch,string"`
	LastSeq uint64 `json:"last_seq"`
}

type jsWelcome struct {
	Version       uint16 `json:"version"`
	MaxFrameBytes uint32 `json:"max_frame_bytes"`
	MaxRecords    uint32 `json:"max_records"`
	Window        uint32 `json:"window"`
	Server        string `json:"server"`
}

type jsAck struct {
	UpTo uint64 `json:"up_to"`
}

type jsData struct {
	FrameID uint64     `json:"frame_id"`
	Records []jsRecord `json:"records"`
}

type jsRecord struct {
	Stream string `json:"stream"`
	Epoch  uint64 `json:"epoch,string"`
	Seq    uint64 `json:"seq"`
	Index  uint32 `json:"index"`
	Data   string `json:"data"` // the payload as UTF-8 text
}

type jsClose struct {
	Code     uint16 `json:"code"`
	CodeName string `json:"code_name"`
	Reason   string `json:"reason"`
}

func toJS(f wire.Frame) *jsFrame {
	j := &jsFrame{Type: f.Type.String()}
	switch f.Type {
	case wire.TypeHello:
		h := f.Hello
		j.Hello = &jsHello{h.MinVersion, h.MaxVersion, h.MaxFrameBytes, h.Window, h.Instance, nil}
		if h.MaxVersion >= 2 {
			ps := []jsPosition{}
			for _, p := range h.Positions {
				ps = append(ps, jsPosition(p))
			}
			j.Hello.Positions = &ps
		}
	case wire.TypeWelcome:
		j.Welcome = (*jsWelcome)(&f.Welcome)
	case wire.TypeData:
		j.Data = &jsData{FrameID: f.Data.FrameID, Records: []jsRecord{}}
		for _, r := range f.Data.Records {
			j.Data.Records = append(j.Data.Records, jsRecord{r.ID.Stream, r.ID.Epoch, r.ID.Seq, r.ID.Index, string(r.Data)})
		}
	case wire.TypeAck:
		j.Ack = (*jsAck)(&f.Ack)
	case wire.TypeClose:
		j.Close = &jsClose{uint16(f.Close.Code), f.Close.Code.String(), f.Close.Reason}
	}
	return j
}

func fromJS(t *testing.T, j *jsFrame) wire.Frame {
	t.Helper()
	var f wire.Frame
	switch {
	case j.Hello != nil:
		h := j.Hello
		f.Type, f.Hello = wire.TypeHello, wire.Hello{MinVersion: h.MinVersion, MaxVersion: h.MaxVersion, MaxFrameBytes: h.MaxFrameBytes, Window: h.Window, Instance: h.Instance}
		if (h.Positions != nil) != (h.MaxVersion >= 2) {
			t.Fatalf("HELLO %+v: positions must be present exactly when max_version >= 2", h)
		}
		if h.Positions != nil {
			for _, p := range *h.Positions {
				f.Hello.Positions = append(f.Hello.Positions, wire.StreamPosition(p))
			}
		}
	case j.Welcome != nil:
		f.Type, f.Welcome = wire.TypeWelcome, wire.Welcome(*j.Welcome)
	case j.Data != nil:
		f.Type, f.Data.FrameID = wire.TypeData, j.Data.FrameID
		f.Data.Records = []record.Record{}
		for _, r := range j.Data.Records {
			f.Data.Records = append(f.Data.Records, record.Record{ID: record.ID{Stream: r.Stream, Epoch: r.Epoch, Seq: r.Seq, Index: r.Index}, Data: []byte(r.Data)})
		}
	case j.Ack != nil:
		f.Type, f.Ack = wire.TypeAck, wire.Ack(*j.Ack)
	case j.Close != nil:
		f.Type, f.Close = wire.TypeClose, wire.Close{Code: wire.CloseCode(j.Close.Code), Reason: j.Close.Reason}
	default:
		t.Fatalf("frame %q has no fields", j.Type)
	}
	if f.Type.String() != j.Type {
		t.Fatalf("frame type %q does not match its fields (%v)", j.Type, f.Type)
	}
	return f
}

func mustEncode(f wire.Frame) []byte {
	return encode(panicTB{}, nil, f)
}

// panicTB lets mustEncode use encode outside a test.
type panicTB struct{ testing.TB }

func (panicTB) Helper()                        {}
func (panicTB) Fatalf(format string, a ...any) { panic(format) }

// refix recomputes the CRC of a hand-edited frame.
func refix(b []byte) []byte {
	binary.BigEndian.PutUint32(b[4:8], crc32.Checksum(b[8:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// Epochs of the vectors: stream creation times in Unix nanoseconds, as the
// JetStream source uses.
const (
	epochIngest    = 1767225600000000000 // INGEST, created 2026-01-01T00:00:00Z
	epochIngestOld = 1764547200000000000 // INGEST's previous incarnation, 2025-12-01T00:00:00Z
	epochOrders    = 1767312000123456789 // ORDERS, 2026-01-02T00:00:00.123456789Z
)

// vServer is the server every HELLO vector's answer comes from.
var vServer = wire.Welcome{Server: "drain@host-a"}

var (
	vHello = wire.Frame{Type: wire.TypeHello, Hello: wire.Hello{MinVersion: 2, MaxVersion: 2, MaxFrameBytes: 4 << 20, Window: 64, Instance: "sink-1",
		Positions: []wire.StreamPosition{{Stream: "INGEST", Epoch: epochIngest, LastSeq: 42}}}}
	vHelloRewound = wire.Frame{Type: wire.TypeHello, Hello: wire.Hello{MinVersion: 2, MaxVersion: 2, MaxFrameBytes: 4 << 20, Window: 64, Instance: "sink-1",
		Positions: []wire.StreamPosition{{Stream: "ORDERS", Epoch: epochOrders, LastSeq: 1001}, {Stream: "INGEST", Epoch: epochIngest, LastSeq: 120}}}}
	vHelloV1 = wire.Frame{Type: wire.TypeHello, Hello: wire.Hello{MinVersion: 1, MaxVersion: 1, MaxFrameBytes: 4 << 20, Window: 64, Instance: "sink-1"}}
	vData    = wire.Frame{Type: wire.TypeData, Data: wire.Data{FrameID: 7, Records: []record.Record{
		{ID: record.ID{Stream: "INGEST", Epoch: epochIngest, Seq: 42, Index: 0}, Data: []byte(`{"a":1}`)},
		{ID: record.ID{Stream: "INGEST", Epoch: epochIngest, Seq: 42, Index: 1}, Data: []byte(`{}`)},
	}}}
	// The committed state hello.bin and hello_rewound.bin are answered in.
	vCommittedOK      = []jsCommitted{{"INGEST", epochIngestOld, 500}, {"INGEST", epochIngest, 42}}
	vCommittedRewound = []jsCommitted{{"ORDERS", epochOrders, 1001}, {"INGEST", epochIngest, 319}}
)

func frameVector(file, comment string, f wire.Frame) vector {
	return vector{File: file, Comment: comment, Frame: toJS(f), build: func() []byte { return mustEncode(f) }}
}

// helloVector is a valid HELLO and the answer of a server that committed
// what committed lists.
func helloVector(file, comment string, f wire.Frame, committed []jsCommitted) vector {
	v := frameVector(file, comment, f)
	v.Committed = committed
	ans := answer(f.Hello, committed)
	v.Answer = &jsAnswer{Hex: hex.EncodeToString(mustEncode(ans)), Frame: toJS(ans)}
	return v
}

// answer is what ServerState.Hello, with vServer and committed, makes of h:
// the WELCOME, or the CLOSE of its error.
func answer(h wire.Hello, committed []jsCommitted) wire.Frame {
	st := wire.ServerState{Committed: func(stream string, epoch uint64) (uint64, bool) {
		for _, c := range committed {
			if c.Stream == stream && c.Epoch == epoch {
				return c.Seq, true
			}
		}
		return 0, false
	}}
	w, err := st.Hello(wire.Frame{Type: wire.TypeHello, Hello: h}, vServer)
	if err != nil {
		return wire.Frame{Type: wire.TypeClose, Close: wire.CloseFor(err)}
	}
	return wire.Frame{Type: wire.TypeWelcome, Welcome: w}
}

func badVector(file, comment string, want string, build func() []byte) vector {
	return vector{File: file, Comment: comment, Error: want, build: build}
}

// vectors is the source of the files in testdata/vectors.
func vectors() []vector {
	return []vector{
		helloVector("hello.bin", "HELLO from instance sink-1 speaking version 2 only, asking for 4 MiB frames and a window of 64, about to send from stream INGEST (epoch 2026-01-01T00:00:00Z in Unix ns) whose last sequence is 42 (docs/protocol.md section 12). "+
			"Answer: WELCOME, since the server committed INGEST of that epoch up to 42, not beyond (its higher sequences of INGEST's previous epoch are another incarnation, not compared)", vHello, vCommittedOK),
		helloVector("hello_rewound.bin", "HELLO with two stream positions: ORDERS at 1001 and INGEST at 120. Answer: CLOSE STREAM_REWOUND for INGEST, of which the server committed up to 319 in the same epoch: the queue went back",
			vHelloRewound, vCommittedRewound),
		helloVector("hello_v1.bin", "HELLO of a version-1 client (versions 1..1, the version-1 layout: no position table). Answer: CLOSE UNSUPPORTED_VERSION naming the versions both sides speak", vHelloV1, nil),
		frameVector("welcome.bin", "WELCOME choosing version 2 with the default limits: the answer to hello.bin", wire.Frame{Type: wire.TypeWelcome, Welcome: wire.Welcome{Version: 2, MaxFrameBytes: 4 << 20, MaxRecords: 65536, Window: 64, Server: "drain@host-a"}}),
		frameVector("data.bin", "DATA frame 7: two records of message INGEST/42, epoch 2026-01-01T00:00:00Z (docs/protocol.md section 12)", vData),
		frameVector("data_two_streams.bin", "DATA frame 8: records from two streams of different epochs, one with an empty payload and a non-ASCII payload; the table lists (stream, epoch) entries in first-use order", wire.Frame{Type: wire.TypeData, Data: wire.Data{FrameID: 8, Records: []record.Record{
			{ID: record.ID{Stream: "ORDERS", Epoch: epochOrders, Seq: 1000, Index: 0}, Data: []byte(`{"id":"é"}`)},
			{ID: record.ID{Stream: "INGEST", Epoch: epochIngest, Seq: 43, Index: 2}, Data: []byte{}},
			{ID: record.ID{Stream: "ORDERS", Epoch: epochOrders, Seq: 1001, Index: 0}, Data: []byte(`[1,2,3]`)},
		}}}),
		frameVector("data_two_epochs.bin", "DATA frame 10: one stream in two incarnations, the last messages of INGEST's previous epoch re-sent from the window and the first message of the new one: two table entries with the same name", wire.Frame{Type: wire.TypeData, Data: wire.Data{FrameID: 10, Records: []record.Record{
			{ID: record.ID{Stream: "INGEST", Epoch: epochIngestOld, Seq: 500, Index: 0}, Data: []byte(`{"old":500}`)},
			{ID: record.ID{Stream: "INGEST", Epoch: epochIngest, Seq: 1, Index: 0}, Data: []byte(`{"new":1}`)},
			{ID: record.ID{Stream: "INGEST", Epoch: epochIngestOld, Seq: 501, Index: 0}, Data: []byte(`{"old":501}`)},
		}}}),
		frameVector("data_empty.bin", "DATA frame 9 with no records and an empty stream table", wire.Frame{Type: wire.TypeData, Data: wire.Data{FrameID: 9, Records: []record.Record{}}}),
		frameVector("ack.bin", "ACK: every frame with id <= 7 is durable", wire.Frame{Type: wire.TypeAck, Ack: wire.Ack{UpTo: 7}}),
		frameVector("close.bin", "CLOSE GOING_AWAY with a reason", wire.Frame{Type: wire.TypeClose, Close: wire.Close{Code: wire.CodeGoingAway, Reason: "drainer shutting down"}}),
		frameVector("close_normal.bin", "CLOSE NORMAL with an empty reason", wire.Frame{Type: wire.TypeClose, Close: wire.Close{Code: wire.CodeNormal}}),
		frameVector("close_stream_rewound.bin", "CLOSE STREAM_REWOUND: the answer to hello_rewound.bin; the reason names the stream, the epoch, both sequences and the remedies", answer(vHelloRewound.Hello, vCommittedRewound)),

		badVector("bad_magic.bin", "HELLO whose magic is \"SLUICF\" (valid CRC)", "BAD_MAGIC", func() []byte {
			b := mustEncode(vHello)
			b[wire.HeaderLen+5] = 'F'
			return refix(b)
		}),
		badVector("hello_duplicate_position.bin", "hello_rewound.bin with INGEST's position replaced by a second ORDERS one of the same epoch (valid CRC)", "MALFORMED", func() []byte {
			h := vHelloRewound.Hello
			b := mustEncode(wire.Frame{Type: wire.TypeHello, Hello: wire.Hello{MinVersion: h.MinVersion, MaxVersion: h.MaxVersion, MaxFrameBytes: h.MaxFrameBytes, Window: h.Window, Instance: h.Instance,
				Positions: []wire.StreamPosition{h.Positions[0], {Stream: "ORDERS", Epoch: epochOrders + 1, LastSeq: 5}}}})
			// Set the second position's epoch back to the first's.
			at := len(b) - 16
			binary.BigEndian.PutUint64(b[at:], epochOrders)
			return refix(b)
		}),
		badVector("hello_too_many_positions.bin", "HELLO with 65 positions (streams \"0\" to \"64\"), one more than the limit of 64 (valid CRC)", "MALFORMED", func() []byte {
			h := vHello.Hello
			h.Positions = nil
			for i := range 64 {
				h.Positions = append(h.Positions, wire.StreamPosition{Stream: strconv.Itoa(i), Epoch: epochIngest, LastSeq: uint64(i)})
			}
			b := mustEncode(wire.Frame{Type: wire.TypeHello, Hello: h})
			at := wire.HeaderLen + 18 + 2 + len(h.Instance)
			binary.BigEndian.PutUint16(b[at:], 65)
			b = binary.BigEndian.AppendUint16(b, 2)
			b = append(b, "64"...)
			b = binary.BigEndian.AppendUint64(b, epochIngest)
			b = binary.BigEndian.AppendUint64(b, 64)
			binary.BigEndian.PutUint32(b, uint32(len(b)-wire.HeaderLen))
			return refix(b)
		}),
		badVector("hello_v1_trailing.bin", "hello_v1.bin followed, inside its body, by the position table of hello.bin: a HELLO with max_version 1 has the version-1 layout, which ends with the instance (valid CRC)", "MALFORMED", func() []byte {
			v1, v2 := mustEncode(vHelloV1), mustEncode(vHello)
			b := append(v1, v2[len(v1):]...)
			binary.BigEndian.PutUint32(b, uint32(len(b)-wire.HeaderLen))
			return refix(b)
		}),
		badVector("hello_oversize.bin", "a HELLO body of 4097 bytes (valid CRC; 64 positions with 60-byte names, cut to length): FRAME_TOO_LARGE even under the default 4 MiB limit, since a HELLO is at most 4096 bytes", "FRAME_TOO_LARGE", func() []byte {
			b := make([]byte, wire.HeaderLen)
			b = append(b, wire.Magic...)
			b = binary.BigEndian.AppendUint16(b, 2)
			b = binary.BigEndian.AppendUint16(b, 2)
			b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
			b = append(b, 0, 6)
			b = append(b, "sink-1"...)
			b = binary.BigEndian.AppendUint16(b, 64)
			for i := range 64 {
				name := fmt.Sprintf("%02d", i) + strings.Repeat("s", 58)
				b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
				b = append(b, name...)
				b = binary.BigEndian.AppendUint64(b, epochIngest)
				b = binary.BigEndian.AppendUint64(b, uint64(i))
			}
			b = b[:wire.HeaderLen+wire.MaxHandshakeBytes+1]
			binary.BigEndian.PutUint32(b, uint32(len(b)-wire.HeaderLen))
			b[8] = byte(wire.TypeHello)
			return refix(b)
		}),
		badVector("bad_crc.bin", "data.bin with the last CRC byte changed", "BAD_CHECKSUM", func() []byte {
			b := mustEncode(vData)
			b[7] ^= 0xff
			return b
		}),
		badVector("bad_flags.bin", "ack.bin with flags = 0x01 (valid CRC)", "BAD_FLAGS", func() []byte {
			b := mustEncode(wire.Frame{Type: wire.TypeAck, Ack: wire.Ack{UpTo: 7}})
			b[9] = 1
			return refix(b)
		}),
		badVector("oversize.bin", "a header announcing a 4 MiB + 1 byte body, and no body: rejected before reading it", "FRAME_TOO_LARGE", func() []byte {
			b := make([]byte, wire.HeaderLen)
			binary.BigEndian.PutUint32(b, 4<<20+1)
			b[8] = byte(wire.TypeData)
			return b
		}),
		badVector("http_get.bin", "an HTTP client on the socket: \"GET \" reads as a length of 1195725856", "FRAME_TOO_LARGE", func() []byte {
			return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		}),
		badVector("truncated.bin", "data.bin without its last 3 bytes: the stream ends inside the frame", "UNEXPECTED_EOF", func() []byte {
			b := mustEncode(vData)
			return b[:len(b)-3]
		}),
		badVector("unknown_type.bin", "type 0x06, empty body (valid CRC)", "UNKNOWN_TYPE", func() []byte {
			return refix([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0x06, 0})
		}),
		badVector("record_count_mismatch.bin", "data.bin with record_count 3 but only 2 records (valid CRC)", "MALFORMED", func() []byte {
			b := mustEncode(vData)
			binary.BigEndian.PutUint32(b[wire.HeaderLen+8+2+2+len("INGEST")+8:], 3)
			return refix(b)
		}),
		badVector("ack_trailing.bin", "ACK with a 9-byte body (valid CRC)", "MALFORMED", func() []byte {
			b := append(mustEncode(wire.Frame{Type: wire.TypeAck, Ack: wire.Ack{UpTo: 7}}), 0)
			binary.BigEndian.PutUint32(b, 9)
			return refix(b)
		}),
		badVector("stream_unused.bin", "data.bin with a second stream table entry \"X\" (epoch 1) that no record uses (valid CRC)", "MALFORMED", func() []byte {
			return insertStreamEntry(mustEncode(vData), "X", 1)
		}),
		badVector("stream_duplicate.bin", "data.bin with a second stream table entry equal to the first, INGEST of the same epoch (valid CRC)", "MALFORMED", func() []byte {
			return insertStreamEntry(mustEncode(vData), "INGEST", epochIngest)
		}),
		badVector("too_many_records.bin", "DATA claiming 65537 records in a 14-byte body: over the default limit, rejected before allocating", "TOO_MANY_RECORDS", func() []byte {
			b := []byte{0, 0, 0, 14, 0, 0, 0, 0, byte(wire.TypeData), 0,
				0, 0, 0, 0, 0, 0, 0, 1, // frame_id 1
				0, 0, // no streams
				0, 1, 0, 1} // 65537 records
			return refix(b)
		}),
	}
}

// insertStreamEntry adds (name, epoch) as a second stream table entry of
// data.bin's encoding b, whose table has the one entry INGEST.
func insertStreamEntry(b []byte, name string, epoch uint64) []byte {
	at := wire.HeaderLen + 8
	binary.BigEndian.PutUint16(b[at:], 2)
	at += 2 + 2 + len("INGEST") + 8
	entry := binary.BigEndian.AppendUint16(nil, uint16(len(name)))
	entry = append(entry, name...)
	entry = binary.BigEndian.AppendUint64(entry, epoch)
	b = append(b[:at], append(entry, b[at:]...)...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-wire.HeaderLen))
	return refix(b)
}

// drainSeeds are the seeds of drain's FuzzAcked made from the vectors: a
// connection's bytes (the files, concatenated) and the write size byte.
var drainSeeds = []struct {
	name  string
	chunk uint8
	files []string
}{
	{"vectors-data-before-hello", 2, []string{"data.bin"}},
	{"vectors-hello-ack", 4, []string{"hello.bin", "ack.bin"}},
	{"vectors-hello-badcrc", 7, []string{"hello.bin", "bad_crc.bin"}},
	{"vectors-hello-close", 9, []string{"hello.bin", "data.bin", "close_normal.bin"}},
	{"vectors-hello-data", 3, []string{"hello.bin", "data.bin", "data_two_streams.bin"}},
	{"vectors-hello-oversize", 255, []string{"hello.bin", "oversize.bin"}},
	{"vectors-hello-truncated", 1, []string{"hello.bin", "truncated.bin"}},
	{"vectors-http-get", 0, []string{"http_get.bin"}},
	{"vectors-hello-two-epochs", 5, []string{"hello.bin", "data_two_epochs.bin", "data.bin"}},
	{"vectors-hello-v1", 6, []string{"hello_v1.bin", "data.bin"}},
	{"vectors-hello-rewound", 8, []string{"hello_rewound.bin", "data.bin"}},
}

const drainSeedDir = "../drain/testdata/fuzz/FuzzAcked"

// TestVectors_DrainSeeds checks that drain's FuzzAcked seeds made from the
// vectors hold the current vectors; -update rewrites them.
func TestVectors_DrainSeeds(t *testing.T) {
	built := map[string][]byte{}
	for _, v := range vectors() {
		built[v.File] = v.build()
	}
	for _, s := range drainSeeds {
		var data []byte
		for _, f := range s.files {
			b, ok := built[f]
			if !ok {
				t.Fatalf("seed %s: no vector %s", s.name, f)
			}
			data = append(data, b...)
		}
		want := "go test fuzz v1\n[]byte(" + quoteBytes(data) + ")\nbyte(" + strconv.Itoa(int(s.chunk)) + ")\n"
		path := filepath.Join(drainSeedDir, s.name)
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s is out of date with the vectors (run go test ./wire -run TestVectors -update)", path)
		}
	}
}

func TestVectors(t *testing.T) {
	want := vectorFile{
		Comment: "Test vectors of the sluice acked socket protocol, version 2 (docs/protocol.md). " +
			"Each file holds the bytes a receiver reads; 'frame' describes a valid frame field by field, " +
			"'error' the outcome of reading an invalid one with the default limits: the close code to send, " +
			"or UNEXPECTED_EOF when the stream ends inside a frame. A HELLO's 'answer' is what a version-2 server " +
			"(identity drain@host-a, default limits) that committed the sequences of 'committed' sends back. " +
			"Epochs are strings: they exceed 2^53.",
	}
	for _, v := range vectors() {
		b := v.build()
		v.Hex = hex.EncodeToString(b)
		if v.Error != "" && v.Error != "UNEXPECTED_EOF" {
			c := codeByName(t, v.Error)
			v.Code = &c
		}
		want.Vectors = append(want.Vectors, v)
		if *update {
			if err := os.WriteFile(filepath.Join(vectorDir, v.File), b, 0o644); err != nil {
				t.Fatal(err)
			}
			seed := "go test fuzz v1\n[]byte(" + quoteBytes(b) + ")\n"
			if err := os.WriteFile(filepath.Join("testdata/fuzz/FuzzReader", "vector_"+v.File), []byte(seed), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantJSON, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	wantJSON = append(wantJSON, '\n')
	jsonPath := filepath.Join(vectorDir, "vectors.json")
	if *update {
		if err := os.WriteFile(jsonPath, wantJSON, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// From here on, only the committed files count: vectors.json describes
	// each .bin file, and the codec must agree with both.
	gotJSON, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatalf("%v (run go test ./wire -run TestVectors -update)", err)
	}
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("%s is out of date with the vectors in vectors_test.go (run with -update and review the diff)", jsonPath)
	}
	var vf vectorFile
	if err := json.Unmarshal(gotJSON, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vf.Vectors {
		t.Run(v.File, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(vectorDir, v.File))
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(b) != v.Hex {
				t.Errorf("file bytes differ from the hex in vectors.json")
			}
			rd := wire.NewReader(bytes.NewReader(b))
			got, err := rd.ReadFrame()
			if v.Frame == nil {
				if errKind(err) != v.Error {
					t.Fatalf("ReadFrame: error %v (%s), want %s", err, errKind(err), v.Error)
				}
				if v.Code != nil && uint16(codeOf(err)) != *v.Code {
					t.Fatalf("code 0x%04x, want 0x%04x", codeOf(err), *v.Code)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if _, err := rd.ReadFrame(); errKind(err) != "EOF" {
				t.Fatalf("second ReadFrame: %v, want io.EOF", err)
			}
			wantFrame := fromJS(t, v.Frame)
			if !reflect.DeepEqual(deepCopy(got), wantFrame) {
				t.Errorf("decoded\n%+v\nwant (from vectors.json)\n%+v", got, wantFrame)
			}
			if enc := encode(t, nil, wantFrame); !bytes.Equal(enc, b) {
				t.Errorf("encoding the fields of vectors.json gives\n%x\nwant the file\n%x", enc, b)
			}
			if (v.Answer != nil) != (wantFrame.Type == wire.TypeHello) {
				t.Fatalf("answer %v for a %v frame: every HELLO vector, and only those, has one", v.Answer, wantFrame.Type)
			}
			if v.Answer != nil {
				ans := answer(got.Hello, v.Committed)
				if h := hex.EncodeToString(mustEncode(ans)); h != v.Answer.Hex {
					t.Errorf("server answers\n%s\nwant (from vectors.json)\n%s", h, v.Answer.Hex)
				}
				if !reflect.DeepEqual(ans, fromJS(t, v.Answer.Frame)) {
					t.Errorf("server answers\n%+v\nwant (from vectors.json)\n%+v", ans, fromJS(t, v.Answer.Frame))
				}
			}
			if wantFrame.Type == wire.TypeData {
				for _, r := range wantFrame.Data.Records {
					if !utf8.Valid(r.Data) {
						t.Errorf("payload of %v is not text; vectors.json cannot describe it", r.ID)
					}
				}
			}
		})
	}
}

func codeOf(err error) wire.CloseCode {
	if pe, ok := err.(*wire.ProtocolError); ok {
		return pe.Code
	}
	return 0xffff
}

func codeByName(t *testing.T, name string) uint16 {
	t.Helper()
	for c := range 0x0500 {
		if wire.CloseCode(c).String() == name {
			return uint16(c)
		}
	}
	t.Fatalf("no close code named %s", name)
	return 0
}

// quoteBytes formats b as a Go string literal for a fuzz seed file.
func quoteBytes(b []byte) string {
	const digits = "0123456789abcdef"
	out := []byte{'"'}
	for _, c := range b {
		out = append(out, '\\', 'x', digits[c>>4], digits[c&15])
	}
	return string(append(out, '"'))
}
