"""sluice_drain: a drainer library for sluice's ``acked`` socket protocol.

One module, standard library only, Python 3.9+. It speaks version 2 of the
protocol in docs/protocol.md: it listens on a Unix socket, answers each
producer's HELLO (with the rewind check of its stream positions), reads DATA
frames, hands their records to your callback one batch at a time, and sends
the cumulative ACKs once you call ``batch.ack()``.

What "durable" means is yours to decide (a file fsync, a database commit).
``DedupState`` is the other half of exactly-once: it remembers which queue
messages (stream, epoch, seq) you committed, together with your output's
commit point, in a state file written atomically with fsync, so that a
re-sent record is dropped and a crash between writing and recording is
repaired by cutting the output back to the commit point (docs/protocol.md
section 10). See README.md for a complete drainer.

    import sluice_drain
    state = sluice_drain.DedupState("out.jsonl.dedup")
    def on_batch(batch):
        new = state.fresh(batch.records)   # drop what is already committed
        ... write new records, make them durable ...
        state.commit(new, commit_point)    # record them, durably
        batch.ack()                        # only now: ACK
    sluice_drain.serve("sluice.sock", on_batch, dedup=state)

Callbacks run one at a time (never two at once, across all connections), in
frame order per connection. A batch holds the DATA frames that arrived
together on one connection (group commit). ``ack()`` may also be called
later, from any thread; ACKs are sent in frame order.
"""

import bisect
import json
import logging
import os
import signal
import socket
import stat
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable, List, Optional

__all__ = [
    "VERSION", "Code", "ProtocolError", "Hello", "Position", "Welcome", "Record",
    "Data", "Ack", "Close", "Decoder", "encode", "crc32c", "answer_hello",
    "DedupState", "Batch", "Server", "serve", "fsync_dir",
]

log = logging.getLogger("sluice_drain")

VERSION = 2
MAGIC = b"SLUICE"
HEADER_LEN = 10
MAX_HANDSHAKE_BYTES = 4096
DEFAULT_MAX_FRAME_BYTES = 4 << 20
HARD_MAX_FRAME_BYTES = (1 << 31) - 1
DEFAULT_MAX_RECORDS = 65536
DEFAULT_WINDOW = 64
MAX_POSITIONS = 64
MAX_NAME_LEN = 255
MAX_REASON_LEN = 1024
RECORD_OVERHEAD = 2 + 8 + 4 + 4

T_HELLO, T_WELCOME, T_DATA, T_ACK, T_CLOSE = 1, 2, 3, 4, 5


class Code:
    """CLOSE reason codes (docs/protocol.md section 5)."""
    NORMAL = 0x0000
    GOING_AWAY = 0x0001
    BAD_MAGIC = 0x0100
    UNSUPPORTED_VERSION = 0x0101
    HANDSHAKE_REQUIRED = 0x0102
    BAD_HANDSHAKE = 0x0103
    UNAUTHORIZED = 0x0104
    STREAM_REWOUND = 0x0105
    FRAME_TOO_LARGE = 0x0200
    BAD_CHECKSUM = 0x0201
    BAD_FLAGS = 0x0202
    UNKNOWN_TYPE = 0x0203
    MALFORMED = 0x0204
    TOO_MANY_RECORDS = 0x0205
    UNEXPECTED_FRAME = 0x0300
    FRAME_ORDER = 0x0301
    BAD_ACK = 0x0302
    WINDOW_EXCEEDED = 0x0303
    TIMEOUT = 0x0304
    INTERNAL = 0x0400

    @staticmethod
    def name(code):
        for k, v in vars(Code).items():
            if k.isupper() and v == code:
                return k
        return "CODE_0x%04x" % code


class ProtocolError(Exception):
    """A frame that breaks the protocol; ``code`` is the CLOSE code to send."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (Code.name(code), message))
        self.code = code


def _malformed(msg):
    return ProtocolError(Code.MALFORMED, msg)


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) of data, continuing from crc."""
    t = _CRC_TABLE
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- frames ------------------------------------------------------------------

@dataclass
class Position:
    stream: str
    epoch: int
    last_seq: int


@dataclass
class Hello:
    min_version: int
    max_version: int
    max_frame_bytes: int
    window: int
    instance: str
    positions: Optional[List[Position]] = None  # None: the version-1 layout


