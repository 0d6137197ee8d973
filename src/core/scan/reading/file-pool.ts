/**
 * Runs the walked files through `runTask` on the main thread and, for thousands of files, on worker
 * threads too (one per extra core). Files go in batches; a thread claims a batch with one atomic
 * compare-and-swap on shared memory, so a slow thread (or a large file) never holds back the others,
 * and results land at their file's index: the merged order is the walk order, whoever scanned it.
 * If a worker fails, the main thread rescans every batch it had claimed but not delivered.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type { Worker } from 'node:worker_threads';
import type { ProgressHook } from '../../types.js';
import { CancelledError } from '../../../errors.js';
import type { FileResult, ScanEnvironment } from '../file-scanner.js';
import type { WalkProgress } from './container-walker.js';
import { isNothing, NOTHING, runTask, type FileTask, type TaskOutcome } from './file-task.js';
import { scanWithReadAhead, type ReadAhead } from './read-ahead.js';

/** Files per claimed batch: big enough that claiming is free, small enough to balance the tail. */
export const BATCH = 128;
/** Below this many files a worker's start-up costs more than it saves. */
export const WORKER_MIN_FILES = 1500;
const MAIN = 1;

/** Sent by a worker for each batch it finished: only the results that are not NOTHING. */
export interface BatchMessage {
  type: 'batch';
  batch: number;
  bytes: number;
  results: [number, FileResult][];
}

/** Given when the worker starts (so it boots while the main thread still walks the tree). */
export interface WorkerInput {
  environment: ScanEnvironment;
  me: number;
}

/** Posted to a worker once the walk is done: its share is whatever batches it manages to claim. */
export interface WorkerTasks {
  /** Full paths joined by NUL (one string crosses threads much faster than 20,000 objects). */
  full: string;
  reported: string;
  governed: Uint8Array;
  owners: SharedArrayBuffer;
}

/**
 * Claims batches (compare-and-swap 0 → `me`) until none is left and runs their files; `onBatch` gets
 * each batch's outcomes. Yields to the event loop between batches so messages and Ctrl-C get through.
 */
