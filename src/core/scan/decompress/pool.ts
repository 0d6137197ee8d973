/**
 * A small worker_threads pool that decodes squashfs-style blocks on every core. Inputs are copied into
 * a fresh buffer that is transferred (never the caller's buffer, which may share memory with others);
 * outputs are transferred back. When a worker cannot start (no worker script next to this module, as
 * when running from TypeScript sources, or a platform without threads), blocks are decoded on the
 * calling thread instead. Idle workers do not keep the process alive.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { FormatError } from '../formats/types.js';
import { decompressBlock, type BlockCompression, type BlockReply } from './block.js';

export interface BlockPool {
  /** Decodes one block (see decompressBlock) on a worker, or on this thread when none runs. */
  decompress(kind: BlockCompression, input: Buffer, maxOutput: number): Promise<Buffer>;
  /** Workers running now (0: blocks are decoded on the calling thread). */
  readonly threads: number;
  /** Stops the workers; blocks still queued are decoded on the calling thread. */
  close(): Promise<void>;
}

interface Pending {
  resolve(output: Buffer): void;
  reject(error: unknown): void;
  kind: BlockCompression;
  input: Buffer;
  maxOutput: number;
}

interface Slot {
  worker: Worker;
  busy: Map<number, Pending>;
}

/**
 * The parent's Node options for a worker, less those that would stop a worker started from a file
 * (`--input-type`, `-e`).
 */
export function workerExecArgv(): string[] {
  return process.execArgv.filter((arg) => !arg.startsWith('--input-type') && arg !== '-e' && arg !== '--eval');
}

/** Blocks in flight per worker: one decoding, one waiting, so a worker never idles between messages. */
const DEPTH = 2;

/**
 * A pool of `threads` workers (default: one per core) for `decompressBlock`. `close()` it when done.
 */
export function createBlockPool(threads = availableParallelism()): BlockPool {
  const script = new URL('./block-worker.js', import.meta.url);
  const slots: Slot[] = [];
  const queue: Pending[] = [];
  let nextId = 1;
  let closed = false;

  const local = (task: Pending): void => {
    decompressBlock(task.kind, task.input, task.maxOutput).then(task.resolve, task.reject);
  };

  const drop = (slot: Slot): void => {
    const index = slots.indexOf(slot);
    if (index >= 0) slots.splice(index, 1);
    // What it had in flight is decoded here instead.
    for (const task of slot.busy.values()) local(task);
    slot.busy.clear();
    if (slots.length === 0) while (queue.length > 0) local(queue.shift()!);
  };

  const dispatch = (): void => {
    while (queue.length > 0) {
      let best: Slot | undefined;
      for (const slot of slots) if (slot.busy.size < DEPTH && (!best || slot.busy.size < best.busy.size)) best = slot;
      if (!best) {
        if (slots.length === 0) local(queue.shift()!);
        else return;
        continue;
      }
      const task = queue.shift()!;
      const id = nextId++;
      const copy = new ArrayBuffer(task.input.length);
      new Uint8Array(copy).set(task.input);
      best.busy.set(id, task);
      best.worker.ref();
      best.worker.postMessage({ id, kind: task.kind, input: copy, maxOutput: task.maxOutput }, [copy]);
    }
  };

  if (threads > 0 && existsSync(fileURLToPath(script))) {
    for (let i = 0; i < threads; i++) {
      let worker: Worker;
      try {
        worker = new Worker(script, { execArgv: workerExecArgv() });
      } catch {
        break;
      }
      const slot: Slot = { worker, busy: new Map() };
      worker.on('message', (reply: BlockReply) => {
        const task = slot.busy.get(reply.id);
        if (!task) return;
        slot.busy.delete(reply.id);
        if (slot.busy.size === 0) worker.unref();
        if (reply.error) task.reject(new FormatError(reply.error.reason, reply.error.message));
        else task.resolve(Buffer.from(reply.output!));
        dispatch();
      });
      worker.on('error', () => drop(slot));
      worker.on('exit', () => drop(slot));
      // After the listeners: adding a 'message' listener refs the worker again.
      worker.unref();
      slots.push(slot);
    }
  }

  return {
    decompress(kind, input, maxOutput) {
      return new Promise<Buffer>((resolve, reject) => {
        const task = { resolve, reject, kind, input, maxOutput };
        if (closed || slots.length === 0) local(task);
        else {
          queue.push(task);
          dispatch();
        }
      });
    },
    get threads() {
      return slots.length;
    },
    async close() {
      closed = true;
      const workers = slots.map((slot) => slot.worker);
      // Terminating drops each slot; what it had in flight is decoded here.
      await Promise.all(workers.map((worker) => worker.terminate()));
    },
  };
}