@dataclass
class Welcome:
    version: int
    max_frame_bytes: int
    max_records: int
    window: int
    server: str


@dataclass
class Record:
    """One record and its identity (stream, epoch, seq, index)."""
    stream: str
    epoch: int
    seq: int
    index: int
    data: bytes
    frame_id: int = field(default=0, compare=False)  # the DATA frame it came in


@dataclass
class Data:
    frame_id: int
    records: List[Record]


@dataclass
class Ack:
    up_to: int


@dataclass
class Close:
    code: int
    reason: str = ""


_TYPES = {Hello: T_HELLO, Welcome: T_WELCOME, Data: T_DATA, Ack: T_ACK, Close: T_CLOSE}


def _str(s, field_name, lo, hi):
    b = s.encode("utf-8")
    if not lo <= len(b) <= hi:
        raise ValueError("%s is %d bytes, want %d..%d" % (field_name, len(b), lo, hi))
    return struct.pack(">H", len(b)) + b


def encode(frame):
    """The bytes of one frame (header and body). Raises ValueError on a frame
    that cannot be encoded."""
    t = _TYPES[type(frame)]
    if t == T_HELLO:
        body = MAGIC + struct.pack(">HHII", frame.min_version, frame.max_version, frame.max_frame_bytes, frame.window)
        body += _str(frame.instance, "instance", 1, MAX_NAME_LEN)
        if frame.max_version >= 2:
            ps = frame.positions or []
            body += struct.pack(">H", len(ps))
            for p in ps:
                body += _str(p.stream, "stream", 1, MAX_NAME_LEN) + struct.pack(">QQ", p.epoch, p.last_seq)
    elif t == T_WELCOME:
        body = struct.pack(">HIII", frame.version, frame.max_frame_bytes, frame.max_records, frame.window)
        body += _str(frame.server, "server", 0, MAX_NAME_LEN)
    elif t == T_DATA:
        table, parts = {}, []
        for r in frame.records:
            k = (r.stream, r.epoch)
            if k not in table:
                table[k] = len(table)
            parts.append(struct.pack(">HQII", table[k], r.seq, r.index, len(r.data)) + bytes(r.data))
        body = struct.pack(">QH", frame.frame_id, len(table))
        for (name, epoch) in table:
            body += _str(name, "stream", 1, MAX_NAME_LEN) + struct.pack(">Q", epoch)
        body += struct.pack(">I", len(frame.records)) + b"".join(parts)
    elif t == T_ACK:
        body = struct.pack(">Q", frame.up_to)
    else:
        body = struct.pack(">H", frame.code) + _str(frame.reason, "reason", 0, MAX_REASON_LEN)
    tail = bytes([t, 0]) + body
    return struct.pack(">II", len(body), crc32c(tail)) + tail


class Decoder:
    """Incremental frame reader: ``feed`` it bytes, take frames with ``next``.

    ``next`` returns a frame, or None when the next frame is not complete
    yet, and raises ProtocolError on a frame that breaks the rules (checked in
    the order of docs/protocol.md section 9); after that the stream is out of
    step and the decoder must not be used again. At end of stream,
    ``pending()`` > 0 means the stream ended inside a frame (truncated).
    """

    def __init__(self, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES, max_records=DEFAULT_MAX_RECORDS):
        self.max_frame_bytes = max_frame_bytes
        self.max_records = max_records
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data):
        if self._pos and self._pos > len(self._buf) // 2:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def pending(self):
        return len(self._buf) - self._pos

    def next(self):
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_LEN:
            return None
        n, want = struct.unpack_from(">II", buf, pos)
        if n > self.max_frame_bytes:
            raise ProtocolError(Code.FRAME_TOO_LARGE, "length %d exceeds limit %d" % (n, self.max_frame_bytes))
        end = pos + HEADER_LEN + n
        if len(buf) < end:
            return None
        raw = bytes(buf[pos + 8:end])
        self._pos = end
        got = crc32c(raw)
        if got != want:
            raise ProtocolError(Code.BAD_CHECKSUM, "crc 0x%08x, computed 0x%08x" % (want, got))
        t, flags, body = raw[0], raw[1], raw[2:]
        if flags:
            raise ProtocolError(Code.BAD_FLAGS, "reserved flags 0x%02x set" % flags)
        if t == T_HELLO:
            return _parse_hello(body)
        if t == T_WELCOME:
            return _parse_welcome(body)
        if t == T_DATA:
            return _parse_data(body, self.max_records)
        if t == T_ACK:
            if len(body) != 8:
                raise _malformed("ACK body is %d bytes, want 8" % len(body))
            return Ack(struct.unpack(">Q", body)[0])
        if t == T_CLOSE:
            return _parse_close(body)
        raise ProtocolError(Code.UNKNOWN_TYPE, "unknown frame type 0x%02x" % t)


