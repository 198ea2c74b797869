package load_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/load"
)

// fullRecord is the whole record as encoding/json sees it.
type fullRecord struct {
	ID   string `json:"id"`
	Run  string `json:"run"`
	Seq  int64  `json:"seq"`
	Key  string `json:"key"`
	TS   int64  `json:"ts"`
	User struct {
		Name string `json:"name"`
		Age  int    `json:"age"`
	} `json:"user"`
	Amount float64  `json:"amount"`
	Tags   []string `json:"tags"`
	OK     bool     `json:"ok"`
	Pad    string   `json:"pad"`
}

func TestAppendRecord(t *testing.T) {
	prefix := []byte("keep:")
	for seq := int64(1); seq <= 2000; seq++ {
		size := 100 + int(seq%300)
		r := load.Record{Run: "r-1.a:B_2", Seq: seq, Key: int(seq % 16), TS: 1732460000123456789 + seq, Size: size}
		b := load.AppendRecord(append([]byte(nil), prefix...), r)
		if string(b[:len(prefix)]) != string(prefix) {
			t.Fatal("AppendRecord changed dst's existing bytes")
		}
		b = b[len(prefix):]
		var got fullRecord
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("seq %d: %v\n%s", seq, err, b)
		}
		if got.ID != fmt.Sprintf("r-1.a:B_2-%d", seq) || got.Run != r.Run || got.Seq != seq ||
			got.Key != fmt.Sprintf("k%d", seq%16) || got.TS != r.TS || got.User.Name == "" || got.User.Age < 18 {
			t.Fatalf("seq %d decoded as %+v", seq, got)
		}
		base := len(b) - len(got.Pad)
		if want := max(size, base); len(b) != want {
			t.Fatalf("seq %d: %d bytes, want %d (base %d)", seq, len(b), want, base)
		}
		h, err := load.ParseRecord(b)
		if err != nil || h.ID != got.ID || h.Run != got.Run || h.Seq != seq || h.Key != got.Key || h.TS != got.TS {
			t.Fatalf("seq %d: ParseRecord = %+v, %v", seq, h, err)
		}

		r.Invalid = true
		bad := load.AppendRecord(nil, r)
		if json.Valid(bad) {
			t.Fatalf("seq %d: invalid record is valid JSON: %s", seq, bad)
		}
		if _, err := load.ParseRecord(bad); !errors.Is(err, load.ErrNotRecord) {
			t.Fatalf("seq %d: ParseRecord(invalid) err = %v", seq, err)
		}
	}
}

func TestAppendRecord_NoAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	r := load.Record{Run: "run1", Seq: 123456, Key: 7, TS: 1732460000123456789, Size: 200}
	if n := testing.AllocsPerRun(100, func() { buf = load.AppendRecord(buf[:0], r) }); n != 0 {
		t.Fatalf("AppendRecord allocates %v times", n)
	}
}

