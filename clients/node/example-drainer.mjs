// Example drainer: each record as one line of OUT, durably, exactly once.
// Usage: node example-drainer.mjs SOCKET OUT   (dedup state: OUT.dedup)
import fs from 'node:fs';
import { DedupState, fsyncDir, serve } from './sluice-drain.mjs';

const [sock, outPath] = process.argv.slice(2);
const state = new DedupState(`${outPath}.dedup`); // what was committed, and where OUT ended then
const fd = fs.openSync(outPath, 'a');
fsyncDir(outPath);                                // the file's creation is durable too
fs.ftruncateSync(fd, state.commitPoint ?? 0);     // cut back what a crash left uncommitted

await serve(sock, (batch) => {
  const fresh = state.fresh(batch.records);      // drop records already committed
  fs.writeFileSync(fd, Buffer.concat(fresh.flatMap((r) => [r.data, Buffer.from('\n')])));
  fs.fsyncSync(fd);                               // 1. the records are durable,
  state.commit(fresh, fs.fstatSync(fd).size);     // 2. then recorded with the commit point,
  batch.ack();                                    // 3. and only then acknowledged
}, { dedup: state });