def _parse_str(b, off, what, lo, hi):
    if len(b) - off < 2:
        raise _malformed("body ends before " + what)
    n = struct.unpack_from(">H", b, off)[0]
    off += 2
    if n > len(b) - off:
        raise _malformed("%s of %d bytes runs past the body" % (what, n))
    if not lo <= n <= hi:
        raise _malformed("%s is %d bytes, want %d..%d" % (what, n, lo, hi))
    try:
        s = b[off:off + n].decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(what + " is not valid UTF-8") from None
    return s, off + n


def _trailing(b, off, what):
    if off != len(b):
        raise _malformed("%d trailing bytes after %s" % (len(b) - off, what))


def _parse_hello(b):
    if len(b) > MAX_HANDSHAKE_BYTES:
        raise ProtocolError(Code.FRAME_TOO_LARGE, "HELLO body of %d bytes exceeds %d" % (len(b), MAX_HANDSHAKE_BYTES))
    if b[:6] != MAGIC:
        raise ProtocolError(Code.BAD_MAGIC, 'HELLO does not start with "SLUICE"')
    if len(b) < 18:
        raise _malformed("HELLO body is %d bytes, want at least 21" % len(b))
    lo, hi, mfb, win = struct.unpack_from(">HHII", b, 6)
    instance, off = _parse_str(b, 18, "instance", 1, MAX_NAME_LEN)
    h = Hello(lo, hi, mfb, win, instance)
    if hi < 2:  # the version-1 layout ends here
        _trailing(b, off, "HELLO")
        return h
    if len(b) - off < 2:
        raise _malformed("body ends before position_count")
    n = struct.unpack_from(">H", b, off)[0]
    off += 2
    if n > MAX_POSITIONS:
        raise _malformed("%d stream positions, limit %d" % (n, MAX_POSITIONS))
    h.positions, seen = [], set()
    for i in range(n):
        name, off = _parse_str(b, off, "position stream name", 1, MAX_NAME_LEN)
        if len(b) - off < 16:
            raise _malformed("position %d: body ends inside its sequences" % i)
        epoch, last = struct.unpack_from(">QQ", b, off)
        off += 16
        if (name, epoch) in seen:
            raise _malformed("stream %s epoch %d twice in the positions" % (json.dumps(name), epoch))
        seen.add((name, epoch))
        h.positions.append(Position(name, epoch, last))
    _trailing(b, off, "HELLO")
    return h


def _parse_welcome(b):
    if len(b) < 14:
        raise _malformed("WELCOME body is %d bytes, want at least 16" % len(b))
    v, mfb, mr, win = struct.unpack_from(">HIII", b, 0)
    server, off = _parse_str(b, 14, "server", 0, MAX_NAME_LEN)
    _trailing(b, off, "WELCOME")
    return Welcome(v, mfb, mr, win, server)


def _parse_close(b):
    if len(b) < 2:
        raise _malformed("CLOSE body is %d bytes, want at least 4" % len(b))
    reason, off = _parse_str(b, 2, "reason", 0, MAX_REASON_LEN)
    _trailing(b, off, "CLOSE")
    return Close(struct.unpack_from(">H", b, 0)[0], reason)


