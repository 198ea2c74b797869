package wire_test

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/record"
	"github.com/sluice-dev/sluice/wire"
)

// committedMap is a server's committed state: the highest sequence per
// stream incarnation.
type committedMap map[struct {
	stream string
	epoch  uint64
}]uint64

func (m committedMap) get(stream string, epoch uint64) (uint64, bool) {
	v, ok := m[struct {
		stream string
		epoch  uint64
	}{stream, epoch}]
	return v, ok
}

func TestCheckPositions(t *testing.T) {
	committed := committedMap{{"S", 7}: 100, {"S", 6}: 5000, {"T", 0}: 9}.get
	tests := []struct {
		name string
		ps   []wire.StreamPosition
		bad  int // index of the rewound position, -1 for none
	}{
		{"no positions", nil, -1},
		{"equal to committed", []wire.StreamPosition{{Stream: "S", Epoch: 7, LastSeq: 100}}, -1},
		{"above committed", []wire.StreamPosition{{Stream: "S", Epoch: 7, LastSeq: 101}}, -1},
		{"new epoch starts at 1", []wire.StreamPosition{{Stream: "S", Epoch: 8, LastSeq: 1}}, -1},
		{"old epoch's higher sequences not compared", []wire.StreamPosition{{Stream: "S", Epoch: 7, LastSeq: 100}, {Stream: "U", Epoch: 6, LastSeq: 0}}, -1},
		{"unknown stream", []wire.StreamPosition{{Stream: "U", Epoch: 7, LastSeq: 0}}, -1},
		{"rewound", []wire.StreamPosition{{Stream: "S", Epoch: 7, LastSeq: 99}}, 0},
		{"rewound to empty", []wire.StreamPosition{{Stream: "S", Epoch: 7, LastSeq: 0}}, 0},
		{"epoch 0 rewound", []wire.StreamPosition{{Stream: "S", Epoch: 7, LastSeq: 100}, {Stream: "T", Epoch: 0, LastSeq: 3}}, 1},
		{"first rewound one reported", []wire.StreamPosition{{Stream: "T", Epoch: 0, LastSeq: 1}, {Stream: "S", Epoch: 7, LastSeq: 1}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wire.CheckPositions(tt.ps, committed)
			if tt.bad < 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if errKind(err) != "STREAM_REWOUND" || !errors.Is(err, wire.ErrStreamRewound) {
				t.Fatalf("error %v, want STREAM_REWOUND wrapping ErrStreamRewound", err)
			}
			re, ok := errors.AsType[*wire.RewoundError](err)
			if !ok {
				t.Fatalf("%v is no *RewoundError", err)
			}
			p := tt.ps[tt.bad]
			top, _ := committed(p.Stream, p.Epoch)
			if re.Position != p || re.Committed != top {
				t.Fatalf("RewoundError %+v, want position %+v, committed %d", re, p, top)
			}
			// The reason a server sends names what happened and the remedy.
			reason := wire.CloseFor(err).Reason
			for _, want := range []string{strconv.Quote(p.Stream), "epoch " + strconv.FormatUint(p.Epoch, 10),
				"last sequence is " + strconv.FormatUint(p.LastSeq, 10), "committed up to " + strconv.FormatUint(top, 10),
				"output directory aside", "forget"} {
				if !strings.Contains(reason, want) {
					t.Errorf("reason %q does not say %q", reason, want)
				}
			}
		})
	}
	if err := wire.CheckPositions([]wire.StreamPosition{{Stream: "S", Epoch: 7}}, nil); err != nil {
		t.Fatalf("nil Committed: %v", err)
	}
}

// TestCheckPositions_ReasonFitsClose checks that the CLOSE a server sends
// for the longest stream name still names both sequences.
func TestCheckPositions_ReasonFitsClose(t *testing.T) {
	p := wire.StreamPosition{Stream: strings.Repeat("s", wire.MaxStreamLen), Epoch: 1<<64 - 1, LastSeq: 1<<64 - 2}
	err := wire.CheckPositions([]wire.StreamPosition{p}, func(string, uint64) (uint64, bool) { return 1<<64 - 1, true })
	b := wire.AppendClose(nil, wire.CloseFor(err))
	f, rerr := wire.NewReader(bytes.NewReader(b)).ReadFrame()
	if rerr != nil {
		t.Fatal(rerr)
	}
	if f.Close.Code != wire.CodeStreamRewound || !strings.Contains(f.Close.Reason, "committed up to 18446744073709551615") {
		t.Fatalf("CLOSE %+v", f.Close)
	}
}

