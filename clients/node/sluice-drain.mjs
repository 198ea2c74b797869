// sluice-drain: a drainer library for sluice's `acked` socket protocol.
//
// One ES module, no dependencies, Node 18+. It speaks version 2 of the
// protocol in docs/protocol.md: it listens on a Unix socket, answers each
// producer's HELLO (with the rewind check of its stream positions), reads
// DATA frames, hands their records to you one batch at a time (an async
// iterator, or a callback with serve()), and sends the cumulative ACKs once
// you call batch.ack().
//
// What "durable" means is yours to decide (a file fsync, a database commit).
// DedupState is the other half of exactly-once: it remembers which queue
// messages (stream, epoch, seq) you committed, together with your output's
// commit point, in a state file written atomically with fsync, so that a
// re-sent record is dropped and a crash between writing and recording is
// repaired by cutting the output back to the commit point (docs/protocol.md
// section 10). See README.md for a complete drainer.
//
// u64 fields (epoch, seq, frame ids, last_seq, up_to) are BigInts.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const VERSION = 2;
export const MAX_HANDSHAKE_BYTES = 4096;
export const DEFAULT_MAX_FRAME_BYTES = 4 << 20;
export const HARD_MAX_FRAME_BYTES = 2 ** 31 - 1;
export const DEFAULT_MAX_RECORDS = 65536;
export const DEFAULT_WINDOW = 64;
const MAGIC = Buffer.from('SLUICE');
const HEADER_LEN = 10;
const MAX_POSITIONS = 64;
const MAX_NAME_LEN = 255;
const MAX_REASON_LEN = 1024;
const RECORD_OVERHEAD = 2 + 8 + 4 + 4;
const TYPES = { HELLO: 1, WELCOME: 2, DATA: 3, ACK: 4, CLOSE: 5 };
const TYPE_NAMES = Object.fromEntries(Object.entries(TYPES).map(([k, v]) => [v, k]));

/** CLOSE reason codes (docs/protocol.md section 5). */
export const Code = Object.freeze({
  NORMAL: 0x0000, GOING_AWAY: 0x0001,
  BAD_MAGIC: 0x0100, UNSUPPORTED_VERSION: 0x0101, HANDSHAKE_REQUIRED: 0x0102, BAD_HANDSHAKE: 0x0103,
  UNAUTHORIZED: 0x0104, STREAM_REWOUND: 0x0105,
  FRAME_TOO_LARGE: 0x0200, BAD_CHECKSUM: 0x0201, BAD_FLAGS: 0x0202, UNKNOWN_TYPE: 0x0203, MALFORMED: 0x0204,
  TOO_MANY_RECORDS: 0x0205,
  UNEXPECTED_FRAME: 0x0300, FRAME_ORDER: 0x0301, BAD_ACK: 0x0302, WINDOW_EXCEEDED: 0x0303, TIMEOUT: 0x0304,
  INTERNAL: 0x0400,
});

export function codeName(code) {
  const e = Object.entries(Code).find(([, v]) => v === code);
  return e ? e[0] : `CODE_0x${code.toString(16).padStart(4, '0')}`;
}

/** A frame that breaks the protocol; code is the CLOSE code to send. */
export class ProtocolError extends Error {
  constructor(code, message) {
    super(`${codeName(code)}: ${message}`);
    this.code = code;
  }
}

const malformed = (msg) => new ProtocolError(Code.MALFORMED, msg);

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c;
  }
  return t;
})();