export async function runLane(
  tasks: FileTask[],
  owners: Int32Array,
  me: number,
  environment: ScanEnvironment,
  onBatch: (batch: number, outcomes: TaskOutcome[]) => void,
  signal?: AbortSignal,
  onFile?: (task: FileTask, bytes: number) => void,
  onInside?: (task: FileTask, progress: WalkProgress) => void,
): Promise<void> {
  for (let batch = 0; batch < owners.length; batch++) {
    if (Atomics.load(owners, batch) !== 0 || Atomics.compareExchange(owners, batch, 0, me) !== 0) continue;
    const end = Math.min(tasks.length, (batch + 1) * BATCH);
    const outcomes: TaskOutcome[] = [];
    for (let index = batch * BATCH; index < end; index++) {
      if (signal?.aborted) throw new CancelledError('Scan cancelled.');
      const task = tasks[index]!;
      const pending = runTask(task, environment, signal, onInside ? (progress) => onInside(task, progress) : undefined);
      const outcome = pending instanceof Promise ? await pending : pending;
      outcomes.push(outcome);
      onFile?.(task, outcome.bytes);
    }
    onBatch(batch, outcomes);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function workerUrl(): URL | undefined {
  // Built code only: under a TypeScript test runner the worker module is not compiled, so the scan
  // stays on the main thread (same results, one core).
  const url = new URL('./file-worker.js', import.meta.url);
  return url.protocol === 'file:' && existsSync(fileURLToPath(url)) ? url : undefined;
}

/** Worker threads started ahead of `scanTasks`, booting while the walk goes on. */
export interface Helpers {
  workers: { worker: Worker; me: number }[];
}

/**
 * Starts `threads - 1` worker threads (default: one per extra core), or none when the worker module
 * is not built. Call it as soon as a scan is known to be large: a worker needs ~0.1 s to boot.
 */
export function startHelpers(environment: ScanEnvironment, threads = availableParallelism()): Helpers {
  const url = workerUrl();
  const count = url ? Math.max(0, Math.min(threads - 1, 7)) : 0;
  if (count === 0) return { workers: [] };
  // Loaded here, not at start-up: most scans (and every scan on two cores) run on the main thread.
  const { Worker } = createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');
  const workers: Helpers['workers'] = [];
  for (let index = 0; index < count; index++) {
    const me = MAIN + 1 + index;
    const input: WorkerInput = { environment, me };
    try {
      workers.push({ worker: new Worker(url!, { workerData: input }), me });
    } catch {
      break; // no more threads to be had: the ones started (or the main thread alone) do the scan
    }
  }
  return { workers };
}

/**
 * Scans every task and returns one result per task, in task order, and the bytes read, on the main
 * thread and the `helpers` (started by startHelpers; they are ended when this returns).
 */
export async function scanTasks(
  tasks: FileTask[],
  environment: ScanEnvironment,
  options: { helpers?: Helpers; reader?: ReadAhead; signal?: AbortSignal; onProgress?: ProgressHook; total: number },
): Promise<{ results: FileResult[]; bytes: number }> {
  const batches = Math.ceil(tasks.length / BATCH);
  const owners = new Int32Array(new SharedArrayBuffer(Math.max(1, batches) * 4));
  const results: FileResult[] = new Array<FileResult>(tasks.length);
  let done = 0;
  const progress = (task: FileTask) => options.onProgress?.({ phase: 'scan', bytes: done, total: options.total, path: task.reported });
  const store = (batch: number, outcomes: TaskOutcome[]) => {
    outcomes.forEach((outcome, offset) => {
      results[batch * BATCH + offset] = isNothing(outcome.result) ? NOTHING : outcome.result;
    });
  };

  if (options.reader) {
    const settle = (index: number, result: FileResult, bytes: number) => {
      results[index] = result === NOTHING || isNothing(result) ? NOTHING : result;
      done += bytes;
      progress(tasks[index]!);
    };
    await scanWithReadAhead(options.reader, tasks, environment, settle, options.signal);
    return { results, bytes: done };
  }

  const workers: Promise<void>[] = [];
  const live = options.helpers?.workers ?? [];
  if (live.length > 0) {
    const share: WorkerTasks = {
      full: tasks.map((task) => task.full).join('\0'),
      reported: tasks.map((task) => task.reported).join('\0'),
      governed: Uint8Array.from(tasks, (task) => (task.sopsGoverned ? 1 : 0)),
      owners: owners.buffer as SharedArrayBuffer,
    };
    for (const { worker, me } of live) {
      worker.postMessage(share);
      const delivered = new Set<number>();
      workers.push(
        new Promise<void>((resolve) => {
          let finished = false;
          worker.on('message', (message: BatchMessage | { type: 'done' }) => {
            if (message.type === 'done') {
              finished = true;
              resolve();
              return;
            }
            delivered.add(message.batch);
            const end = Math.min(tasks.length, (message.batch + 1) * BATCH);
            for (let at = message.batch * BATCH; at < end; at++) results[at] = NOTHING;
            for (const [at, result] of message.results) results[at] = result;
            done += message.bytes;
            progress(tasks[end - 1]!);
          });
          // A worker that cannot start or dies mid-way: its undelivered batches are scanned here.
          const recover = () => {
            if (finished) return;
            finished = true;
            for (let batch = 0; batch < batches; batch++) {
              if (Atomics.load(owners, batch) === me && !delivered.has(batch)) Atomics.store(owners, batch, 0);
            }
            resolve();
          };
          worker.on('error', recover);
          worker.on('exit', recover);
        }),
      );
    }
  }

  try {
    let files = 0;
    const lane = () =>
      runLane(
        tasks,
        owners,
        MAIN,
        environment,
        store,
        options.signal,
        (task, bytes) => {
          done += bytes;
          files += 1;
          progress(task);
        },
        // A large file (an installer image) reports from inside: where it is and the members scanned.
        options.onProgress
          ? (task, inside) =>
              options.onProgress!({ phase: 'scan', bytes: done + Math.min(inside.position, inside.size), total: options.total, path: inside.path ?? task.reported, files: files + inside.files })
          : undefined,
      );
    await lane();
    const signal = options.signal;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(new CancelledError('Scan cancelled.'));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      void Promise.all(workers).then(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
    // Batches a failed worker released: claim them now.
    await lane();
  } finally {
    for (const { worker } of live) void worker.terminate();
  }
  return { results, bytes: done };
}