def _parse_data(b, max_records):
    if len(b) < 10:
        raise _malformed("DATA body is %d bytes, want at least 14" % len(b))
    frame_id, nstreams = struct.unpack_from(">QH", b, 0)
    if frame_id == 0:
        raise _malformed("frame id 0")
    off = 10
    if nstreams * 11 > len(b) - off:
        raise _malformed("%d stream entries cannot fit in the %d bytes left" % (nstreams, len(b) - off))
    table, seen = [], set()
    for i in range(nstreams):
        name, off = _parse_str(b, off, "stream name", 1, MAX_NAME_LEN)
        if len(b) - off < 8:
            raise _malformed("stream table entry %d: body ends before its epoch" % i)
        epoch = struct.unpack_from(">Q", b, off)[0]
        off += 8
        if (name, epoch) in seen:
            raise _malformed("stream %s epoch %d twice in the table" % (json.dumps(name), epoch))
        seen.add((name, epoch))
        table.append((name, epoch))
    if len(b) - off < 4:
        raise _malformed("body ends before record_count")
    nrec = struct.unpack_from(">I", b, off)[0]
    off += 4
    if nrec > max_records:
        raise ProtocolError(Code.TOO_MANY_RECORDS, "%d records, limit %d" % (nrec, max_records))
    if nrec * RECORD_OVERHEAD > len(b) - off:
        raise _malformed("%d records cannot fit in the %d bytes left" % (nrec, len(b) - off))
    records, nxt = [], 0
    unpack = struct.Struct(">HQII").unpack_from
    for i in range(nrec):
        if len(b) - off < RECORD_OVERHEAD:
            raise _malformed("record %d: body ends inside its header" % i)
        si, seq, index, n = unpack(b, off)
        if si >= nstreams or si > nxt:
            raise _malformed("record %d: stream index %d, want < %d and <= %d" % (i, si, nstreams, nxt))
        if si == nxt:
            nxt += 1
        off += RECORD_OVERHEAD
        if n > len(b) - off:
            raise _malformed("record %d: payload of %d bytes runs past the body" % (i, n))
        name, epoch = table[si]
        records.append(Record(name, epoch, seq, index, b[off:off + n], frame_id))
        off += n
    if nxt != nstreams:
        raise _malformed("stream table entry %d is never used" % nxt)
    _trailing(b, off, "the last record")
    return Data(frame_id, records)


# --- handshake -----------------------------------------------------------------

def answer_hello(hello, dedup=None, server="", max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
                 max_records=DEFAULT_MAX_RECORDS, window=DEFAULT_WINDOW):
    """The server's answer to a HELLO (docs/protocol.md section 6): a Welcome,
    or the Close of a refused handshake. With dedup (a DedupState) it runs
    the rewind check of the HELLO's stream positions."""
    if hello.min_version == 0 or hello.max_version < hello.min_version:
        return Close(Code.BAD_HANDSHAKE, "BAD_HANDSHAKE: HELLO version range %d..%d is empty" % (hello.min_version, hello.max_version))
    if not hello.min_version <= VERSION <= hello.max_version:
        return Close(Code.UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION: client speaks versions %d..%d, server speaks versions %d..%d"
                     % (hello.min_version, hello.max_version, VERSION, VERSION))
    if dedup is not None:
        reason = dedup.check_positions(hello.positions or [])
        if reason:
            return Close(Code.STREAM_REWOUND, reason)
    mfb = min(max(max_frame_bytes or DEFAULT_MAX_FRAME_BYTES, MAX_HANDSHAKE_BYTES), HARD_MAX_FRAME_BYTES)
    if hello.max_frame_bytes and hello.max_frame_bytes < mfb:
        mfb = max(hello.max_frame_bytes, MAX_HANDSHAKE_BYTES)
    win = window or DEFAULT_WINDOW
    if hello.window and hello.window < win:
        win = hello.window
    return Welcome(VERSION, mfb, max_records or DEFAULT_MAX_RECORDS, win, server)


# --- dedup state -----------------------------------------------------------------

