/**
 * Rule scanning of a container's members on worker threads. Unpacking an installer image is cheap
 * (a squashfs store decompresses at hundreds of MiB/s); applying every rule to what comes out is
 * not, and on one thread it is the whole cost of the scan. The walker keeps reading, unpacking and
 * recursing on its own thread and hands each held member that is not a container itself (the great
 * majority: text and ELF files) to this pool, which runs the very FileScanner calls the walker would
 * (`scanFlat`, then `finalize`) on a worker. Members go in batches (one message per batch, their bytes
 * packed into one transferred buffer); bytes in flight are bounded, so memory stays flat however
 * large the image. Started only from built code on the main thread; otherwise the walker scans
 * members itself, with the same results.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { isMainThread, type Worker } from 'node:worker_threads';
import type { FileResult, FileTarget, ScanEnvironment } from '../file-scanner.js';
import type { ScanLimits } from './container-walker.js';

/** Member bytes queued or being scanned, across all workers: the pool's whole memory. */
export const MAX_IN_FLIGHT = 8 * 1024 * 1024;
/** A batch is sent once it holds this many bytes or members (or when the walker needs the results). */
const BATCH_BYTES = 1024 * 1024;
const BATCH_MEMBERS = 64;

/**
 * A batch of members for a worker: `ends[i]` is where member i's bytes end in `bytes`; `limits[i]`,
 * for a member that is a container itself, what is left of the walk's limits for its insides.
 */
export interface MemberBatch {
  id: number;
  targets: FileTarget[];
  ends: number[];
  limits: (ScanLimits | null)[];
  bytes: ArrayBuffer;
}

/** A worker's answer: results by index in the batch; null for a clean file (nothing to report). */
export interface MemberReply {
  id: number;
  results?: (FileResult | null)[];
  error?: string;
}

interface Queued {
  target: FileTarget;
  content: Buffer;
  limits: ScanLimits | null;
  resolve(result: FileResult): void;
  reject(error: unknown): void;
}

interface Slot {
  worker: Worker;
  inFlight: number;
  batches: Map<number, { items: Queued[]; size: number }>;
  dead: boolean;
}

function workerUrl(): URL | undefined {
  const url = new URL('./member-worker.js', import.meta.url);
  return url.protocol === 'file:' && existsSync(fileURLToPath(url)) ? url : undefined;
}

const clean = (): FileResult => ({ findings: [], problems: [], sopsConfigs: [], files: 1 });

export class MemberPool {
  private readonly slots: Slot[];
  private queue: Queued[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private nextId = 1;

  private constructor(workers: Worker[]) {
    this.slots = workers.map((worker) => ({ worker, inFlight: 0, batches: new Map(), dead: false }));
    for (const slot of this.slots) {
      slot.worker.on('message', (reply: MemberReply) => this.settle(slot, reply));
      const fail = (error: unknown) => this.fail(slot, error instanceof Error ? error : new Error(`member scan worker exited (${String(error)})`));
      slot.worker.on('error', fail);
      slot.worker.on('exit', (code) => fail(new Error(`member scan worker exited with code ${code}`)));
      // Not unref'd: a walk awaiting a worker's answer must keep the process alive (close() ends them).
    }
  }

  /**
   * A pool of `threads` workers (default: one per core), or undefined where workers are not to be
   * had: TypeScript sources (no built worker script), a worker thread already, or `threads` < 1.
   */
  static start(environment: ScanEnvironment, threads = availableParallelism()): MemberPool | undefined {
    const url = workerUrl();
    if (!url || !isMainThread || threads < 1) return undefined;
    const { Worker } = createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');
    const workers: Worker[] = [];
    for (let index = 0; index < Math.min(threads, 8); index++) {
      try {
        workers.push(new Worker(url, { workerData: { environment } }));
      } catch {
        break;
      }
    }
    return workers.length > 0 ? new MemberPool(workers) : undefined;
  }

  /** Waits until `bytes` more fit in flight (always true when nothing is in flight). */
  async reserve(bytes: number): Promise<void> {
    while (this.inFlight > 0 && this.inFlight + bytes > MAX_IN_FLIGHT) {
      this.flush();
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    this.inFlight += bytes;
  }

  /**
   * Scans `content` as the member `target` on a worker (after `reserve(content.length)`): every rule,
   * and the containers inside it within `limits` (null: it is no container).
   */
  scan(target: FileTarget, content: Buffer, limits: ScanLimits | null = null): Promise<FileResult> {
    return new Promise<FileResult>((resolve, reject) => {
      this.queue.push({ target, content, limits, resolve, reject });
      this.queuedBytes += content.length;
      if (this.queuedBytes >= BATCH_BYTES || this.queue.length >= BATCH_MEMBERS) this.flush();
    });
  }

  /**
   * Sends what is queued. The walker calls it before it waits for results (the end of a container);
   * `reserve` calls it before it waits for room. Not on a timer: the walker yields between members
   * (each waits for its blocks), and a batch per turn of the event loop would be a member per batch.
   */
  flush(): void {
    if (this.queue.length === 0) return;
    const live = this.slots.filter((slot) => !slot.dead);
    const items = this.queue;
    this.queue = [];
    const size = this.queuedBytes;
    this.queuedBytes = 0;
    if (live.length === 0) {
      this.release(size);
      for (const item of items) item.reject(new Error('no member scan worker is running'));
      return;
    }
    const slot = live.reduce((best, candidate) => (candidate.inFlight < best.inFlight ? candidate : best));
    // One fresh buffer, transferred: never the members' own, which may share memory with others.
    const bytes = new ArrayBuffer(size);
    const view = new Uint8Array(bytes);
    const ends: number[] = [];
    let offset = 0;
    for (const item of items) {
      view.set(item.content, offset);
      offset += item.content.length;
      ends.push(offset);
      item.content = Buffer.alloc(0); // let the member's bytes go now
    }
    const id = this.nextId++;
    slot.batches.set(id, { items, size });
    slot.inFlight += size;
    const batch: MemberBatch = { id, targets: items.map((item) => item.target), ends, limits: items.map((item) => item.limits), bytes };
    slot.worker.postMessage(batch, [bytes]);
  }

  private release(bytes: number): void {
    this.inFlight -= bytes;
    const waiters = this.waiters.splice(0);
    for (const wake of waiters) wake();
  }

  private settle(slot: Slot, reply: MemberReply): void {
    const batch = slot.batches.get(reply.id);
    if (!batch) return;
    slot.batches.delete(reply.id);
    const { items, size } = batch;
    slot.inFlight -= size;
    this.release(size);
    items.forEach((item, index) => {
      if (reply.error !== undefined) item.reject(new Error(reply.error));
      else item.resolve(reply.results?.[index] ?? clean());
    });
  }

  private fail(slot: Slot, error: Error): void {
    if (slot.dead) return;
    slot.dead = true;
    for (const { items, size } of slot.batches.values()) {
      this.release(size);
      for (const item of items) item.reject(error);
    }
    slot.batches.clear();
  }

  /** Ends the workers; members still in flight are rejected (the walker reports them unscanned). */
  async close(): Promise<void> {
    for (const slot of this.slots) this.fail(slot, new Error('the scan ended'));
    await Promise.all(this.slots.map((slot) => slot.worker.terminate().catch(() => undefined)));
  }
}
