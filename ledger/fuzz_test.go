package ledger_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-dev/sluice/ledger"
)

// FuzzJournal treats arbitrary bytes as a journal file. Decoding must never
// panic nor claim more valid bytes than there are; whatever decodes must
// re-encode (as one snapshot of the current version) to bytes that decode
// whole to the same state, and encode again to the same bytes.
//
// The seeds in testdata/fuzz/FuzzJournal: a version 2 journal written by
// this package (several commits, two incarnations of one stream), the same
// after compaction, the same with its last record torn and with a bad CRC,
// the version 1 journal of testdata/v1, and an empty file.
func FuzzJournal(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		dump, snap, valid, ok, err := ledger.DecodeJournal(data)
		if valid < 0 || valid > int64(len(data)) {
			t.Fatalf("valid = %d of %d bytes", valid, len(data))
		}
		if err != nil || !ok {
			return
		}
		dump2, snap2, valid2, ok2, err2 := ledger.DecodeJournal(snap)
		if err2 != nil || !ok2 || valid2 != int64(len(snap)) {
			t.Fatalf("the re-encoded snapshot does not decode whole: ok %v, valid %d of %d, %v", ok2, valid2, len(snap), err2)
		}
		if dump2 != dump {
			t.Fatalf("state changed through a snapshot:\n%s\nbecame\n%s", dump, dump2)
		}
		if !bytes.Equal(snap2, snap) {
			t.Fatal("the snapshot of the decoded snapshot differs")
		}
	})
}

// A torn last record and a last record with a bad CRC are both dropped:
// the journal decodes to the state before that record.
func TestJournal_DamagedLastRecord(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, ledger.Options{})
	w := &writer{t: t, dir: dir}
	commit(t, l, w.write("a"), ids("S", 1, 1))
	commit(t, l, w.write("b"), ids("S", 2, 1))
	l.Close()
	full, err := os.ReadFile(filepath.Join(dir, ledger.JournalName))
	if err != nil {
		t.Fatal(err)
	}
	fullDump, _, valid, ok, err := ledger.DecodeJournal(full)
	if err != nil || !ok || valid != int64(len(full)) {
		t.Fatalf("the journal as written: valid %d of %d, ok %v, %v", valid, len(full), ok, err)
	}
	bad := bytes.Clone(full)
	bad[len(bad)-1] ^= 1
	for name, b := range map[string][]byte{"torn": full[:len(full)-3], "bad CRC": bad} {
		dump, _, valid, ok, err := ledger.DecodeJournal(b)
		if err != nil || !ok || valid >= int64(len(b)) {
			t.Fatalf("%s: valid %d of %d, ok %v, %v", name, valid, len(b), ok, err)
		}
		before, _, _, _, _ := ledger.DecodeJournal(full[:valid])
		if dump != before || dump == fullDump {
			t.Fatalf("%s: decodes to\n%s\nwant the state before the last record\n%s", name, dump, before)
		}
	}
}
