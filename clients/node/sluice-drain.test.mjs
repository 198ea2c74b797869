// Tests of sluice-drain: every test vector of wire/testdata/vectors, a real
// server on a Unix socket, the dedup state, and the example drainer killed
// with SIGKILL. Run: node --test (in clients/node).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  Code, codeName, crc32c, Decoder, DedupState, encode, answerHello, listen, ProtocolError, MAX_HANDSHAKE_BYTES,
} from './sluice-drain.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const VECTORS = path.join(HERE, '..', '..', 'wire', 'testdata', 'vectors');
const EPOCH = 1767225600000000000n;
const vectors = JSON.parse(fs.readFileSync(path.join(VECTORS, 'vectors.json'), 'utf8')).vectors;
const vbytes = (name) => fs.readFileSync(path.join(VECTORS, name));

function tmpdir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sd'));
  after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

// fromJS is the frame a vectors.json 'frame' describes.
function fromJS(fr) {
  switch (fr.type) {
    case 'HELLO': {
      const h = fr.hello;
      const f = { type: 'HELLO', minVersion: h.min_version, maxVersion: h.max_version, maxFrameBytes: h.max_frame_bytes, window: h.window, instance: h.instance };
      if ('positions' in h) f.positions = (h.positions ?? []).map((p) => ({ stream: p.stream, epoch: BigInt(p.epoch), lastSeq: BigInt(p.last_seq) }));
      return f;
    }
    case 'WELCOME': {
      const w = fr.welcome;
      return { type: 'WELCOME', version: w.version, maxFrameBytes: w.max_frame_bytes, maxRecords: w.max_records, window: w.window, server: w.server };
    }
    case 'DATA': {
      const d = fr.data;
      const frameId = BigInt(d.frame_id);
      return {
        type: 'DATA',
        frameId,
        records: (d.records ?? []).map((r) => ({ stream: r.stream, epoch: BigInt(r.epoch), seq: BigInt(r.seq), index: r.index, data: Buffer.from(r.data, 'utf8'), frameId })),
      };
    }
    case 'ACK': return { type: 'ACK', upTo: BigInt(fr.ack.up_to) };
    case 'CLOSE': return { type: 'CLOSE', code: fr.close.code, reason: fr.close.reason };
    default: throw new Error(`unknown frame type ${fr.type}`);
  }
}

function dedupWith(committed) {
  const s = new DedupState(null);
  for (const c of committed ?? []) s.commit([{ stream: c.stream, epoch: BigInt(c.epoch), seq: BigInt(c.highest_seq), index: 0 }], null);
  return s;
}

describe('vectors', () => {
  test('every file is described', () => {
    const files = fs.readdirSync(VECTORS).filter((f) => f.endsWith('.bin')).sort();
    assert.deepEqual(files, vectors.map((v) => v.file).sort());
    assert.ok(vectors.length > 20);
  });

  for (const v of vectors) {
    test(v.file, () => {
      const b = vbytes(v.file);
      assert.equal(b.toString('hex'), v.hex, 'file bytes differ from vectors.json');
      const dec = new Decoder();
      dec.feed(b);
      if (!v.frame) {
        if (v.error === 'UNEXPECTED_EOF') {
          assert.equal(dec.next(), null);
          assert.ok(dec.pending() > 0, 'a truncated frame must be seen as truncated');
          return;
        }
        assert.throws(() => { while (dec.next() !== null); }, (e) => {
          assert.ok(e instanceof ProtocolError, String(e));
          assert.equal(codeName(e.code), v.error, e.message);
          assert.equal(e.code, v.code);
          return true;
        });
        return;
      }
      const got = dec.next();
      assert.equal(dec.next(), null);
      assert.equal(dec.pending(), 0, 'bytes after the frame');
      const want = fromJS(v.frame);
      assert.deepEqual(got, want);
      assert.deepEqual(encode(want), b, 'encoding the fields of vectors.json');
      assert.equal('answer' in v, got.type === 'HELLO');
      if (v.answer) {
        const ans = answerHello(got, dedupWith(v.committed), { server: 'drain@host-a' });
        const wantAns = fromJS(v.answer.frame);
        if (wantAns.type === 'WELCOME') {
          assert.equal(encode(ans).toString('hex'), v.answer.hex);
        } else {
          assert.equal(ans.type, 'CLOSE');
          assert.equal(codeName(ans.code), codeName(wantAns.code), ans.reason);
          if (ans.code === Code.STREAM_REWOUND) {
            for (const part of ['"INGEST"', String(EPOCH), 'is 120', 'up to 319']) assert.ok(ans.reason.includes(part), ans.reason);
          }
        }
      }
    });
  }

  test('crc32c check value', () => assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283));

  test('decoder fed byte by byte', () => {
    const b = Buffer.concat([vbytes('hello.bin'), vbytes('data_two_epochs.bin'), vbytes('close.bin')]);
    const dec = new Decoder();
    const got = [];
    for (let i = 0; i < b.length; i++) {
      dec.feed(b.subarray(i, i + 1));
      const f = dec.next();
      if (f) got.push(f.type);
    }
    assert.deepEqual(got, ['HELLO', 'DATA', 'CLOSE']);
    assert.equal(dec.pending(), 0);
  });

  test('limits', () => {
    const data = vbytes('data.bin');
    let dec = new Decoder({ maxFrameBytes: data.length - 11 });
    dec.feed(data);
    assert.throws(() => dec.next(), (e) => e.code === Code.FRAME_TOO_LARGE);
    dec = new Decoder({ maxRecords: 1 });
    dec.feed(data);
    assert.throws(() => dec.next(), (e) => e.code === Code.TOO_MANY_RECORDS);
  });
});