func TestValidRunID(t *testing.T) {
	for id, want := range map[string]bool{
		"r0a1b2c3": true, "A-b_c.d:e": true, "": false, "a b": false, `a"b`: false, "ü": false,
		string(make([]byte, 65)): false,
	} {
		if got := load.ValidRunID(id); got != want {
			t.Errorf("ValidRunID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	for _, c := range []struct {
		line string
		ok   bool
	}{
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":5}`, true},
		{` { "ts" : -5 , "key":"","seq":1,"run":"a","id":"a-1", "x":[1,{"y":null}, "z\"\\"] } `, true},
		{`{"id":"a-1","run":"\u0061","seq":1,"key":"k\n","ts":5}`, true}, // escapes decoded
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":5,"n":-0.5e+10}`, true},
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":9223372036854775807}`, true},
		{`{"id":"a--9223372036854775808","run":"a","seq":-9223372036854775808,"key":"k1","ts":0}`, true},
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":9223372036854775808}`, false},
		{`{"id":"a-1","run":"a","seq":1.0,"key":"k1","ts":5}`, false},
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":5,}`, false},
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":5}x`, false},
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":5`, false},
		{`{"id":"a-1","run":"a","seq":1,"key":"k1"}`, false},
		{`{"id":"a-2","run":"a","seq":1,"key":"k1","ts":5}`, false},
		{`{"id":"a-1","run":"a","seq":01,"key":"k1","ts":5}`, false},
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":5,"x":tru}`, false},
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":5,"x":"a	b"}`, false}, // raw tab
		{`{"id":"a-1","run":"a","seq":1,"key":"k1","ts":5,"x":"\x"}`, false},
		{`["id"]`, false},
		{``, false},
	} {
		h, err := load.ParseRecord([]byte(c.line))
		if (err == nil) != c.ok {
			t.Errorf("ParseRecord(%s) = %+v, %v; want ok=%v", c.line, h, err, c.ok)
		}
		if err != nil && !errors.Is(err, load.ErrNotRecord) {
			t.Errorf("ParseRecord(%s): error %v does not wrap ErrNotRecord", c.line, err)
		}
		if std, serr := load.ParseStd([]byte(c.line)); c.ok && (serr != nil || std != h) {
			t.Errorf("ParseRecord(%s) = %+v, encoding/json says %+v, %v", c.line, h, std, serr)
		}
	}
}

// FuzzParseRecord checks the hand scanner against encoding/json: whatever
// the scanner accepts is valid JSON with the same header.
func FuzzParseRecord(f *testing.F) {
	f.Add(load.AppendRecord(nil, load.Record{Run: "run1", Seq: 42, Key: 3, TS: 99, Size: 200}))
	f.Add(load.AppendRecord(nil, load.Record{Run: "run1", Seq: 7, Invalid: true}))
	f.Add([]byte(`{"id":"a-1","run":"\u0061","seq":1,"key":"k\n","ts":-5,"x":[{},[],"",0.1e1,true,false,null]}`))
	f.Add([]byte(`{"a":{"b":{"c":[[[1]]]}}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		h, err := load.ParseRecord(line)
		if err != nil {
			if !errors.Is(err, load.ErrNotRecord) {
				t.Fatalf("error %v does not wrap ErrNotRecord", err)
			}
			return
		}
		if !json.Valid(line) {
			t.Fatalf("scanner accepted invalid JSON %q", line)
		}
		std, err := load.ParseStd(line)
		if err != nil {
			// encoding/json matches keys case-insensitively and takes the
			// last duplicate; only fail on a plain disagreement.
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && len(m) == 5 {
				t.Fatalf("scanner accepted %q, encoding/json: %v", line, err)
			}
			return
		}
		if std != h {
			var m map[string]json.RawMessage
			if json.Unmarshal(line, &m) == nil && len(m) == 5 {
				t.Fatalf("scanner %+v, encoding/json %+v for %q", h, std, line)
			}
		}
	})
}

func TestCutReceived(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ns   int64
		rest string
		ok   bool
	}{
		{"1764700000123456789\t{\"a\":1}", 1764700000123456789, `{"a":1}`, true},
		{"5\tx", 5, "x", true},
		{"{\"a\":\"b\tc\"}", 0, "{\"a\":\"b\tc\"}", false},
		{"\tx", 0, "\tx", false},
		{"12a\tx", 0, "12a\tx", false},
		{"99999999999999999999\tx", 0, "99999999999999999999\tx", false}, // overflows
		{"S:1:0\t{}", 0, "S:1:0\t{}", false},
	} {
		ns, rest, ok := load.CutReceived([]byte(tc.in))
		if ns != tc.ns || string(rest) != tc.rest || ok != tc.ok {
			t.Errorf("CutReceived(%q) = %d, %q, %v; want %d, %q, %v", tc.in, ns, rest, ok, tc.ns, tc.rest, tc.ok)
		}
	}
}

// A line stamped by the drainer counts as drained at the stamp, not when
// the verifier read it.
func TestVerifier_ReceivedStamp(t *testing.T) {
	v := load.NewVerifier("r", 1)
	ts := time.Unix(100, 0)
	line := load.AppendRecord(nil, load.Record{Run: "r", Seq: 1, TS: ts.UnixNano(), Size: 200})
	stamped := append([]byte(strconv.FormatInt(ts.Add(3*time.Millisecond).UnixNano(), 10)+"\t"), line...)
	v.Observe(stamped, ts.Add(time.Hour))
	rep := v.Report()
	if rep.Received != 1 || rep.Latency.Max < 2900*time.Microsecond || rep.Latency.Max > 3100*time.Microsecond {
		t.Fatalf("received %d, latency max %v; want 1 record drained 3ms after it was sent", rep.Received, rep.Latency.Max)
	}
}
