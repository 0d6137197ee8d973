/**
 * Read-ahead for trees of thousands of small files on machines with two or three cores. There,
 * opening, reading and closing a small file costs more than scanning it, and a second scanning
 * thread does not earn back its own start-up (its module graph, its cold JIT). So one small worker
 * does only the system calls: it reads files from the front of the walk into a shared ring while
 * this thread scans them from there. Whenever the worker is behind (still booting, or on a slow
 * file), this thread reads and scans files itself, from the back of the list. Every file is
 * claimed exactly once, by compare-and-swap on its state word, and the two meet in the middle.
 * A worker that dies leaves nothing behind: its unfinished file is claimed back and read here.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { CancelledError } from '../../../errors.js';
import { isQuietText, type FileResult, type ScanEnvironment } from '../file-scanner.js';
import { NOTHING, runTask, scanReadAhead, type FileTask, type TaskOutcome } from './file-task.js';
import {
  CONSUMED,
  CONTROL_WORDS,
  DEFERRED,
  FREE,
  MAIN,
  MAIN_WAITING,
  META_WORDS,
  QUIET,
  READY,
  RING_BYTES,
  STOP,
  WORKER_WAITING,
  type ReadAheadInit,
  type ReadAheadJob,
} from './read-ahead-shared.js';

/** A started read-ahead worker (see startReadAhead). */
export interface ReadAhead {
  worker: Worker;
  ring: SharedArrayBuffer;
  control: Int32Array;
  /** Set when the worker failed or exited: no file it claimed will become READY any more. */
  gone: boolean;
}

/** Files between two yields to the event loop (so Ctrl-C and worker events get through). */
const YIELD_EVERY = 128;

// Atomics.waitAsync is in Node 20 but not in TypeScript's ES2023 library.
type WaitAsync = (array: Int32Array, index: number, value: number, timeout: number) => { async: boolean; value: Promise<string> | string };

/**
 * Starts the worker, so it boots while the walk goes on; undefined when the compiled worker is not
 * there (unit tests run the TypeScript sources: the scan then reads every file on this thread).
 */
export function startReadAhead(): ReadAhead | undefined {
  const url = new URL('./read-ahead-worker.js', import.meta.url);
  if (url.protocol !== 'file:' || !existsSync(fileURLToPath(url))) return undefined;
  const { Worker } = createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');
  const init: ReadAheadInit = { ring: new SharedArrayBuffer(RING_BYTES), control: new SharedArrayBuffer(CONTROL_WORDS * 4) };
  let worker: Worker;
  try {
    // The worker allocates its paths and a text view per file: a small young generation is plenty.
    worker = new Worker(url, { workerData: init, resourceLimits: { maxYoungGenerationSizeMb: 16 } });
  } catch {
    return undefined; // no threads here (a sandbox, a resource limit): this thread reads every file
  }
  const reader: ReadAhead = { worker, ring: init.ring, control: new Int32Array(init.control), gone: false };
  const gone = () => {
    reader.gone = true;
  };
  worker.on('error', gone);
  worker.on('exit', gone);
  return reader;
}

/** Ends the worker (it may still be booting, or waiting for ring space). */
export function stopReadAhead(reader: ReadAhead): void {
  Atomics.store(reader.control, STOP, 1);
  Atomics.notify(reader.control, CONSUMED);
  void reader.worker.terminate();
}

/**
 * Scans every task, with the worker reading ahead from the front; `settle` gets each file's result
 * and bytes read once, by task index, as it is done (in no particular order). Stops the worker
 * before returning.
 */
export async function scanWithReadAhead(
  reader: ReadAhead,
  tasks: FileTask[],
  environment: ScanEnvironment,
  settle: (index: number, result: FileResult, bytes: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const count = tasks.length;
  const state = new Int32Array(new SharedArrayBuffer(Math.max(1, count) * 4));
  const meta = new Int32Array(new SharedArrayBuffer(Math.max(1, count) * 4 * META_WORDS));
  const quietable = new Uint8Array(new SharedArrayBuffer(Math.max(1, count)));
  for (let index = 0; index < count; index++) quietable[index] = tasks[index]!.sopsGoverned ? 0 : 1;
  const job: ReadAheadJob = {
    paths: tasks.map((task) => task.full).join('\0'),
    state: state.buffer as SharedArrayBuffer,
    meta: meta.buffer as SharedArrayBuffer,
    quietable: quietable.buffer as SharedArrayBuffer,
    operatorSecrets: environment.operatorSecrets.map((secret) => secret.value),
  };
  reader.worker.postMessage(job);
  const ring = Buffer.from(reader.ring);
  const control = reader.control;
  const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
  const settleOutcome = (index: number, outcome: TaskOutcome) => settle(index, outcome.result, outcome.bytes);
  const release = (index: number) => {
    Atomics.store(control, CONSUMED, index + 1);
    if (Atomics.load(control, WORKER_WAITING) === 1) Atomics.notify(control, CONSUMED);
  };

  try {
    if (signal?.aborted) throw new CancelledError('Scan cancelled.');
    let front = 0; // next file from the worker's side
    let low = count; // this thread has claimed [low, count) from the back
    let backOpen = true;
    let sinceYield = 0;
    while (front < low) {
      if (++sinceYield === YIELD_EVERY) {
        // Ctrl-C arrives through the event loop: look for it between batches, not at every file.
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (signal?.aborted) throw new CancelledError('Scan cancelled.');
      }
      // Most outcomes are plain values: no promise, no await (a microtask per file is measurable).
      const now = Atomics.load(state, front);
      if (now === QUIET) {
        // Decided by the worker: nothing held, nothing found.
        release(front);
        settle(front, NOTHING, meta[META_WORDS * front + 2]!);
        front++;
        continue;
      }
      if (now === READY) {
        const task = tasks[front]!;
        const start = meta[META_WORDS * front]!;
        const end = start + meta[META_WORDS * front + 1]!;
        if (isQuietText(ring, start, end, task.reported, task.sopsGoverned, environment)) {
          // Most files: decided where they lie in the ring, nothing allocated for them.
          release(front);
          settle(front, NOTHING, end - start);
        } else {
          // Scanned synchronously (a container is copied out first): the ring bytes are free after.
          const pending = scanReadAhead(task, ring.subarray(start, end), environment, signal);
          release(front);
          settleOutcome(front, pending instanceof Promise ? await pending : pending);
        }
        front++;
        continue;
      }
      if (now === DEFERRED) {
        release(front);
        const read = runTask(tasks[front]!, environment, signal);
        settleOutcome(front, read instanceof Promise ? await read : read);
        front++;
        continue;
      }
      // The worker has not delivered the front file: take one from the back meanwhile.
      if (backOpen && Atomics.compareExchange(state, low - 1, FREE, MAIN) === FREE) {
        low--;
        const read = runTask(tasks[low]!, environment, signal);
        settleOutcome(low, read instanceof Promise ? await read : read);
        continue;
      }
      backOpen = false; // the worker has claimed everything up to low
      if (reader.gone) {
        // It will deliver nothing more: claim its file back (or the free one) and read it here.
        if (Atomics.compareExchange(state, front, now, MAIN) === now) {
          release(front);
          const read = runTask(tasks[front]!, environment, signal);
          settleOutcome(front, read instanceof Promise ? await read : read);
          front++;
        }
        continue;
      }
      Atomics.store(control, MAIN_WAITING, 1);
      const wait = waitAsync(state, front, now, 50);
      if (wait.async) await wait.value;
      Atomics.store(control, MAIN_WAITING, 0);
    }
  } finally {
    stopReadAhead(reader);
  }
}
