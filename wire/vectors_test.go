package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
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
	build   func() []byte
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
	MinVersion    uint16 `json:"min_version"`
	MaxVersion    uint16 `json:"max_version"`
	MaxFrameBytes uint32 `json:"max_frame_bytes"`
	Window        uint32 `json:"window"`
	Instance      string `json:"instance"`
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
		j.Hello = (*jsHello)(&f.Hello)
	case wire.TypeWelcome:
		j.Welcome = (*jsWelcome)(&f.Welcome)
	case wire.TypeData:
		j.Data = &jsData{FrameID: f.Data.FrameID, Records: []jsRecord{}}
		for _, r := range f.Data.Records {
			j.Data.Records = append(j.Data.Records, jsRecord{r.ID.Stream, r.ID.Seq, r.ID.Index, string(r.Data)})
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
		f.Type, f.Hello = wire.TypeHello, wire.Hello(*j.Hello)
	case j.Welcome != nil:
		f.Type, f.Welcome = wire.TypeWelcome, wire.Welcome(*j.Welcome)
	case j.Data != nil:
		f.Type, f.Data.FrameID = wire.TypeData, j.Data.FrameID
		f.Data.Records = []record.Record{}
		for _, r := range j.Data.Records {
			f.Data.Records = append(f.Data.Records, record.Record{ID: record.ID{Stream: r.Stream, Seq: r.Seq, Index: r.Index}, Data: []byte(r.Data)})
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

var (
	vHello = wire.Frame{Type: wire.TypeHello, Hello: wire.Hello{MinVersion: 1, MaxVersion: 1, MaxFrameBytes: 4 << 20, Window: 64, Instance: "sink-1"}}
	vData  = wire.Frame{Type: wire.TypeData, Data: wire.Data{FrameID: 7, Records: []record.Record{
		{ID: record.ID{Stream: "INGEST", Seq: 42, Index: 0}, Data: []byte(`{"a":1}`)},
		{ID: record.ID{Stream: "INGEST", Seq: 42, Index: 1}, Data: []byte(`{}`)},
	}}}
)

func frameVector(file, comment string, f wire.Frame) vector {
	return vector{File: file, Comment: comment, Frame: toJS(f), build: func() []byte { return mustEncode(f) }}
}

func badVector(file, comment string, want string, build func() []byte) vector {
	return vector{File: file, Comment: comment, Error: want, build: build}
}

// vectors is the source of the files in testdata/vectors.
func vectors() []vector {
	return []vector{
		frameVector("hello.bin", "HELLO from instance sink-1 speaking version 1 only, asking for 4 MiB frames and a window of 64 (docs/protocol.md section 10)", vHello),
		frameVector("welcome.bin", "WELCOME choosing version 1 with the default limits", wire.Frame{Type: wire.TypeWelcome, Welcome: wire.Welcome{Version: 1, MaxFrameBytes: 4 << 20, MaxRecords: 65536, Window: 64, Server: "drain@host-a"}}),
		frameVector("data.bin", "DATA frame 7: two records of message INGEST/42 (docs/protocol.md section 10)", vData),
		frameVector("data_two_streams.bin", "DATA frame 8: records from two streams, one with an empty payload and a non-ASCII payload; the table lists streams in first-use order", wire.Frame{Type: wire.TypeData, Data: wire.Data{FrameID: 8, Records: []record.Record{
			{ID: record.ID{Stream: "ORDERS", Seq: 1000, Index: 0}, Data: []byte(`{"id":"é"}`)},
			{ID: record.ID{Stream: "INGEST", Seq: 43, Index: 2}, Data: []byte{}},
			{ID: record.ID{Stream: "ORDERS", Seq: 1001, Index: 0}, Data: []byte(`[1,2,3]`)},
		}}}),
		frameVector("data_empty.bin", "DATA frame 9 with no records and an empty stream table", wire.Frame{Type: wire.TypeData, Data: wire.Data{FrameID: 9, Records: []record.Record{}}}),
		frameVector("ack.bin", "ACK: every frame with id <= 7 is durable", wire.Frame{Type: wire.TypeAck, Ack: wire.Ack{UpTo: 7}}),
		frameVector("close.bin", "CLOSE GOING_AWAY with a reason", wire.Frame{Type: wire.TypeClose, Close: wire.Close{Code: wire.CodeGoingAway, Reason: "drainer shutting down"}}),
		frameVector("close_normal.bin", "CLOSE NORMAL with an empty reason", wire.Frame{Type: wire.TypeClose, Close: wire.Close{Code: wire.CodeNormal}}),

		badVector("bad_magic.bin", "HELLO whose magic is \"SLUICF\" (valid CRC)", "BAD_MAGIC", func() []byte {
			b := mustEncode(vHello)
			b[wire.HeaderLen+5] = 'F'
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
			binary.BigEndian.PutUint32(b[wire.HeaderLen+8+2+8:], 3)
			return refix(b)
		}),
		badVector("ack_trailing.bin", "ACK with a 9-byte body (valid CRC)", "MALFORMED", func() []byte {
			b := append(mustEncode(wire.Frame{Type: wire.TypeAck, Ack: wire.Ack{UpTo: 7}}), 0)
			binary.BigEndian.PutUint32(b, 9)
			return refix(b)
		}),
		badVector("stream_unused.bin", "data.bin with a second stream table entry \"X\" that no record uses (valid CRC)", "MALFORMED", func() []byte {
			b := mustEncode(vData)
			at := wire.HeaderLen + 8
			binary.BigEndian.PutUint16(b[at:], 2)
			at += 2 + 2 + len("INGEST")
			b = append(b[:at], append([]byte{0, 1, 'X'}, b[at:]...)...)
			binary.BigEndian.PutUint32(b, uint32(len(b)-wire.HeaderLen))
			return refix(b)
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

func TestVectors(t *testing.T) {
	want := vectorFile{
		Comment: "Test vectors of the sluice acked socket protocol, version 1 (docs/protocol.md). " +
			"Each file holds the bytes a receiver reads; 'frame' describes a valid frame field by field, " +
			"'error' the outcome of reading an invalid one with the default limits: the close code to send, " +
			"or UNEXPECTED_EOF when the stream ends inside a frame.",
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
