package record_test

import (
	"slices"
	"testing"

	"github.com/sluice-dev/sluice/record"
)

func TestLines(t *testing.T) {
	type line struct {
		idx  uint32
		data string
	}
	for _, tc := range []struct {
		name string
		in   string
		want []line
	}{
		{"empty", "", nil},
		{"one", `{"a":1}`, []line{{0, `{"a":1}`}}},
		{"trailing newline", "{}\n", []line{{0, "{}"}}},
		{"several", "1\n2\n3", []line{{0, "1"}, {1, "2"}, {2, "3"}}},
		{"blank lines keep their index", "\n1\n\n2\n", []line{{1, "1"}, {3, "2"}}},
		{"only newlines", "\n\n\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []line
			for idx, l := range record.Lines([]byte(tc.in)) {
				got = append(got, line{idx, string(l)})
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Lines(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestLines_StopEarly(t *testing.T) {
	n := 0
	for range record.Lines([]byte("a\nb\nc")) {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Fatalf("iterated %d times after break at 2", n)
	}
}

func TestAppend(t *testing.T) {
	msg := record.MsgID{Stream: "INGEST", Epoch: 7, Seq: 42}
	dst := []record.Record{{ID: record.ID{Stream: "X"}}}
	got, n := record.Append(dst, msg, []byte("a\n\nb"))
	if n != 2 || len(got) != 3 {
		t.Fatalf("Append added %d records (len %d), want 2 (len 3)", n, len(got))
	}
	want := []record.ID{{Stream: "INGEST", Epoch: 7, Seq: 42, Index: 0}, {Stream: "INGEST", Epoch: 7, Seq: 42, Index: 2}}
	for i, r := range got[1:] {
		if r.ID != want[i] {
			t.Errorf("record %d: ID %+v, want %+v", i, r.ID, want[i])
		}
		if r.ID.Msg() != msg {
			t.Errorf("record %d: Msg() %+v, want %+v", i, r.ID.Msg(), msg)
		}
	}
	if string(got[1].Data) != "a" || string(got[2].Data) != "b" {
		t.Errorf("data %q %q, want a b", got[1].Data, got[2].Data)
	}
}