def fsync_dir(path):
    """Fsync the directory holding path (after creating or renaming a file in it)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Seqs:
    """Committed sequences of one stream incarnation: every seq in 1..low,
    and the disjoint sorted ranges [los[i], his[i]] above low + 1."""

    def __init__(self, low=0, ranges=()):
        self.low = low
        self.los = [r[0] for r in ranges]
        self.his = [r[1] for r in ranges]

    def has(self, seq):
        if 0 < seq <= self.low:
            return True
        i = bisect.bisect_right(self.los, seq) - 1
        return i >= 0 and self.his[i] >= seq

    def add(self, seq, max_ranges):
        if seq == 0 or self.has(seq):
            return 0
        los, his = self.los, self.his
        i = bisect.bisect_right(los, seq)  # los[i-1] <= seq < los[i]
        if i > 0 and his[i - 1] == seq - 1:
            his[i - 1] = seq
            if i < len(los) and los[i] == seq + 1:
                his[i - 1] = his[i]
                del los[i], his[i]
        elif i < len(los) and los[i] == seq + 1:
            los[i] = seq
        else:
            los.insert(i, seq)
            his.insert(i, seq)
        if los and los[0] == self.low + 1:
            self.low = his[0]
            del los[0], his[0]
        forgotten = 0
        while len(los) > max_ranges:  # forget the lowest range: a duplicate later, never a loss
            del los[0], his[0]
            forgotten += 1
        return forgotten

    def highest(self):
        return self.his[-1] if self.his else self.low


class DedupState:
    """The drainer's dedup state: which queue messages (stream, epoch, seq)
    were committed, and the output's commit point, kept in a state file.

    Every ``commit`` rewrites the file atomically (a temporary file, fsync,
    rename, fsync of the directory), so the file always holds one complete
    commit: a crash never leaves it torn. ``path=None`` keeps the state in
    memory only (for outputs that cannot be cut back, like stdout; see
    docs/protocol.md section 10.2).

    Sequence 0 (which JetStream never uses) is never deduplicated.
    Per stream incarnation it keeps a low-water mark and at most max_ranges
    ranges of committed sequences above it (docs/protocol.md section 10.3);
    past that bound it forgets the lowest range, so a redelivery of one of
    its messages is written again (a duplicate, never a loss).
    Thread-safe.
    """

    FORMAT = "sluice-drain-dedup"

    def __init__(self, path=None, max_ranges=4096):
        self.path = path
        self.max_ranges = max_ranges
        self.commit_point = None  # the value given to the last commit
        self.duplicates = 0  # records dropped by fresh()
        self.forgotten = 0  # ranges forgotten past max_ranges
        self._seqs = {}  # (stream, epoch) -> _Seqs
        self._refused = {}  # (stream, epoch) -> committed seq at the refusal
        self._lock = threading.RLock()
        if path is not None:
            self._load()

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return
        except ValueError as e:
            raise ValueError("dedup state %s is not valid JSON (%s); it is written atomically, so this file "
                             "was not written by sluice_drain: move it aside" % (self.path, e)) from None
        if doc.get("format") != self.FORMAT or doc.get("version") != 1:
            raise ValueError("dedup state %s: format %r version %r, want %r version 1"
                             % (self.path, doc.get("format"), doc.get("version"), self.FORMAT))
        self.commit_point = doc.get("commit_point")
        for s in doc.get("streams", []):
            self._seqs[(s["stream"], int(s["epoch"]))] = _Seqs(int(s["low"]), [(int(a), int(b)) for a, b in s["ranges"]])
        for r in doc.get("refused", []):
            self._refused[(r["stream"], int(r["epoch"]))] = int(r["committed"])

    def _save(self):
        if self.path is None:
            return
        doc = {
            "format": self.FORMAT, "version": 1, "commit_point": self.commit_point,
            "streams": [{"stream": k[0], "epoch": str(k[1]), "low": str(s.low),
                         "ranges": [[str(a), str(b)] for a, b in zip(s.los, s.his)]}
                        for k, s in self._seqs.items()],
            "refused": [{"stream": k[0], "epoch": str(k[1]), "committed": str(v)} for k, v in self._refused.items()],
        }
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = json.dumps(doc, separators=(",", ":")).encode()
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path)

    def is_committed(self, stream, epoch, seq):
        """Whether message (stream, epoch, seq) was committed."""
        with self._lock:
            s = self._seqs.get((stream, epoch))
            return s is not None and s.has(seq)

    def highest(self, stream, epoch):
        """The highest committed sequence of (stream, epoch), or None."""
        with self._lock:
            s = self._seqs.get((stream, epoch))
            return None if s is None else s.highest()

    def fresh(self, records):
        """The records of records that are not duplicates: those whose message
        was not committed, and, of a message that comes in two frames of one
        batch (a redelivery), only the first frame's."""
        out, first = [], {}
        with self._lock:
            for r in records:
                k = (r.stream, r.epoch, r.seq)
                f = first.get(k)
                if f is None:
                    f = -1 if r.seq and self.is_committed(*k) else r.frame_id
                    first[k] = f
                if f == r.frame_id:
                    out.append(r)
            self.duplicates += len(records) - len(out)
        return out

    def commit(self, records, commit_point):
        """Record the messages of records as committed, and commit_point (any
        JSON value: where your output ends now), durably. Call it only after
        the records are durable in your output, and ack only after it."""
        with self._lock:
            for r in records:
                k = (r.stream, r.epoch)
                s = self._seqs.get(k)
                if s is None:
                    s = self._seqs[k] = _Seqs()
                self.forgotten += s.add(r.seq, self.max_ranges)
            self.commit_point = commit_point
            self._save()

    def check_positions(self, positions):
        """The rewind check of a HELLO's positions (docs/protocol.md section
        6): None when they pass, else the reason text for CLOSE
        STREAM_REWOUND. A refused (stream, epoch) is remembered durably and
        refused again until forget() is called for it."""
        with self._lock:
            for p in positions:
                k = (p.stream, p.epoch)
                top = self._refused.get(k)
                again = top is not None
                if top is None:
                    top = self.highest(p.stream, p.epoch)
                if top is None or (p.last_seq >= top and not again):
                    continue
                if not again:
                    self._refused[k] = top
                    self._save()
                return ("STREAM_REWOUND: stream %s epoch %d went back: the queue's last sequence is %d but this drainer "
                        "committed up to %d%s; new messages would reuse sequences up to %d and be dropped as duplicates. "
                        "The queue lost messages (store tail lost in a crash, restore from backup). To recover: move the "
                        "drainer's output and dedup state aside, or make it forget stream %s epoch %d above sequence %d "
                        "(DedupState.forget); the sink keeps retrying"
                        % (json.dumps(p.stream), p.epoch, p.last_seq, top,
                           " (refused before: refused until the operator resets it)" if again else "",
                           top, json.dumps(p.stream), p.epoch, p.last_seq))
        return None

    def forget(self, stream, epoch, above):
        """Forget the committed sequences of (stream, epoch) above `above`, and
        a refusal of it: the operator's reset after a queue went back."""
        with self._lock:
            k = (stream, epoch)
            self._refused.pop(k, None)
            s = self._seqs.get(k)
            if s is not None:
                keep = [(a, min(b, above)) for a, b in zip(s.los, s.his) if a <= above]
                self._seqs[k] = _Seqs(min(s.low, above), keep)
            self._save()