// TestServerState_Rewound is the defect of a queue whose sequences go back:
// a server that committed S up to 100 must refuse a client whose queue's S
// of the same epoch ends at 40, instead of taking records 41..100 as
// duplicates; it accepts the same stream's next incarnation.
func TestServerState_Rewound(t *testing.T) {
	committed := committedMap{{"S", 7}: 100}.get
	h := helloFrame()
	h.Hello.Positions = []wire.StreamPosition{{Stream: "S", Epoch: 7, LastSeq: 40}}
	s := wire.ServerState{Committed: committed}
	if _, err := s.Hello(h, wire.Welcome{}); errKind(err) != "STREAM_REWOUND" || !errors.Is(err, wire.ErrStreamRewound) {
		t.Fatalf("rewound HELLO: %v", err)
	}
	if err := s.Receive(dataFrame(1)); errKind(err) != "HANDSHAKE_REQUIRED" {
		t.Fatalf("DATA after a refused HELLO: %v", err)
	}

	h.Hello.Positions = []wire.StreamPosition{{Stream: "S", Epoch: 8, LastSeq: 40}}
	s = wire.ServerState{Committed: committed}
	if _, err := s.Hello(h, wire.Welcome{}); err != nil {
		t.Fatalf("HELLO of the next incarnation: %v", err)
	}

	var unchecked wire.ServerState // no Committed: no check
	h.Hello.Positions = []wire.StreamPosition{{Stream: "S", Epoch: 7, LastSeq: 40}}
	if _, err := unchecked.Hello(h, wire.Welcome{}); err != nil {
		t.Fatalf("HELLO without a rewind check: %v", err)
	}
}