// Peer is a producer's side of a connection, driven by hand.
class Peer {
  static async connect(file) {
    const p = new Peer();
    p.sock = net.connect(file);
    p.dec = new Decoder({ maxFrameBytes: MAX_HANDSHAKE_BYTES });
    p.ended = false;
    p.waiter = null;
    p.sock.on('data', (d) => { p.dec.feed(d); p.poke(); });
    p.sock.on('end', () => { p.ended = true; p.poke(); });
    p.sock.on('error', () => { p.ended = true; p.poke(); });
    await new Promise((resolve, reject) => { p.sock.once('connect', resolve); p.sock.once('error', reject); });
    after(() => p.sock.destroy());
    return p;
  }

  poke() {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  send(f) {
    this.sock.write(Buffer.isBuffer(f) ? f : encode(f));
  }

  // read returns the next frame, or null at end of stream.
  async read() {
    for (;;) {
      const f = this.dec.next();
      if (f) return f;
      if (this.ended) return null;
      await new Promise((resolve) => { this.waiter = resolve; });
    }
  }

  async hello(positions = [], window = 64) {
    this.send(hello(positions, window));
    const w = await this.read();
    assert.equal(w?.type, 'WELCOME', JSON.stringify(w));
    return w;
  }
}

const hello = (positions = [], window = 64) => ({ type: 'HELLO', minVersion: 2, maxVersion: 2, maxFrameBytes: 0, window, instance: 'test-peer', positions });
const data = (id, records = []) => ({ type: 'DATA', frameId: BigInt(id), records });
const rec = (seq, { index = 0, stream = 'S', epoch = 1n, frameId = 1n, body = '' } = {}) => ({ stream, epoch, seq: BigInt(seq), index, data: Buffer.from(body), frameId });

// start runs a server whose batches go to got (acknowledged when autoAck).
async function start(opts = {}) {
  const dir = tmpdir();
  const file = path.join(dir, 's.sock');
  const t = { file, dir, got: [], autoAck: true };
  t.srv = await listen(file, { name: 'drain@host-a', closeWait: 500, logger: null, ...opts });
  t.done = (async () => {
    for await (const b of t.srv) {
      t.got.push(b);
      if (t.autoAck) b.ack();
    }
  })();
  after(async () => { t.srv.close(); await t.done; });
  return t;
}

async function expectClose(p, code) {
  const f = await p.read();
  assert.equal(f?.type, 'CLOSE', JSON.stringify(f, (k, v) => (typeof v === 'bigint' ? String(v) : v)));
  assert.equal(codeName(f.code), codeName(code), f.reason);
  assert.equal(await p.read(), null, 'the server must close after its CLOSE');
}

describe('server', () => {
  test('a session with the vectors', async () => {
    const t = await start();
    const p = await Peer.connect(t.file);
    p.send(vbytes('hello.bin'));
    assert.deepEqual(encode(await p.read()), vbytes('welcome.bin'));
    p.send(vbytes('data.bin'));
    assert.deepEqual(encode(await p.read()), vbytes('ack.bin'));
    assert.equal(t.got.length, 1);
    assert.deepEqual(t.got[0].records.map((r) => [r.stream, r.epoch, r.seq, r.index, r.data.toString()]),
      [['INGEST', EPOCH, 42n, 0, '{"a":1}'], ['INGEST', EPOCH, 42n, 1, '{}']]);
    assert.equal(t.got[0].instance, 'sink-1');
    p.send(vbytes('close_normal.bin'));
    assert.equal(await p.read(), null);
  });

  test('invalid vectors get their close code; the server keeps serving', async () => {
    const t = await start();
    const keep = await Peer.connect(t.file); // an open session that must outlive every bad one
    await keep.hello();
    for (const v of vectors.filter((x) => !x.frame)) {
      const p = await Peer.connect(t.file);
      const handshake = v.file.startsWith('hello') || v.file === 'bad_magic.bin' || v.file === 'http_get.bin';
      if (!handshake) await p.hello();
      p.send(vbytes(v.file));
      if (v.error === 'UNEXPECTED_EOF') {
        p.sock.end();
        assert.equal(await p.read(), null, `${v.file}: a truncated frame gets no CLOSE: the peer is gone`);
      } else {
        await expectClose(p, v.code);
      }
    }
    keep.send(data(1, [rec(1, { body: 'x' })]));
    assert.deepEqual(await keep.read(), { type: 'ACK', upTo: 1n });
    assert.equal(t.got.length, 1, 'no record of a bad frame may be delivered');
    assert.equal(t.got[0].records[0].data.toString(), 'x');
  });

  test('session rules', async () => {
    const t = await start();
    const cases = [
      ['DATA before HELLO', [vbytes('data.bin')], false, [Code.HANDSHAKE_REQUIRED]],
      ['second HELLO', [hello()], true, [Code.UNEXPECTED_FRAME]],
      ['ACK from the client', [vbytes('ack.bin')], true, [Code.UNEXPECTED_FRAME]],
      ['WELCOME from the client', [vbytes('welcome.bin')], true, [Code.UNEXPECTED_FRAME]],
      ['frame ids not increasing', [data(5), data(5)], true, [{ type: 'ACK', upTo: 5n }, Code.FRAME_ORDER]],
      ['empty version range', [{ ...hello(), minVersion: 3 }], false, [Code.BAD_HANDSHAKE]],
      ['version 1 only', [vbytes('hello_v1.bin')], false, [Code.UNSUPPORTED_VERSION]],
    ];
    for (const [name, frames, doHello, want] of cases) {
      const p = await Peer.connect(t.file);
      if (doHello) await p.hello();
      for (const f of frames) p.send(f);
      if (want.length === 2) assert.deepEqual(await p.read(), want[0], `${name}: frames before the bad one are acknowledged first`);
      await expectClose(p, want[want.length - 1]);
    }
  });

  test('the limits granted in WELCOME are enforced', async () => {
    const t = await start({ maxFrameBytes: 4096, maxRecords: 1 });
    let p = await Peer.connect(t.file);
    const w = await p.hello();
    assert.deepEqual([w.maxFrameBytes, w.maxRecords], [4096, 1]);
    p.send(vbytes('data.bin')); // two records
    await expectClose(p, Code.TOO_MANY_RECORDS);
    p = await Peer.connect(t.file);
    await p.hello();
    p.send(data(1, [rec(1, { body: 'x'.repeat(4096) })]));
    await expectClose(p, Code.FRAME_TOO_LARGE);
    assert.equal(t.got.length, 0);
  });

  test('a frame started and not finished', async () => {
    const t = await start({ frameTimeout: 200 });
    const p = await Peer.connect(t.file);
    await p.hello();
    p.send(vbytes('data.bin').subarray(0, 20));
    await expectClose(p, Code.TIMEOUT);
  });

  test('window', async () => {
    const t = await start({ window: 2 });
    t.autoAck = false;
    const p = await Peer.connect(t.file);
    const w = await p.hello([], 8);
    assert.equal(w.window, 2, "the server's limit wins over a larger wish");
    p.send(data(1));
    p.send(data(2));
    p.send(data(3));
    await expectClose(p, Code.WINDOW_EXCEEDED);
  });

  test('ACKs go in frame order whenever batches are acked', async () => {
    const t = await start();
    t.autoAck = false;
    const p = await Peer.connect(t.file);
    await p.hello();
    for (const i of [1, 2, 3]) {
      p.send(data(i, [rec(i, { frameId: BigInt(i) })]));
      while (t.got.reduce((n, b) => n + b.frameIds.length, 0) < i) await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(t.got.flatMap((b) => b.frameIds), [1n, 2n, 3n]);
    t.got[2].ack(); // the last one first: nothing may be acknowledged yet
    t.got[0].ack();
    assert.deepEqual(await p.read(), { type: 'ACK', upTo: 1n }, 'frame 2 is not durable yet');
    t.got[1].ack();
    assert.deepEqual(await p.read(), { type: 'ACK', upTo: 3n });
  });

  test('the rewind check refuses and remembers', async () => {
    const dir = tmpdir();
    const file = path.join(dir, 'dedup.json');
    const state = new DedupState(file);
    state.commit([rec(319, { stream: 'INGEST', epoch: EPOCH })], 0);
    const t = await start({ dedup: state });
    let p = await Peer.connect(t.file);
    p.send(vbytes('hello_rewound.bin'));
    await expectClose(p, Code.STREAM_REWOUND);
    // Once refused, always refused, even when the queue caught up, and after
    // a restart, until the operator resets the stream.
    for (const s of [state, new DedupState(file)]) {
      const ans = answerHello(hello([{ stream: 'INGEST', epoch: EPOCH, lastSeq: 400n }]), s);
      assert.equal(ans.code, Code.STREAM_REWOUND);
    }
    p = await Peer.connect(t.file);
    await p.hello([{ stream: 'INGEST', epoch: EPOCH + 1n, lastSeq: 1n }]); // a new incarnation passes
    state.forget('INGEST', EPOCH, 120n);
    assert.equal(state.highest('INGEST', EPOCH), 0n);
    p = await Peer.connect(t.file);
    await p.hello([{ stream: 'INGEST', epoch: EPOCH, lastSeq: 120n }]);
  });

  test('shutdown sends GOING_AWAY and removes the socket', async () => {
    const t = await start();
    const p = await Peer.connect(t.file);
    await p.hello();
    t.srv.close();
    await expectClose(p, Code.GOING_AWAY);
    await t.done;
    assert.equal(fs.existsSync(t.file), false);
  });

  test('a live socket or a non-socket is not replaced', async () => {
    const t = await start();
    assert.equal(fs.statSync(t.file).mode & 0o777, 0o600, 'the socket is owner-only');
    await assert.rejects(listen(t.file, { logger: null }), /another drainer is listening/);
    const notSock = path.join(t.dir, 'file');
    fs.writeFileSync(notSock, '');
    await assert.rejects(listen(notSock, { logger: null }), /is not a socket/);
  });
});

describe('dedup state', () => {
  test('a commit survives a reload', () => {
    const file = path.join(tmpdir(), 'state');
    const s = new DedupState(file);
    assert.equal(s.commitPoint, null);
    s.commit([rec(1), rec(2), rec(5), rec(7, { stream: 'T', epoch: EPOCH })], { file: 'a', len: 10 });
    const r = new DedupState(file);
    assert.deepEqual(r.commitPoint, { file: 'a', len: 10 });
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((q) => r.isCommitted('S', 1n, q)), [true, true, false, false, true, false]);
    assert.ok(r.isCommitted('T', EPOCH, 7n));
    assert.ok(!r.isCommitted('T', EPOCH + 1n, 7n), 'another epoch is another message space');
    assert.equal(r.highest('S', 1n), 5n);
    assert.equal(r.highest('S', 2n), null);
    assert.ok(!fs.existsSync(`${file}.tmp`));
    assert.ok(fs.readFileSync(file, 'utf8').includes(`"epoch":"${EPOCH}"`), 'epochs are strings: they exceed 2^53');
  });

  test('the state file is the Python library\'s format', () => {
    const file = path.join(tmpdir(), 'state');
    fs.writeFileSync(file, JSON.stringify({
      format: 'sluice-drain-dedup', version: 1, commit_point: 12,
      streams: [{ stream: 'S', epoch: String(EPOCH), low: '3', ranges: [['5', '6']] }], refused: [],
    }));
    const s = new DedupState(file);
    assert.equal(s.commitPoint, 12);
    assert.deepEqual([3, 4, 5, 6, 7].map((q) => s.isCommitted('S', EPOCH, q)), [true, false, true, true, false]);
  });

  test('fresh', () => {
    const s = new DedupState(null);
    s.commit([rec(1)], null);
    const recs = [rec(1), rec(2), rec(2, { index: 1 }), rec(3), rec(3, { frameId: 2n }), rec(0), rec(0)];
    assert.deepEqual(s.fresh(recs).map((r) => [r.seq, r.index, r.frameId]), [[2n, 0, 1n], [2n, 1, 1n], [3n, 0, 1n], [0n, 0, 1n], [0n, 0, 1n]],
      'committed messages and a second frame\'s copy are dropped; seq 0 never is');
    assert.equal(s.duplicates, 2);
  });

  test('ranges merge and are bounded', () => {
    const s = new DedupState(null, { maxRanges: 2 });
    for (const q of [3, 1, 2]) s.commit([rec(q)], null);
    const seqs = s.seqs.get('S\u00001');
    assert.deepEqual([seqs.low, seqs.los], [3n, []], 'contiguous sequences fold into the low-water mark');
    for (const q of [10, 20, 30]) s.commit([rec(q)], null);
    assert.equal(s.forgotten, 1);
    assert.ok(!s.isCommitted('S', 1n, 10n), 'the lowest range is forgotten: a duplicate later, never a loss');
    assert.ok(s.isCommitted('S', 1n, 2n));
    assert.equal(s.highest('S', 1n), 30n);
    assert.ok(!s.isCommitted('S', 1n, 4n));
  });

  test('a foreign file is refused', () => {
    const file = path.join(tmpdir(), 'state');
    fs.writeFileSync(file, '{not json');
    assert.throws(() => new DedupState(file), (e) => e.message.includes(file));
  });
});

describe('example drainer', () => {
  // The example killed with SIGKILL between writing and recording
  // (simulated: bytes written after the last commit point), restarted, and
  // sent the frames again: each record once in the output.
  test('killed and sent the frames again', async () => {
    const d = tmpdir();
    const sock = path.join(d, 's.sock');
    const out = path.join(d, 'out.jsonl');
    const startDrainer = async () => {
      const proc = spawn(process.execPath, [path.join(HERE, 'example-drainer.mjs'), sock, out], { stdio: ['ignore', 'inherit', 'inherit'] });
      const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve(code ?? sig)));
      after(() => proc.kill('SIGKILL'));
      for (let i = 0; i < 200; i++) {
        try {
          const p = await Peer.connect(sock);
          await p.hello();
          return { proc, p, exited };
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      throw new Error(`example drainer did not start listening on ${sock}`);
    };
    let { proc, p, exited } = await startDrainer();
    const f1 = data(1, [rec(1, { body: '{"n":1}' }), rec(1, { index: 1, body: '{"n":2}' })]);
    const f2 = data(2, [rec(2, { body: '{"n":3}', frameId: 2n })]);
    p.send(f1);
    assert.deepEqual(await p.read(), { type: 'ACK', upTo: 1n });
    proc.kill('SIGKILL');
    await exited;
    fs.appendFileSync(out, '{"n":3}\n{"n":'); // written, never recorded: the crash came in between
    ({ proc, p, exited } = await startDrainer());
    p.send(f1); // re-sent: a producer may re-send a frame whose ACK it did not see
    p.send(f2);
    for (let f; (f = await p.read())?.upTo !== 2n;) assert.equal(f?.type, 'ACK');
    assert.equal(fs.readFileSync(out, 'utf8'), '{"n":1}\n{"n":2}\n{"n":3}\n');
    proc.kill('SIGTERM');
    assert.deepEqual(await p.read(), { type: 'CLOSE', code: Code.GOING_AWAY, reason: 'drainer shutting down' });
    assert.equal(await exited, 0);
  });
});
