// Package ledger is the drainer's ledger: the output directory's files,
// their names and commit point, and the dedup journal beside them; what a
// drainer has made durable and how to read it back.
//
// The drainer (package drain) writes records and decides when to commit;
// this package holds the rules of what is on disk: the file format, how a
// directory is recovered after a crash, and how its committed records are
// read back (ReadCommitted, for the load verifier, the demo and any other
// reader).
//
// # Output files
//
// Records are lines in files named
//
//	sluice-<UTC time>Z-<sequence>.jsonl   e.g. sluice-20250101T000000.000Z-000001.jsonl
//
// (FileName, ParseFileName; mode 0600 in a 0700 directory). The time is in
// milliseconds and the sequence has at least six digits; a writer never
// lets the time part go backwards and increments the sequence for each
// file, so name order is write order (within one millisecond, for
// sequences below 1,000,000). Each line is one record. Other files in the
// directory are not output.
//
// # Dedup journal
//
// JournalName in the output directory, locked with flock while a drainer
// has it open (a second one fails with ErrInUse). It is a sequence of
// records, each a u32 body length, a u32 CRC-32C (Castagnoli) of the body
// and the body, all integers big-endian:
//
//	snapshot  'S' "SLUICEDJ" u16 version(2) point, u32 entries,
//	          entries × (str stream, u64 epoch, u64 low, u32 n, n × (u64 lo, u64 hi))
//	commit    'C' point, u32 groups, groups × (str stream, u64 epoch, u32 n, n × u64 seq)
//	point     str file, u64 length: the output is committed up to length
//	          bytes of file, and fully in every output file named before it
//	          (file "" is before any output file)
//	str       u16 length, bytes
//
// A journal starts with a snapshot, whose version says how the commits
// after it are encoded; each commit adds the messages of one group commit.
// A message is identified by (stream, epoch, seq) (record.MsgID): the
// epoch tells one incarnation of a stream from the next, so a stream
// created again, whose sequences start over, is a new dedup space and its
// messages are not taken for duplicates of the old one's. In a snapshot,
// an entry says that every sequence up to low of that incarnation is
// committed, and so is every sequence in the ranges [lo, hi], which are
// sorted, disjoint, not adjacent and above low+1.
//
// Version 1 (before epochs) has no epoch fields: its entries and groups
// are (str stream, u64 low, …) and (str stream, u32 n, …), and its
// messages have epoch 0. Open reads it and rewrites the journal as a
// version 2 snapshot before anything is appended. A newer version is
// refused (ErrUnknownVersion).
//
// # Recovery rules
//
// A drainer writes and fsyncs the output, then appends a commit record and
// fsyncs the journal, and only then acknowledges; Open restores the
// directory to the last commit:
//
//   - Records are replayed in order. Replay stops at the first record that
//     is torn (the file ends inside it), fails its CRC or does not decode:
//     that is a commit cut short by a crash, never acknowledged, and it is
//     cut off the journal.
//   - The committed output file is cut back to its committed length, and
//     output files named after it are removed: they hold only records
//     written and never committed (a crash between the output write and
//     the journal commit), so the producer's re-send writes them once. No
//     duplicate and no hole.
//   - A committed file shorter than its commit point means acknowledged
//     data is gone: Open refuses (ErrDamaged) and changes nothing. So does
//     a non-empty journal that does not start with a valid snapshot.
//   - A new (empty or missing) journal takes every output file already in
//     the directory as committed.
//   - Past Options.JournalBytes the journal is compacted: a snapshot (at
//     the commit point before the commit that triggered it) is written to
//     a temporary file, synced and renamed over the journal, so a crash
//     leaves one or the other.
//
// ReadCommitted applies the same rule without changing anything: with a
// journal, only what it records as committed is read; without one (the
// lines framing), every line.
//
// # Rewinds
//
// A queue can go back within one incarnation of a stream: its store loses
// its tail in a host crash, or is restored from a backup. Its new messages
// then take sequences the ledger already holds, and would be dropped as
// duplicates. A drainer compares a producer's stream positions (the HELLO
// of docs/protocol.md) with Committed; on a rewind it records a fence
// (Fence) in RewindName, a JSON file beside the journal written atomically
// (temporary file, fsync, rename, directory fsync):
//
//	{"version": 1, "fences": [{"stream": "INGEST", "epoch": 1764633600000000000,
//	  "last_seq": 200, "committed": 401, "detected": "2026-12-02T13:40:00Z"}]}
//
// and refuses that incarnation until the operator accepts the rewind:
// Forget forgets the committed sequences above last_seq (the journal is
// compacted into a snapshot without them) and then removes the fence. The
// output keeps the records of the lost messages. Open refuses a fence file
// it cannot read (ErrDamaged).
//
// # Bounded dedup state
//
// Per stream incarnation, a low-water mark and at most Options.DedupSpans
// ranges of committed sequences above it (out-of-order completion, or the
// sparse sequences one drainer sees when several sluice instances share a
// consumer), 16 bytes each, up to 32 with slice growth: 16-32 MiB per
// incarnation at the default of 1 Mi ranges. Past the bound the lowest
// range is forgotten (Commit returns how many): a redelivery of one of its
// messages is written a second time. The bound never raises the low-water
// mark over a gap, so a message is never dropped as a duplicate without
// having been written: the ledger errs on the side of a duplicate, never
// of a loss. Stream names come from the queue's streams, and the peer is
// trusted (socket mode, peer uid check).
package ledger