/** CRC-32C (Castagnoli) of buf. */
export function crc32c(buf) {
  let crc = -1;
  for (let i = 0; i < buf.length; i++) crc = CRC_TABLE[(crc ^ buf[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

// --- frames --------------------------------------------------------------------

function str(s, field, lo, hi) {
  const b = Buffer.from(s, 'utf8');
  if (b.length < lo || b.length > hi) throw new RangeError(`${field} is ${b.length} bytes, want ${lo}..${hi}`);
  const n = Buffer.alloc(2);
  n.writeUInt16BE(b.length);
  return [n, b];
}

function u(n, v) {
  const b = Buffer.alloc(n);
  if (n === 1) b.writeUInt8(v);
  else if (n === 2) b.writeUInt16BE(v);
  else if (n === 4) b.writeUInt32BE(v);
  else b.writeBigUInt64BE(BigInt(v));
  return b;
}

/**
 * The bytes of one frame. A frame is an object with a type ('HELLO',
 * 'WELCOME', 'DATA', 'ACK', 'CLOSE') and its fields, as Decoder returns them.
 */
export function encode(f) {
  let parts;
  switch (f.type) {
    case 'HELLO':
      parts = [MAGIC, u(2, f.minVersion), u(2, f.maxVersion), u(4, f.maxFrameBytes), u(4, f.window), ...str(f.instance, 'instance', 1, MAX_NAME_LEN)];
      if (f.maxVersion >= 2) {
        const ps = f.positions ?? [];
        parts.push(u(2, ps.length));
        for (const p of ps) parts.push(...str(p.stream, 'stream', 1, MAX_NAME_LEN), u(8, p.epoch), u(8, p.lastSeq));
      }
      break;
    case 'WELCOME':
      parts = [u(2, f.version), u(4, f.maxFrameBytes), u(4, f.maxRecords), u(4, f.window), ...str(f.server, 'server', 0, MAX_NAME_LEN)];
      break;
    case 'DATA': {
      const table = new Map();
      const recs = [];
      for (const r of f.records) {
        const k = `${r.stream}\0${r.epoch}`;
        if (!table.has(k)) table.set(k, { i: table.size, stream: r.stream, epoch: r.epoch });
        recs.push(u(2, table.get(k).i), u(8, r.seq), u(4, r.index), u(4, r.data.length), Buffer.from(r.data));
      }
      parts = [u(8, f.frameId), u(2, table.size)];
      for (const t of table.values()) parts.push(...str(t.stream, 'stream', 1, MAX_NAME_LEN), u(8, t.epoch));
      parts.push(u(4, f.records.length), ...recs);
      break;
    }
    case 'ACK':
      parts = [u(8, f.upTo)];
      break;
    case 'CLOSE':
      parts = [u(2, f.code), ...str(f.reason ?? '', 'reason', 0, MAX_REASON_LEN)];
      break;
    default:
      throw new TypeError(`unknown frame type ${f.type}`);
  }
  const tail = Buffer.concat([Buffer.from([TYPES[f.type], 0]), ...parts]);
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32BE(tail.length - 2, 0);
  hdr.writeUInt32BE(crc32c(tail), 4);
  return Buffer.concat([hdr, tail]);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads fields of a body in order, failing as docs/protocol.md section 9 says. */
class Body {
  constructor(b) {
    this.b = b;
    this.off = 0;
  }

  left() {
    return this.b.length - this.off;
  }

  str(what, lo, hi) {
    if (this.left() < 2) throw malformed(`body ends before ${what}`);
    const n = this.b.readUInt16BE(this.off);
    this.off += 2;
    if (n > this.left()) throw malformed(`${what} of ${n} bytes runs past the body`);
    if (n < lo || n > hi) throw malformed(`${what} is ${n} bytes, want ${lo}..${hi}`);
    let s;
    try {
      s = utf8.decode(this.b.subarray(this.off, this.off + n));
    } catch {
      throw malformed(`${what} is not valid UTF-8`);
    }
    this.off += n;
    return s;
  }

  trailing(what) {
    if (this.left() !== 0) throw malformed(`${this.left()} trailing bytes after ${what}`);
  }
}

function parseHello(b) {
  if (b.length > MAX_HANDSHAKE_BYTES) throw new ProtocolError(Code.FRAME_TOO_LARGE, `HELLO body of ${b.length} bytes exceeds ${MAX_HANDSHAKE_BYTES}`);
  if (b.length < 6 || !b.subarray(0, 6).equals(MAGIC)) throw new ProtocolError(Code.BAD_MAGIC, 'HELLO does not start with "SLUICE"');
  if (b.length < 18) throw malformed(`HELLO body is ${b.length} bytes, want at least 21`);
  const h = { type: 'HELLO', minVersion: b.readUInt16BE(6), maxVersion: b.readUInt16BE(8), maxFrameBytes: b.readUInt32BE(10), window: b.readUInt32BE(14) };
  const r = new Body(b);
  r.off = 18;
  h.instance = r.str('instance', 1, MAX_NAME_LEN);
  if (h.maxVersion < 2) { // the version-1 layout ends here
    r.trailing('HELLO');
    return h;
  }
  if (r.left() < 2) throw malformed('body ends before position_count');
  const n = b.readUInt16BE(r.off);
  r.off += 2;
  if (n > MAX_POSITIONS) throw malformed(`${n} stream positions, limit ${MAX_POSITIONS}`);
  h.positions = [];
  const seen = new Set();
  for (let i = 0; i < n; i++) {
    const stream = r.str('position stream name', 1, MAX_NAME_LEN);
    if (r.left() < 16) throw malformed(`position ${i}: body ends inside its sequences`);
    const epoch = b.readBigUInt64BE(r.off);
    const lastSeq = b.readBigUInt64BE(r.off + 8);
    r.off += 16;
    const k = `${stream}\0${epoch}`;
    if (seen.has(k)) throw malformed(`stream ${JSON.stringify(stream)} epoch ${epoch} twice in the positions`);
    seen.add(k);
    h.positions.push({ stream, epoch, lastSeq });
  }
  r.trailing('HELLO');
  return h;
}

function parseWelcome(b) {
  if (b.length < 14) throw malformed(`WELCOME body is ${b.length} bytes, want at least 16`);
  const w = { type: 'WELCOME', version: b.readUInt16BE(0), maxFrameBytes: b.readUInt32BE(2), maxRecords: b.readUInt32BE(6), window: b.readUInt32BE(10) };
  const r = new Body(b);
  r.off = 14;
  w.server = r.str('server', 0, MAX_NAME_LEN);
  r.trailing('WELCOME');
  return w;
}

function parseClose(b) {
  if (b.length < 2) throw malformed(`CLOSE body is ${b.length} bytes, want at least 4`);
  const r = new Body(b);
  r.off = 2;
  const c = { type: 'CLOSE', code: b.readUInt16BE(0), reason: r.str('reason', 0, MAX_REASON_LEN) };
  r.trailing('CLOSE');
  return c;
}

function parseData(b, maxRecords) {
  if (b.length < 10) throw malformed(`DATA body is ${b.length} bytes, want at least 14`);
  const frameId = b.readBigUInt64BE(0);
  if (frameId === 0n) throw malformed('frame id 0');
  const nstreams = b.readUInt16BE(8);
  const r = new Body(b);
  r.off = 10;
  if (nstreams * 11 > r.left()) throw malformed(`${nstreams} stream entries cannot fit in the ${r.left()} bytes left`);
  const table = [];
  const seen = new Set();
  for (let i = 0; i < nstreams; i++) {
    const stream = r.str('stream name', 1, MAX_NAME_LEN);
    if (r.left() < 8) throw malformed(`stream table entry ${i}: body ends before its epoch`);
    const epoch = b.readBigUInt64BE(r.off);
    r.off += 8;
    const k = `${stream}\0${epoch}`;
    if (seen.has(k)) throw malformed(`stream ${JSON.stringify(stream)} epoch ${epoch} twice in the table`);
    seen.add(k);
    table.push({ stream, epoch });
  }
  if (r.left() < 4) throw malformed('body ends before record_count');
  const nrec = b.readUInt32BE(r.off);
  r.off += 4;
  if (nrec > maxRecords) throw new ProtocolError(Code.TOO_MANY_RECORDS, `${nrec} records, limit ${maxRecords}`);
  if (nrec * RECORD_OVERHEAD > r.left()) throw malformed(`${nrec} records cannot fit in the ${r.left()} bytes left`);
  const records = [];
  let next = 0;
  for (let i = 0; i < nrec; i++) {
    if (r.left() < RECORD_OVERHEAD) throw malformed(`record ${i}: body ends inside its header`);
    const o = r.off;
    const si = b.readUInt16BE(o);
    if (si >= nstreams || si > next) throw malformed(`record ${i}: stream index ${si}, want < ${nstreams} and <= ${next}`);
    if (si === next) next++;
    const n = b.readUInt32BE(o + 14);
    r.off += RECORD_OVERHEAD;
    if (n > r.left()) throw malformed(`record ${i}: payload of ${n} bytes runs past the body`);
    records.push({ stream: table[si].stream, epoch: table[si].epoch, seq: b.readBigUInt64BE(o + 2), index: b.readUInt32BE(o + 10), data: b.subarray(r.off, r.off + n), frameId });
    r.off += n;
  }
  if (next !== nstreams) throw malformed(`stream table entry ${next} is never used`);
  r.trailing('the last record');
  return { type: 'DATA', frameId, records };
}

/**
 * Incremental frame reader: feed() it bytes, take frames with next(), which
 * returns null while the next frame is incomplete and throws ProtocolError
 * on a frame that breaks the rules (checked in the order of
 * docs/protocol.md section 9); the stream is then out of step. At end of
 * stream, pending() > 0 means it ended inside a frame (truncated).
 */
export class Decoder {
  constructor({ maxFrameBytes = DEFAULT_MAX_FRAME_BYTES, maxRecords = DEFAULT_MAX_RECORDS } = {}) {
    this.maxFrameBytes = maxFrameBytes;
    this.maxRecords = maxRecords;
    this.chunks = [];
    this.len = 0;
  }

  feed(chunk) {
    if (chunk.length) {
      this.chunks.push(chunk);
      this.len += chunk.length;
    }
  }

  pending() {
    return this.len;
  }

  head(n) { // the first n or more buffered bytes, contiguous
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }

  next() {
    if (this.len < HEADER_LEN) return null;
    let h = this.head(HEADER_LEN);
    const n = h.readUInt32BE(0);
    if (n > this.maxFrameBytes) throw new ProtocolError(Code.FRAME_TOO_LARGE, `length ${n} exceeds limit ${this.maxFrameBytes}`);
    if (this.len < HEADER_LEN + n) return null;
    h = this.head(HEADER_LEN + n);
    const frame = h.subarray(0, HEADER_LEN + n);
    this.chunks[0] = h.subarray(HEADER_LEN + n);
    if (this.chunks[0].length === 0) this.chunks.shift();
    this.len -= HEADER_LEN + n;
    const want = frame.readUInt32BE(4);
    const got = crc32c(frame.subarray(8));
    if (got !== want) throw new ProtocolError(Code.BAD_CHECKSUM, `crc 0x${want.toString(16)}, computed 0x${got.toString(16)}`);
    if (frame[9] !== 0) throw new ProtocolError(Code.BAD_FLAGS, `reserved flags 0x${frame[9].toString(16)} set`);
    const body = frame.subarray(HEADER_LEN);
    switch (frame[8]) {
      case TYPES.HELLO: return parseHello(body);
      case TYPES.WELCOME: return parseWelcome(body);
      case TYPES.DATA: return parseData(body, this.maxRecords);
      case TYPES.ACK:
        if (body.length !== 8) throw malformed(`ACK body is ${body.length} bytes, want 8`);
        return { type: 'ACK', upTo: body.readBigUInt64BE(0) };
      case TYPES.CLOSE: return parseClose(body);
      default: throw new ProtocolError(Code.UNKNOWN_TYPE, `unknown frame type 0x${frame[8].toString(16).padStart(2, '0')}`);
    }
  }
}

// --- handshake -------------------------------------------------------------------

/**
 * The server's answer to a HELLO (docs/protocol.md section 6): a WELCOME, or
 * the CLOSE of a refused handshake. With dedup (a DedupState) it runs the
 * rewind check of the HELLO's stream positions.
 */
export function answerHello(hello, dedup, { server = '', maxFrameBytes = DEFAULT_MAX_FRAME_BYTES, maxRecords = DEFAULT_MAX_RECORDS, window = DEFAULT_WINDOW } = {}) {
  const { minVersion: lo, maxVersion: hi } = hello;
  if (lo === 0 || hi < lo) return { type: 'CLOSE', code: Code.BAD_HANDSHAKE, reason: `BAD_HANDSHAKE: HELLO version range ${lo}..${hi} is empty` };
  if (VERSION < lo || VERSION > hi) {
    return { type: 'CLOSE', code: Code.UNSUPPORTED_VERSION, reason: `UNSUPPORTED_VERSION: client speaks versions ${lo}..${hi}, server speaks versions ${VERSION}..${VERSION}` };
  }
  if (dedup) {
    const reason = dedup.checkPositions(hello.positions ?? []);
    if (reason) return { type: 'CLOSE', code: Code.STREAM_REWOUND, reason };
  }
  let mfb = Math.min(Math.max(maxFrameBytes || DEFAULT_MAX_FRAME_BYTES, MAX_HANDSHAKE_BYTES), HARD_MAX_FRAME_BYTES);
  if (hello.maxFrameBytes && hello.maxFrameBytes < mfb) mfb = Math.max(hello.maxFrameBytes, MAX_HANDSHAKE_BYTES);
  let win = window || DEFAULT_WINDOW;
  if (hello.window && hello.window < win) win = hello.window;
  return { type: 'WELCOME', version: VERSION, maxFrameBytes: mfb, maxRecords: maxRecords || DEFAULT_MAX_RECORDS, window: win, server };
}

// --- dedup state -------------------------------------------------------------------

/** Fsync the directory holding file (after creating or renaming a file in it). */
export function fsyncDir(file) {
  const fd = fs.openSync(path.dirname(path.resolve(file)), 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Committed sequences of one stream incarnation: 1..low, and sorted disjoint ranges above low + 1. */
class Seqs {
  constructor(low = 0n, ranges = []) {
    this.low = low;
    this.los = ranges.map((r) => r[0]);
    this.his = ranges.map((r) => r[1]);
  }

  find(seq) { // the number of ranges with lo <= seq
    let a = 0;
    let b = this.los.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (this.los[m] <= seq) a = m + 1;
      else b = m;
    }
    return a;
  }

  has(seq) {
    if (seq > 0n && seq <= this.low) return true;
    const i = this.find(seq) - 1;
    return i >= 0 && this.his[i] >= seq;
  }

  add(seq, maxRanges) {
    if (seq === 0n || this.has(seq)) return 0;
    const { los, his } = this;
    const i = this.find(seq);
    if (i > 0 && his[i - 1] === seq - 1n) {
      his[i - 1] = seq;
      if (i < los.length && los[i] === seq + 1n) {
        his[i - 1] = his[i];
        los.splice(i, 1);
        his.splice(i, 1);
      }
    } else if (i < los.length && los[i] === seq + 1n) {
      los[i] = seq;
    } else {
      los.splice(i, 0, seq);
      his.splice(i, 0, seq);
    }
    if (los.length && los[0] === this.low + 1n) {
      this.low = his[0];
      los.shift();
      his.shift();
    }
    let forgotten = 0;
    while (los.length > maxRanges) { // forget the lowest range: a duplicate later, never a loss
      los.shift();
      his.shift();
      forgotten++;
    }
    return forgotten;
  }

  highest() {
    return this.his.length ? this.his[this.his.length - 1] : this.low;
  }
}

const key = (stream, epoch) => `${stream}\0${epoch}`;
const unkey = (k) => {
  const i = k.lastIndexOf('\0');
  return [k.slice(0, i), BigInt(k.slice(i + 1))];
};

/**
 * The drainer's dedup state: which queue messages (stream, epoch, seq) were
 * committed, and the output's commit point, kept in a state file.
 *
 * Every commit() rewrites the file atomically (a temporary file, fsync,
 * rename, fsync of the directory), so it always holds one complete commit: a
 * crash never leaves it torn. path null keeps the state in memory only (for
 * outputs that cannot be cut back, like stdout: docs/protocol.md section
 * 10.2). The file format is the Python library's too.
 *
 * Per stream incarnation it keeps a low-water mark and at most maxRanges
 * ranges of committed sequences above it (docs/protocol.md section 10.3);
 * past that bound it forgets the lowest range, so a redelivery of one of its
 * messages is written again (a duplicate, never a loss). Sequence 0 (which
 * JetStream never uses) is never deduplicated.
 */
export class DedupState {
  static FORMAT = 'sluice-drain-dedup';

  constructor(file = null, { maxRanges = 4096 } = {}) {
    this.path = file;
    this.maxRanges = maxRanges;
    this.commitPoint = null; // the value given to the last commit
    this.duplicates = 0; // records dropped by fresh()
    this.forgotten = 0; // ranges forgotten past maxRanges
    this.seqs = new Map(); // key(stream, epoch) -> Seqs
    this.refused = new Map(); // key(stream, epoch) -> committed seq at the refusal
    if (file !== null) this.load();
  }

  load() {
    let text;
    try {
      text = fs.readFileSync(this.path, 'utf8');
    } catch (e) {
      if (e.code === 'ENOENT') return;
      throw e;
    }
    let doc;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new Error(`dedup state ${this.path} is not valid JSON (${e.message}); it is written atomically, so this file was not written by sluice-drain: move it aside`);
    }
    if (doc.format !== DedupState.FORMAT || doc.version !== 1) {
      throw new Error(`dedup state ${this.path}: format ${JSON.stringify(doc.format)} version ${doc.version}, want ${DedupState.FORMAT} version 1`);
    }
    this.commitPoint = doc.commit_point ?? null;
    for (const s of doc.streams ?? []) {
      this.seqs.set(key(s.stream, BigInt(s.epoch)), new Seqs(BigInt(s.low), s.ranges.map(([a, b]) => [BigInt(a), BigInt(b)])));
    }
    for (const r of doc.refused ?? []) this.refused.set(key(r.stream, BigInt(r.epoch)), BigInt(r.committed));
  }

  save() {
    if (this.path === null) return;
    const doc = {
      format: DedupState.FORMAT,
      version: 1,
      commit_point: this.commitPoint,
      streams: [...this.seqs].map(([k, s]) => {
        const [stream, epoch] = unkey(k);
        return { stream, epoch: String(epoch), low: String(s.low), ranges: s.los.map((a, i) => [String(a), String(s.his[i])]) };
      }),
      refused: [...this.refused].map(([k, v]) => {
        const [stream, epoch] = unkey(k);
        return { stream, epoch: String(epoch), committed: String(v) };
      }),
    };
    const tmp = `${this.path}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeFileSync(fd, JSON.stringify(doc));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.path);
    fsyncDir(this.path);
  }

  /** Whether message (stream, epoch, seq) was committed. */
  isCommitted(stream, epoch, seq) {
    const s = this.seqs.get(key(stream, BigInt(epoch)));
    return s !== undefined && s.has(BigInt(seq));
  }

  /** The highest committed sequence of (stream, epoch), or null. */
  highest(stream, epoch) {
    const s = this.seqs.get(key(stream, BigInt(epoch)));
    return s === undefined ? null : s.highest();
  }

  /**
   * The records that are not duplicates: those whose message was not
   * committed and, of a message that comes in two frames of one batch (a
   * redelivery), only the first frame's.
   */
  fresh(records) {
    const first = new Map();
    const out = records.filter((r) => {
      const k = `${r.stream}\0${r.epoch}\0${r.seq}`;
      let f = first.get(k);
      if (f === undefined) {
        f = r.seq !== 0n && this.isCommitted(r.stream, r.epoch, r.seq) ? -1n : r.frameId;
        first.set(k, f);
      }
      return f === r.frameId;
    });
    this.duplicates += records.length - out.length;
    return out;
  }

  /**
   * Record the messages of records as committed, and commitPoint (any JSON
   * value: where your output ends now), durably. Call it only after the
   * records are durable in your output, and ack only after it.
   */
  commit(records, commitPoint) {
    for (const r of records) {
      const k = key(r.stream, r.epoch);
      let s = this.seqs.get(k);
      if (s === undefined) this.seqs.set(k, (s = new Seqs()));
      this.forgotten += s.add(r.seq, this.maxRanges);
    }
    this.commitPoint = commitPoint;
    this.save();
  }

  /**
   * The rewind check of a HELLO's positions (docs/protocol.md section 6):
   * null when they pass, else the reason text for CLOSE STREAM_REWOUND. A
   * refused (stream, epoch) is remembered durably and refused again until
   * forget() is called for it.
   */
  checkPositions(positions) {
    for (const p of positions) {
      const k = key(p.stream, p.epoch);
      let top = this.refused.get(k);
      const again = top !== undefined;
      if (!again) top = this.highest(p.stream, p.epoch);
      if (top === null || (p.lastSeq >= top && !again)) continue;
      if (!again) {
        this.refused.set(k, top);
        this.save();
      }
      const s = JSON.stringify(p.stream);
      return `STREAM_REWOUND: stream ${s} epoch ${p.epoch} went back: the queue's last sequence is ${p.lastSeq} but this drainer `
        + `committed up to ${top}${again ? ' (refused before: refused until the operator resets it)' : ''}; new messages would reuse sequences up to ${top} `
        + 'and be dropped as duplicates. The queue lost messages (store tail lost in a crash, restore from backup). To recover: move the '
        + `drainer's output and dedup state aside, or make it forget stream ${s} epoch ${p.epoch} above sequence ${p.lastSeq} `
        + '(DedupState.forget); the sink keeps retrying';
    }
    return null;
  }

  /** Forget the committed sequences of (stream, epoch) above `above`, and a refusal of it: the operator's reset after a queue went back. */
  forget(stream, epoch, above) {
    const k = key(stream, BigInt(epoch));
    above = BigInt(above);
    this.refused.delete(k);
    const s = this.seqs.get(k);
    if (s !== undefined) {
      const keep = s.los.map((a, i) => [a, s.his[i] < above ? s.his[i] : above]).filter(([a]) => a <= above);
      this.seqs.set(k, new Seqs(s.low < above ? s.low : above, keep));
    }
    this.save();
  }
}

// --- server --------------------------------------------------------------------

/**
 * The DATA frames that arrived together on one connection: records (each
 * with its identity stream, epoch, seq, index, and its data), frameIds, and
 * the producer's instance name. Call ack() once the records are durable
 * (with their dedup state); calling it again does nothing. fail(reason)
 * ends the connection with CLOSE INTERNAL: nothing more is acknowledged.
 */
export class Batch {
  constructor(conn, frames) {
    this.conn = conn;
    this.frameIds = frames.map((f) => f.frameId);
    this.records = frames.flatMap((f) => f.records);
    this.instance = conn.instance;
    this.acked = false;
  }

  ack() {
    this.conn.ack(this);
  }

  fail(reason) {
    this.conn.fail(reason);
  }
}

function log(server, level, msg) {
  server.logger?.[level]?.(`sluice-drain: ${msg}`);
}

class Conn {
  constructor(server, socket) {
    this.server = server;
    this.socket = socket;
    this.instance = '';
    this.dec = new Decoder({ maxFrameBytes: MAX_HANDSHAKE_BYTES });
    this.welcome = null;
    this.ending = false; // no more frames are taken from this connection
    this.closed = false; // a CLOSE was sent or the connection is gone: send nothing more
    this.batches = []; // batches handed out and not acknowledged, oldest first
    this.unacked = 0; // DATA frames received and not acknowledged
    this.lastId = 0n;
    this.acked = 0n;
    this.waiters = []; // resolved when batches empties
    this.timer = setTimeout(() => this.closeWith(Code.TIMEOUT, `no HELLO within ${server.opts.handshakeTimeout}ms`), server.opts.handshakeTimeout);
    socket.on('data', (d) => this.onData(d));
    socket.on('end', () => this.onEnd());
    socket.on('error', (e) => {
      if (!this.closed) log(server, 'warn', `connection from ${this.instance || 'peer'}: ${e.message}`);
    });
    socket.on('close', () => {
      clearTimeout(this.timer);
      clearTimeout(this.frameTimer);
      this.closed = true;
      this.ending = true;
      this.batches = [];
      this.drained();
      server.forget(this);
    });
  }

  send(frame) {
    if (!this.closed && this.socket.writable) this.socket.write(encode(frame));
  }

  onData(d) {
    if (this.ending) return;
    this.dec.feed(d);
    const frames = [];
    let err = null;
    let peerClose = null;
    try {
      for (let f; (f = this.dec.next()) !== null;) {
        if (this.welcome === null) {
          this.handshake(f);
          if (this.ending) return;
        } else if (f.type === 'DATA') {
          if (f.frameId <= this.lastId) throw new ProtocolError(Code.FRAME_ORDER, `DATA frame ${f.frameId} after frame ${this.lastId}`);
          if (this.unacked >= this.welcome.window) {
            throw new ProtocolError(Code.WINDOW_EXCEEDED, `DATA frame ${f.frameId} with ${this.unacked} frames unacknowledged, window ${this.welcome.window}`);
          }
          this.unacked++;
          this.lastId = f.frameId;
          frames.push(f);
        } else if (f.type === 'CLOSE') {
          peerClose = f;
          break;
        } else {
          throw new ProtocolError(Code.UNEXPECTED_FRAME, `${f.type} from the client`);
        }
      }
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      err = e;
    }
    // Idle between frames: no timeout; inside a frame: frameTimeout.
    clearTimeout(this.frameTimer);
    if (this.welcome !== null && this.dec.pending() > 0 && !err && !peerClose) {
      this.frameTimer = setTimeout(() => {
        log(this.server, 'error', `${this.instance} sent nothing more of a started frame for ${this.server.opts.frameTimeout}ms`);
        this.closeWith(Code.TIMEOUT, `no progress inside a frame for ${this.server.opts.frameTimeout}ms`);
      }, this.server.opts.frameTimeout);
    }
    if (frames.length) {
      const b = new Batch(this, frames);
      this.batches.push(b);
      this.server.push(b);
    }
    if (err) {
      log(this.server, 'error', `protocol error from ${this.instance || 'peer'}: ${err.message}`);
      this.closeWith(err.code, err.message);
    } else if (peerClose) {
      const level = peerClose.code === Code.NORMAL || peerClose.code === Code.GOING_AWAY ? 'info' : 'warn';
      log(this.server, level, `${this.instance} closed the session: ${codeName(peerClose.code)} ${JSON.stringify(peerClose.reason)}`);
      this.finish();
    }
  }

  handshake(f) {
    clearTimeout(this.timer);
    if (f.type === 'CLOSE') {
      log(this.server, 'info', `peer closed before its HELLO: ${codeName(f.code)} ${JSON.stringify(f.reason)}`);
      this.finish();
      return;
    }
    if (f.type !== 'HELLO') throw new ProtocolError(Code.HANDSHAKE_REQUIRED, `${f.type} before HELLO`);
    this.instance = f.instance;
    const o = this.server.opts;
    const ans = answerHello(f, o.dedup, { server: o.name, maxFrameBytes: o.maxFrameBytes, maxRecords: o.maxRecords, window: o.window });
    if (ans.type === 'CLOSE') {
      log(this.server, 'error', `refused ${f.instance}: ${ans.reason}`);
      this.closeWith(ans.code, ans.reason);
      return;
    }
    this.send(ans);
    this.welcome = ans;
    this.dec.maxFrameBytes = ans.maxFrameBytes;
    this.dec.maxRecords = ans.maxRecords;
  }

  onEnd() {
    if (this.dec.pending() > 0 && !this.ending) {
      log(this.server, 'warn', `truncated frame from ${this.instance || 'peer'}: the connection ended inside a frame, which is not acknowledged`);
    }
    if (this.server.stopping && !this.ending) this.closeWith(Code.GOING_AWAY, 'drainer shutting down');
    else this.finish();
  }

  ack(batch) {
    batch.acked = true;
    let upTo = null;
    while (this.batches.length && this.batches[0].acked) {
      const b = this.batches.shift();
      upTo = b.frameIds[b.frameIds.length - 1];
      this.unacked -= b.frameIds.length;
    }
    if (upTo !== null && upTo > this.acked) {
      this.acked = upTo;
      this.send({ type: 'ACK', upTo });
    }
    if (!this.batches.length) this.drained();
  }

  fail(reason) {
    this.batches = []; // nothing more is acknowledged
    this.closeWith(Code.INTERNAL, `drainer cannot make records durable: ${reason}`);
  }

  drained() {
    for (const w of this.waiters.splice(0)) w();
  }

  // untilAcked resolves once every batch handed out was acknowledged, or after closeWait.
  untilAcked() {
    if (!this.batches.length) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, this.server.opts.closeWait);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  // finish closes the connection once its batches are acknowledged.
  async finish() {
    this.ending = true;
    clearTimeout(this.frameTimer);
    await this.untilAcked();
    this.socket.end(); // after the last ACK is written
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  // closeWith sends CLOSE once the frames before are acknowledged, then lingers (docs/protocol.md section 4.5).
  async closeWith(code, reason) {
    if (this.ending) return;
    this.ending = true;
    clearTimeout(this.timer);
    clearTimeout(this.frameTimer);
    await this.untilAcked();
    if (this.closed) return;
    while (Buffer.byteLength(reason) > MAX_REASON_LEN) reason = reason.slice(0, -1);
    this.send({ type: 'CLOSE', code, reason });
    this.closed = true;
    this.socket.end();
    this.socket.resume();
    const t = setTimeout(() => this.socket.destroy(), 1000);
    t.unref();
  }
}

/**
 * A drainer listening on a Unix socket; an async iterable of Batches,
 * across all its connections. Create it with listen().
 */
export class Server {
  constructor(opts) {
    this.opts = opts;
    this.logger = opts.logger;
    this.conns = new Set();
    this.queue = [];
    this.wake = null;
    this.stopping = false;
    this.net = net.createServer({ allowHalfOpen: true }, (s) => {
      if (this.stopping) s.destroy();
      else this.conns.add(new Conn(this, s));
    });
  }

  push(batch) {
    this.queue.push(batch);
    this.notify();
  }

  notify() {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  forget(conn) {
    this.conns.delete(conn);
    if (this.stopping) this.notify();
  }

  /** Batches one at a time; ends after close() once every connection has ended. */
  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this.queue.length) yield this.queue.shift();
      else if (this.stopping && this.conns.size === 0) return;
      else await new Promise((resolve) => { this.wake = resolve; });
    }
  }

  /**
   * Stop: no new connections, the socket file removed; each connection gets
   * CLOSE GOING_AWAY once its batches were acknowledged (or closeWait passed).
   */
  close() {
    if (this.stopping) return;
    this.stopping = true;
    this.net.close();
    try {
      fs.unlinkSync(this.opts.path);
    } catch { /* already gone */ }
    for (const c of this.conns) {
      if (c.welcome === null) c.socket.destroy();
      else c.closeWith(Code.GOING_AWAY, 'drainer shutting down');
    }
    this.notify();
  }
}

async function removeStale(file) {
  let st;
  try {
    st = fs.lstatSync(file);
  } catch (e) {
    if (e.code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new Error(`${file} exists and is not a socket; refusing to replace it (choose another path)`);
  const live = await new Promise((resolve) => {
    const c = net.connect(file);
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
  if (live) throw new Error(`${file}: another drainer is listening on it; stop it or choose another path`);
  fs.unlinkSync(file);
}

/**
 * Listen on the Unix socket at file and return the Server, an async
 * iterable of Batches. Options: dedup (a DedupState: turns on the rewind
 * check of HELLO positions), maxFrameBytes, maxRecords, window (the limits
 * granted in WELCOME; defaults 4 MiB, 65536, 64), name (server identity),
 * mode (socket permissions, 0o600), handshakeTimeout (ms, 10000), frameTimeout
 * (ms, 10000: a frame started and nothing more of it for that long), closeWait
 * (ms to wait for acks before a CLOSE, 10000), logger (console by default; null: silent).
 * A stale socket file is replaced; a live one (another drainer) or a
 * non-socket makes it fail.
 */
export async function listen(file, opts = {}) {
  const o = {
    path: file, dedup: null, maxFrameBytes: DEFAULT_MAX_FRAME_BYTES, maxRecords: DEFAULT_MAX_RECORDS, window: DEFAULT_WINDOW,
    name: `sluice-drain.mjs@${os.hostname()}:${process.pid}`, mode: 0o600, handshakeTimeout: 10000, frameTimeout: 10000, closeWait: 10000, logger: console, ...opts,
  };
  await removeStale(file);
  const srv = new Server(o);
  const old = process.umask(0o777 & ~o.mode);
  try {
    await new Promise((resolve, reject) => {
      srv.net.once('error', reject);
      srv.net.listen(file, () => { srv.net.off('error', reject); resolve(); });
    });
  } finally {
    process.umask(old);
  }
  return srv;
}

/**
 * Listen on file and call onBatch(batch) (it may be async) for every batch,
 * one at a time, until SIGINT or SIGTERM; then shut down gracefully. A
 * callback that throws ends its batch's connection with CLOSE INTERNAL.
 * Options are listen()'s.
 */
export async function serve(file, onBatch, opts = {}) {
  const srv = await listen(file, opts);
  const stop = () => srv.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    for await (const b of srv) {
      try {
        await onBatch(b);
      } catch (e) {
        log(srv, 'error', `batch from ${b.instance} failed: ${e.stack ?? e}`);
        b.fail(e.message ?? String(e));
      }
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