# --- server --------------------------------------------------------------------

class Batch:
    """The DATA frames that arrived together on one connection.

    ``records`` are their records in order (each a Record with its identity),
    ``frame_ids`` their ids, ``instance`` the producer's name. Call ``ack()``
    once the records are durable (with their dedup state); calling it again
    does nothing."""

    def __init__(self, conn, frames):
        self._conn = conn
        self.frame_ids = [f.frame_id for f in frames]
        self.records = [r for f in frames for r in f.records]
        self.instance = conn.instance
        self.acked = False

    def ack(self):
        self._conn._ack(self)


class _Conn:
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.instance = ""
        self.lock = threading.Condition()  # guards the fields below and serialises socket writes
        self.closed = False  # a CLOSE was sent or the connection is gone: send nothing more
        self.batches = []  # batches delivered and not yet acknowledged, oldest first
        self.unacked = 0  # DATA frames received and not acknowledged
        self.last_id = 0  # id of the last DATA frame received
        self.acked = 0  # up_to of the last ACK sent

    def _send(self, frame):
        try:
            self.sock.sendall(encode(frame))
        except OSError as e:
            log.warning("sluice_drain: write to %s failed: %s", self.instance or "peer", e)
            self.closed = True

    def _ack(self, batch):
        with self.lock:
            batch.acked = True
            up_to, n = None, 0
            while self.batches and self.batches[0].acked:
                b = self.batches.pop(0)
                up_to = b.frame_ids[-1] if b.frame_ids else up_to
                n += len(b.frame_ids)
            self.unacked -= n
            if up_to is not None and up_to > self.acked and not self.closed:
                self.acked = up_to
                self._send(Ack(up_to))
            self.lock.notify_all()

    def close_with(self, code, reason):
        with self.lock:
            if self.batches:  # frames before the bad one are acknowledged first
                self.lock.wait_for(lambda: not self.batches, timeout=self.server.close_wait)
            if self.closed:
                return
            self.closed = True
            self._send(Close(code, reason.encode()[:MAX_REASON_LEN].decode("utf-8", "ignore")))
        self._linger()

    def _linger(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(1.0)
            while self.sock.recv(65536):
                pass
        except OSError:
            pass

    def run(self):
        try:
            self._run()
        except Exception:  # a bug in the callback or here: this connection only
            log.exception("sluice_drain: connection from %s failed", self.instance or "peer")
            with self.lock:
                self.batches = []  # nothing more is acknowledged
            self.close_with(Code.INTERNAL, "drainer failed: see its log")
        finally:
            with self.lock:
                self.closed = True
            self.sock.close()
            self.server._forget(self)

    def _recv(self, dec):
        data = self.sock.recv(256 << 10)
        if not data:
            if dec.pending():
                log.warning("sluice_drain: truncated frame from %s: the connection ended inside a frame, which is not acknowledged",
                            self.instance or "peer")
            return False
        dec.feed(data)
        return True

    def _run(self):
        srv = self.server
        dec = Decoder(max_frame_bytes=MAX_HANDSHAKE_BYTES)
        self.sock.settimeout(srv.handshake_timeout)
        try:
            f = None
            while f is None:
                f = dec.next()
                if f is None and not self._recv(dec):
                    return
        except socket.timeout:
            return self.close_with(Code.TIMEOUT, "no HELLO within %gs" % srv.handshake_timeout)
        except ProtocolError as e:
            return self.close_with(e.code, str(e))
        except OSError as e:
            return log.info("sluice_drain: connection failed before its HELLO: %s", e)
        if isinstance(f, Close):
            return log.info("sluice_drain: peer closed before its HELLO: %s %r", Code.name(f.code), f.reason)
        if not isinstance(f, Hello):
            return self.close_with(Code.HANDSHAKE_REQUIRED, "HANDSHAKE_REQUIRED: %s before HELLO" % type(f).__name__.upper())
        self.instance = f.instance
        ans = answer_hello(f, srv.dedup, srv.name, srv.max_frame_bytes, srv.max_records, srv.window)
        if isinstance(ans, Close):
            log.error("sluice_drain: refused %s: %s", f.instance, ans.reason)
            return self.close_with(ans.code, ans.reason)
        with self.lock:
            self._send(ans)
        window = ans.window
        dec.max_frame_bytes, dec.max_records = ans.max_frame_bytes, ans.max_records
        while True:
            frames, err, peer_close = [], None, None
            try:
                while True:
                    f = dec.next()
                    if f is None:
                        break
                    if isinstance(f, Data):
                        if f.frame_id <= self.last_id:
                            raise ProtocolError(Code.FRAME_ORDER, "DATA frame %d after frame %d" % (f.frame_id, self.last_id))
                        with self.lock:
                            if self.unacked >= window:
                                raise ProtocolError(Code.WINDOW_EXCEEDED, "DATA frame %d with %d frames unacknowledged, window %d"
                                                    % (f.frame_id, self.unacked, window))
                            self.unacked += 1
                        self.last_id = f.frame_id
                        frames.append(f)
                    elif isinstance(f, Close):
                        peer_close = f
                        break
                    else:
                        raise ProtocolError(Code.UNEXPECTED_FRAME, "%s from the client" % type(f).__name__.upper())
            except ProtocolError as e:
                err = e
            if frames:
                b = Batch(self, frames)
                with self.lock:
                    self.batches.append(b)
                with srv._cb_lock:
                    srv.on_batch(b)
            if err is not None:
                log.error("sluice_drain: protocol error from %s: %s", self.instance, err)
                return self.close_with(err.code, str(err))
            if peer_close is not None:
                lvl = logging.INFO if peer_close.code in (Code.NORMAL, Code.GOING_AWAY) else logging.WARNING
                return log.log(lvl, "sluice_drain: %s closed the session: %s %r", self.instance, Code.name(peer_close.code), peer_close.reason)
            if srv._stopping.is_set():
                return self.close_with(Code.GOING_AWAY, "drainer shutting down")
            try:
                # Idle between frames: no timeout; inside a frame: frame_timeout.
                self.sock.settimeout(srv.frame_timeout if dec.pending() else None)
                if not self._recv(dec):
                    if srv._stopping.is_set():
                        return self.close_with(Code.GOING_AWAY, "drainer shutting down")
                    return
            except socket.timeout:
                log.error("sluice_drain: %s sent nothing more of a started frame for %gs", self.instance, srv.frame_timeout)
                return self.close_with(Code.TIMEOUT, "no progress inside a frame for %gs" % srv.frame_timeout)
            except OSError as e:
                if srv._stopping.is_set():
                    return self.close_with(Code.GOING_AWAY, "drainer shutting down")
                return log.warning("sluice_drain: read from %s failed: %s", self.instance, e)
            if srv._stopping.is_set() and not dec.pending():
                return self.close_with(Code.GOING_AWAY, "drainer shutting down")


class Server:
    """A drainer listening on a Unix socket.

    on_batch(batch) is called for every Batch, one call at a time across all
    connections. dedup (a DedupState) turns on the rewind check of HELLO
    positions. max_frame_bytes, max_records and window are the limits granted
    in WELCOME (defaults 4 MiB, 65536, 64); name is the server identity.
    handshake_timeout bounds the wait for HELLO, frame_timeout a pause inside
    a frame (seconds; an idle connection is never timed out), close_wait the
    wait for acks of delivered batches before a CLOSE.
    The socket is created with permissions ``mode`` (0600); a stale socket
    file is replaced, a live one (another drainer) or a non-socket raises.
    """

    def __init__(self, path, on_batch, dedup=None, name=None, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
                 max_records=DEFAULT_MAX_RECORDS, window=DEFAULT_WINDOW, mode=0o600, handshake_timeout=10.0,
                 frame_timeout=10.0, close_wait=10.0):
        self.path = path
        self.on_batch = on_batch
        self.dedup = dedup
        self.name = name if name is not None else "sluice_drain.py@%s:%d" % (socket.gethostname(), os.getpid())
        self.max_frame_bytes, self.max_records, self.window = max_frame_bytes, max_records, window
        self.handshake_timeout, self.frame_timeout, self.close_wait = handshake_timeout, frame_timeout, close_wait
        self._cb_lock = threading.Lock()  # one callback at a time
        self._stopping = threading.Event()
        self._conns = set()
        self._conns_lock = threading.Lock()
        self._threads = []
        self._sock = self._listen(path, mode)

    @staticmethod
    def _listen(path, mode):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise FileExistsError("%s exists and is not a socket; refusing to replace it (choose another path)" % path)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale: nothing answers
            else:
                raise OSError("%s: another drainer is listening on it; stop it or choose another path" % path)
            finally:
                probe.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o777 & ~mode)
        try:
            s.bind(path)
        finally:
            os.umask(old)
        s.listen(64)
        s.settimeout(0.2)
        return s

    def _forget(self, conn):
        with self._conns_lock:
            self._conns.discard(conn)

    def serve_forever(self):
        """Accept connections until close(); then shut down gracefully:
        every connection gets CLOSE GOING_AWAY after its delivered batches
        were acknowledged (or close_wait passed)."""
        try:
            while not self._stopping.is_set():
                try:
                    s, _ = self._sock.accept()
                except socket.timeout:
                    continue
                except OSError:
                    if self._stopping.is_set():
                        break
                    raise
                c = _Conn(self, s)
                with self._conns_lock:
                    self._conns.add(c)
                t = threading.Thread(target=c.run, name="sluice_drain-conn", daemon=True)
                t.start()
                self._threads = [x for x in self._threads if x.is_alive()] + [t]
        finally:
            self._shutdown()

    def close(self):
        """Stop serve_forever (safe from a signal handler or another thread)."""
        self._stopping.set()

    def _shutdown(self):
        self._stopping.set()
        self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RD)  # wakes its reader
            except OSError:
                pass
        for t in self._threads:
            t.join(self.close_wait + 2)


def serve(path, on_batch, dedup=None, **options):
    """Listen on path and call on_batch(batch) for every batch until SIGINT
    or SIGTERM, then shut down gracefully. options are Server's."""
    srv = Server(path, on_batch, dedup=dedup, **options)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: srv.close())
    srv.serve_forever()
