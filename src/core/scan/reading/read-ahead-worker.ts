/**
 * The read-ahead worker: opens, reads and closes the walk's files from the front, each into the
 * shared ring. It claims one file at a time (state FREE -> WORKER) and stops at the first file the
 * scanning thread already took from the back. A file it read whole and that is plain quiet text
 * (quiet-text.ts: no rule, SOPS check or operator secret can act on it; most files of a
 * configuration tree) is decided here, QUIET, and its bytes are not kept; any other file is left in
 * the ring for the scanning thread (READY). A file it cannot read whole in one read (empty, too
 * large, an error, not a regular file) is DEFERRED to the scanning thread, which reads it the careful
 * way. So the two threads share the rules' work as well as the system calls.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { isQuietText } from '../quiet-text.js';
import type { OperatorSecret } from '../rules/rules.js';
import {
  CONSUMED,
  DEFERRED,
  FREE,
  MAIN_WAITING,
  META_WORDS,
  OPEN_FLAGS,
  QUIET,
  READY,
  RING_BYTES,
  SMALL_READ,
  STOP,
  WORKER,
  WORKER_WAITING,
  type ReadAheadInit,
  type ReadAheadJob,
} from './read-ahead-shared.js';

const init = workerData as ReadAheadInit;
const control = new Int32Array(init.control);
const ring = Buffer.from(init.ring);

/**
 * Where the next file may be read to: `SMALL_READ` contiguous free bytes of the ring, waiting for
 * the scanning thread to release files when it is full. -1 when told to stop.
 */
function place(index: number, head: number, meta: Int32Array): number {
  for (;;) {
    if (Atomics.load(control, STOP) === 1) return -1;
    const consumed = Atomics.load(control, CONSUMED);
    if (consumed >= index) return 0; // nothing is held: start again at the beginning
    const tail = meta[META_WORDS * consumed]!; // where the oldest held file starts (this thread wrote it)
    if (head >= tail) {
      if (RING_BYTES - head >= SMALL_READ) return head;
      if (tail >= SMALL_READ) return 0; // wrap: the held bytes all lie at or after tail
    } else if (tail - head >= SMALL_READ) {
      return head;
    }
    Atomics.store(control, WORKER_WAITING, 1);
    Atomics.wait(control, CONSUMED, consumed, 100);
    Atomics.store(control, WORKER_WAITING, 0);
  }
}

function run(job: ReadAheadJob): void {
  const paths = job.paths.split('\0');
  const state = new Int32Array(job.state);
  const meta = new Int32Array(job.meta);
  const quietable = new Uint8Array(job.quietable);
  const secrets: OperatorSecret[] = job.operatorSecrets.map((value) => ({ value, label: '' }));
  let head = 0;
  for (let index = 0; index < paths.length; index++) {
    if (Atomics.compareExchange(state, index, FREE, WORKER) !== FREE) return; // met the scanning thread
    const at = place(index, head, meta);
    if (at < 0) return;
    let length = -1;
    try {
      const fd = openSync(paths[index]!, OPEN_FLAGS);
      try {
        length = readSync(fd, ring, at, SMALL_READ, 0);
      } finally {
        closeSync(fd);
      }
    } catch {
      length = -1; // the scanning thread reads it again and reports the error in its own words
    }
    const whole = length > 0 && length < SMALL_READ;
    // A possible container is left to the scanning thread, which has the format registry.
    const quiet = whole && quietable[index] === 1 && isQuietText(ring, at, at + length, paths[index]!, false, secrets);
    const held = whole && !quiet;
    meta[META_WORDS * index] = held ? at : head;
    meta[META_WORDS * index + 1] = held ? length : 0;
    meta[META_WORDS * index + 2] = whole ? length : 0;
    if (Atomics.compareExchange(state, index, WORKER, quiet ? QUIET : whole ? READY : DEFERRED) !== WORKER) return;
    if (held) head = at + length;
    if (Atomics.load(control, MAIN_WAITING) === 1) Atomics.notify(state, index);
  }
}

parentPort!.once('message', (job: ReadAheadJob) => {
  run(job);
  parentPort!.close();
});