// TestSession_RewoundUnixSocket runs the refusal over a real socket: the
// client sends its positions, the server answers CLOSE STREAM_REWOUND and
// the client's ClientState reports it as the peer's close, with a reason
// naming the stream, the epoch and both sequences.
func TestSession_RewoundUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		srvErr <- func() error {
			conn, err := ln.Accept()
			if err != nil {
				return err
			}
			defer conn.Close()
			rd := wire.NewReader(conn)
			rd.Limits.MaxFrameBytes = wire.MaxHandshakeBytes
			s := wire.ServerState{Committed: committedMap{{"INGEST", 1767225600000000000}: 319}.get}
			f, err := rd.ReadFrame()
			if err != nil {
				return err
			}
			_, herr := s.Hello(f, wire.Welcome{})
			if herr == nil {
				return errors.New("rewound HELLO accepted")
			}
			_, err = conn.Write(wire.AppendClose(nil, wire.CloseFor(herr)))
			return err
		}()
	}()

	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version, Instance: "sink-1",
		Positions: []wire.StreamPosition{{Stream: "INGEST", Epoch: 1767225600000000000, LastSeq: 120}}}
	b, err := wire.AppendHello(nil, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	rd := wire.NewReader(conn)
	rd.Limits.MaxFrameBytes = wire.MaxHandshakeBytes
	f, err := rd.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	var c wire.ClientState
	_, err = c.Welcome(h, f)
	pc, ok := errors.AsType[*wire.PeerClosedError](err)
	if !ok || pc.Close.Code != wire.CodeStreamRewound {
		t.Fatalf("Welcome: %v, want the peer's CLOSE STREAM_REWOUND", err)
	}
	for _, want := range []string{`"INGEST"`, "epoch 1767225600000000000", "120", "319"} {
		if !strings.Contains(pc.Close.Reason, want) {
			t.Errorf("reason %q does not name %s", pc.Close.Reason, want)
		}
	}
	if err := <-srvErr; err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestAppendHello_Positions(t *testing.T) {
	base := wire.Hello{MinVersion: 2, MaxVersion: 2, Instance: "i"}
	pos := func(n int, nameLen int) []wire.StreamPosition {
		var ps []wire.StreamPosition
		for i := range n {
			name := strconv.Itoa(i)
			name += strings.Repeat("x", nameLen-len(name))
			ps = append(ps, wire.StreamPosition{Stream: name, Epoch: uint64(i), LastSeq: uint64(i)})
		}
		return ps
	}
	tests := []struct {
		name string
		mut  func(*wire.Hello)
		want error
	}{
		{"empty stream name", func(h *wire.Hello) { h.Positions = []wire.StreamPosition{{}} }, wire.ErrBadString},
		{"long stream name", func(h *wire.Hello) {
			h.Positions = []wire.StreamPosition{{Stream: strings.Repeat("s", wire.MaxStreamLen+1)}}
		}, wire.ErrBadString},
		{"invalid utf-8", func(h *wire.Hello) { h.Positions = []wire.StreamPosition{{Stream: "\xc0"}} }, wire.ErrBadString},
		{"duplicate", func(h *wire.Hello) {
			h.Positions = []wire.StreamPosition{{Stream: "S", Epoch: 1, LastSeq: 1}, {Stream: "S", Epoch: 1, LastSeq: 2}}
		}, wire.ErrBadPositions},
		{"positions in a version-1 HELLO", func(h *wire.Hello) {
			h.MinVersion, h.MaxVersion = 1, 1
			h.Positions = []wire.StreamPosition{{Stream: "S"}}
		}, wire.ErrBadPositions},
		{"too many", func(h *wire.Hello) { h.Positions = pos(wire.MaxPositions+1, 2) }, wire.ErrTooManyStreams},
		{"too large", func(h *wire.Hello) { h.Positions = pos(wire.MaxPositions, 60) }, wire.ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := base
			tt.mut(&h)
			if b, err := wire.AppendHello([]byte("p"), h); !errors.Is(err, tt.want) || string(b) != "p" {
				t.Fatalf("error %v, want %v; dst %q", err, tt.want, b)
			}
		})
	}
	t.Run("the bound fits", func(t *testing.T) {
		// The doc's promise: MaxPositions positions with names of 40 bytes
		// and the longest instance fit in a HELLO read with the handshake
		// limit.
		h := base
		h.Instance = strings.Repeat("i", wire.MaxIdentityLen)
		h.Positions = pos(wire.MaxPositions, 40)
		b, err := wire.AppendHello(nil, h)
		if err != nil {
			t.Fatal(err)
		}
		rd := wire.NewReader(bytes.NewReader(b))
		rd.Limits.MaxFrameBytes = wire.MaxHandshakeBytes
		f, err := rd.ReadFrame()
		if err != nil || len(f.Hello.Positions) != wire.MaxPositions || f.Hello.Positions[63] != h.Positions[63] {
			t.Fatalf("read back: %v", err)
		}
	})
	t.Run("same stream, two epochs", func(t *testing.T) {
		h := base
		h.Positions = []wire.StreamPosition{{Stream: "S", Epoch: 1, LastSeq: 9}, {Stream: "S", Epoch: 2, LastSeq: 1}}
		if _, err := wire.AppendHello(nil, h); err != nil {
			t.Fatal(err)
		}
	})
}

// TestData_EpochsKeptApart checks that one stream name under two epochs
// gets two stream table entries and decodes to the right epochs, also past
// the interner's small table.
func TestData_EpochsKeptApart(t *testing.T) {
	var recs []record.Record
	for i := range 30 {
		recs = append(recs, record.Record{ID: record.ID{Stream: "S", Epoch: uint64(i % 12), Seq: uint64(i)}, Data: []byte("x")})
	}
	b, err := wire.AppendData(nil, 1, recs, wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if n := int(b[wire.HeaderLen+8])<<8 | int(b[wire.HeaderLen+9]); n != 12 {
		t.Fatalf("stream table of %d entries, want 12", n)
	}
	if len(b) != wire.HeaderLen+wire.DataBodySize(recs) {
		t.Fatalf("frame is %d bytes, DataBodySize says %d", len(b), wire.DataBodySize(recs))
	}
	f, err := wire.NewReader(bytes.NewReader(b)).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range f.Data.Records {
		if r.ID != recs[i].ID {
			t.Fatalf("record %d: %v, want %v", i, r.ID, recs[i].ID)
		}
	}
}
