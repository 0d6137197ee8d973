/**
 * The threads an installer image's members are unpacked and scanned on. An image's store is tens of
 * thousands of small files; decoding their blocks is cheap next to running every rule over what comes
 * out, and on one thread that is the whole cost of the scan. So a member that a format offers as a
 * `MemberJob` (its still-compressed blocks: squashfs) goes to a worker that decodes it, runs the very
 * FileScanner calls the walker would (`scanOwned`: every rule, then the containers inside it, within
 * what is left of the walk's limits) and sends back only the result. The main thread only reads the
 * compressed bytes and walks the tables. Members go in batches (one message, one transferred buffer
 * each); the bytes in flight are bounded, so memory stays flat whatever the image's size.
 *
 * The same workers decode single blocks (`decompress`) for the members too large to hold, which the
 * walker streams on the main thread. Started only from built code on the main thread; otherwise the
 * walker reads members itself, with the same results.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { isMainThread, Worker, workerData } from 'node:worker_threads';
import type { FileResult, FileTarget, ScanEnvironment } from '../file-scanner.js';
import type { BlockCompression, BlockReply } from '../decompress/block.js';
import { workerExecArgv } from '../decompress/pool.js';
import { FormatError, type BlockDecoder, type MemberJob } from '../formats/types.js';
import type { ScanLimits } from './container-walker.js';
import { MemberScanner } from './member-scan.js';

/**
 * Decoded member bytes queued or being scanned, across all workers: the pool's memory. 8 MiB (four
 * batches) measured about 50 MB less peak RSS on the bench image than 24 MiB, in the same time.
 */
export const MAX_IN_FLIGHT = 8 * 1024 * 1024;
/** A batch goes out once it holds this many decoded bytes or members, or when the walker waits. */
const BATCH_BYTES = 2 * 1024 * 1024;
const BATCH_MEMBERS = 128;
/**
 * Each worker's young generation: 2 MB semi-spaces, as the walk thread's (V8's default is 16 MB).
 * A member's bytes live outside the heap, and the external buffers that die young are freed only when
 * the young generation is collected: a smaller one collects them sooner.
 */
const YOUNG_GENERATION_MB = 6;
/** Decoded fragments each worker keeps; the pool mirrors the worker's cache to send each once. */
export const FRAGMENT_SLOTS = 16;

/** Where a part's stored bytes lie in the batch buffer; `null` for a fragment the worker holds. */
export type WirePart =
  | { type: 'block'; at: number; stored: number; compressed: boolean; length: number }
  | { type: 'sparse'; length: number }
  | { type: 'fragment'; key: string; at: number | null; stored: number; compressed: boolean; offset: number; length: number };

export interface WireJob {
  target: FileTarget;
  limits: Partial<ScanLimits>;
  compression: BlockCompression;
  maxBlock: number;
  parts: WirePart[];
}

export type PoolMessage =
  | { type: 'block'; id: number; kind: BlockCompression; input: ArrayBuffer; maxOutput: number }
  | { type: 'batch'; id: number; jobs: WireJob[]; bytes: ArrayBuffer };

export interface PoolReply extends BlockReply {
  /**
   * Per job of a batch: null when the member is one clean file with nothing to remember, a string
   * when it is clean but for the `unencrypted` fingerprint (that fingerprint).
   */
  results?: (FileResult | string | null)[];
}

interface Queued {
  target: FileTarget;
  job: MemberJob;
  limits: Partial<ScanLimits>;
  cost: number;
  resolve(result: FileResult): void;
  reject(error: unknown): void;
}

interface BlockTask {
  cost: number;
  resolve(output: Buffer): void;
  reject(error: unknown): void;
}

interface Slot {
  worker: Worker;
  /** Decoded bytes sent to this worker and not answered yet. */
  load: number;
  batches: Map<number, { items: Queued[]; cost: number }>;
  blocks: Map<number, BlockTask>;
  /** The keys of the fragments the worker holds decoded, oldest first (its own cache, mirrored). */
  fragments: string[];
  dead: boolean;
}

function workerUrl(): URL | undefined {
  const url = new URL('./member-worker.js', import.meta.url);
  return url.protocol === 'file:' && existsSync(fileURLToPath(url)) ? url : undefined;
}

const NONE = Object.freeze([]) as never[];
/** One clean file: shared, never mutated (the walker only reads members' results). */
const CLEAN: FileResult = Object.freeze({ findings: NONE, problems: NONE, sopsConfigs: NONE, files: 1 }) as FileResult;

/** What a queued member's job becomes once its bytes are in a batch. */
const SENT: MemberJob = Object.freeze({ compression: 'zstd', maxBlock: 0, parts: [] }) as MemberJob;

function expand(result: FileResult | string | null | undefined): FileResult {
  if (result === null || result === undefined) return CLEAN;
  if (typeof result === 'string') return { findings: NONE, problems: NONE, sopsConfigs: NONE, files: 1, unencrypted: { fingerprint: result } };
  return result;
}

/** Parts' stored bytes gathered for one buffer: `place` says where a part's bytes will lie in it. */
class StoredBytes {
  readonly chunks: Buffer[] = [];
  size = 0;
  readonly place = (stored: Buffer): number => {
    const at = this.size;
    this.chunks.push(stored);
    this.size += stored.length;
    return at;
  };
}

/** A job's part as a worker gets it: its stored bytes placed in the batch buffer (a fragment's only with `send`). */
function wirePart(part: MemberJob['parts'][number], place: (stored: Buffer) => number, send: boolean): WirePart {
  if (part.type === 'sparse') return part;
  if (part.type === 'block') return { type: 'block', at: place(part.stored), stored: part.stored.length, compressed: part.compressed, length: part.length };
  return { type: 'fragment', key: part.key, at: send ? place(part.stored) : null, stored: part.stored.length, compressed: part.compressed, offset: part.offset, length: part.length };
}

export class MemberPool implements BlockDecoder {
  private readonly slots: Slot[];
  private queue: Queued[] = [];
  private queuedCost = 0;
  private inFlight = 0;
  private waiters: (() => void)[] = [];
  private nextId = 1;
  private closed = false;

  /** The walking thread's own member scanner, for the jobs it takes while the workers are behind. */
  private here: MemberScanner | undefined;
  /** Members the walking thread scanned itself (see scanHere). */
  private scannedHere = 0;

  private constructor(
    workers: Worker[],
    private readonly environment: ScanEnvironment,
  ) {
    this.slots = workers.map((worker) => ({ worker, load: 0, batches: new Map(), blocks: new Map(), fragments: [], dead: false }));
    for (const slot of this.slots) {
      slot.worker.on('message', (reply: PoolReply) => this.settle(slot, reply));
      const fail = (error: unknown) => this.fail(slot, error instanceof Error ? error : new Error(`a member scan thread stopped (${String(error)})`));
      slot.worker.on('error', fail);
      slot.worker.on('exit', (code) => fail(new Error(`a member scan thread exited with code ${code}`)));
    }
  }

  /**
   * A pool of `threads` workers, or undefined where workers are not to be had: TypeScript sources (no
   * built worker script), a worker thread other than the walk thread, or `threads` < 1. The default
   * is one per core beside the walking thread's own (at least one): that thread scans the large files, and on 2 cores
   * a second worker bought no time but cost 10% more CPU and 70 MB more RSS (its own heap and JIT).
   */
  static start(environment: ScanEnvironment, threads = Math.max(1, availableParallelism() - 1)): MemberPool | undefined {
    const url = workerUrl();
    // From the main thread or the walk thread (walk-thread.ts), never from a member's own thread.
    const walking = isMainThread || (workerData as { walkThread?: boolean } | undefined)?.walkThread === true;
    if (!url || !walking || threads < 1) return undefined;
    const workers: Worker[] = [];
    for (let index = 0; index < Math.min(threads, 8); index++) {
      try {
        // A small young generation: a member's bytes live outside the heap, and every MB here is RSS.
        workers.push(new Worker(url, { workerData: { environment }, execArgv: workerExecArgv(), resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } }));
      } catch {
        break;
      }
    }
    return workers.length > 0 ? new MemberPool(workers, environment) : undefined;
  }

  /** Workers running now. */
  get threads(): number {
    return this.live().length;
  }

  private live(): Slot[] {
    return this.slots.filter((slot) => !slot.dead);
  }

  private leastLoaded(): Slot | undefined {
    let best: Slot | undefined;
    for (const slot of this.slots) if (!slot.dead && (!best || slot.load < best.load)) best = slot;
    return best;
  }

  /** Decodes one block on the least busy worker (the members streamed on the main thread). */
  decompress(kind: BlockCompression, input: Buffer, maxOutput: number): Promise<Buffer> {
    const slot = this.leastLoaded();
    if (!slot || this.closed) return Promise.reject(new Error('no member scan thread is running'));
    return new Promise<Buffer>((resolve, reject) => {
      const id = this.nextId++;
      // A copy of its own to transfer: the input may share memory with other blocks.
      const copy = new ArrayBuffer(input.length);
      new Uint8Array(copy).set(input);
      slot.blocks.set(id, { cost: maxOutput, resolve, reject });
      slot.load += maxOutput;
      const message: PoolMessage = { type: 'block', id, kind, input: copy, maxOutput };
      slot.worker.postMessage(message, [copy]);
    });
  }

  /** Whether `bytes` more decoded bytes would have to wait for room in flight (see reserve). */
  wouldWait(bytes: number): boolean {
    return this.inFlight > 0 && this.inFlight + bytes > MAX_IN_FLIGHT;
  }

  /**
   * Decodes and scans the member `target` from `job` on the calling (walking) thread, as a worker
   * would: the walker does this instead of waiting while the workers are behind, so that on two
   * cores neither thread idles. What is queued is sent first.
   */
  async scanHere(target: FileTarget, job: MemberJob, limits: Partial<ScanLimits>): Promise<FileResult> {
    this.flush();
    this.here ??= new MemberScanner(this.environment);
    const stored = new StoredBytes();
    const wire: WireJob = { target, limits, compression: job.compression, maxBlock: job.maxBlock, parts: job.parts.map((part) => wirePart(part, stored.place, true)) };
    this.scannedHere += 1;
    return expand(await this.here.scan(wire, stored.chunks.length === 1 ? stored.chunks[0]! : Buffer.concat(stored.chunks, stored.size)));
  }

  /** How many members the walking thread scanned itself. */
  get scannedOnWalkingThread(): number {
    return this.scannedHere;
  }

  /** Waits until `bytes` more decoded bytes fit in flight (always true when nothing is in flight). */
  async reserve(bytes: number): Promise<void> {
    while (this.inFlight > 0 && this.inFlight + bytes > MAX_IN_FLIGHT) {
      this.flush();
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    this.inFlight += bytes;
  }

  /**
   * Decodes and scans the member `target` from `job` on a worker (after `reserve(size)`): every rule,
   * and the containers inside it within `limits`. Rejects when the worker cannot answer.
   */
  scan(target: FileTarget, job: MemberJob, limits: Partial<ScanLimits>, size: number): Promise<FileResult> {
    return new Promise<FileResult>((resolve, reject) => {
      this.queue.push({ target, job, limits, cost: size, resolve, reject });
      this.queuedCost += size;
      if (this.queuedCost >= BATCH_BYTES || this.queue.length >= BATCH_MEMBERS) this.flush();
    });
  }

  /** Sends what is queued (the walker calls it before it waits for results). */
  flush(): void {
    if (this.queue.length === 0) return;
    const items = this.queue;
    const cost = this.queuedCost;
    this.queue = [];
    this.queuedCost = 0;
    const slot = this.leastLoaded();
    if (!slot || this.closed) {
      this.release(cost);
      for (const item of items) item.reject(new Error('no member scan thread is running'));
      return;
    }
    // One buffer for the batch's stored bytes, fragments the worker already holds left out.
    const jobs: WireJob[] = [];
    const stored = new StoredBytes();
    const place = stored.place;
    for (const item of items) {
      const parts: WirePart[] = item.job.parts.map((part) => {
        if (part.type !== 'fragment') return wirePart(part, place, true);
        const held = slot.fragments.indexOf(part.key);
        if (held >= 0) slot.fragments.splice(held, 1);
        else if (slot.fragments.length >= FRAGMENT_SLOTS) slot.fragments.shift();
        slot.fragments.push(part.key);
        return wirePart(part, place, held < 0);
      });
      jobs.push({ target: item.target, limits: item.limits, compression: item.job.compression, maxBlock: item.job.maxBlock, parts });
      // Its stored bytes are copied into the batch: let go of the read buffers they are views of.
      item.job = SENT;
    }
    const bytes = new ArrayBuffer(stored.size);
    const view = new Uint8Array(bytes);
    let offset = 0;
    for (const chunk of stored.chunks) {
      view.set(chunk, offset);
      offset += chunk.length;
    }
    const id = this.nextId++;
    slot.batches.set(id, { items, cost });
    slot.load += cost;
    const message: PoolMessage = { type: 'batch', id, jobs, bytes };
    slot.worker.postMessage(message, [bytes]);
  }

  private release(bytes: number): void {
    this.inFlight -= bytes;
    const waiters = this.waiters.splice(0);
    for (const wake of waiters) wake();
  }

  private settle(slot: Slot, reply: PoolReply): void {
    const task = slot.blocks.get(reply.id);
    if (task) {
      slot.blocks.delete(reply.id);
      slot.load -= task.cost;
      if (reply.error) task.reject(new FormatError(reply.error.reason, reply.error.message));
      else task.resolve(Buffer.from(reply.output!));
      return;
    }
    const batch = slot.batches.get(reply.id);
    if (!batch) return;
    slot.batches.delete(reply.id);
    slot.load -= batch.cost;
    this.release(batch.cost);
    batch.items.forEach((item, index) => {
      if (reply.error) item.reject(new Error(reply.error.message));
      else item.resolve(expand(reply.results?.[index]));
    });
  }

  private fail(slot: Slot, error: Error): void {
    if (slot.dead) return;
    slot.dead = true;
    for (const { items, cost } of slot.batches.values()) {
      this.release(cost);
      for (const item of items) item.reject(error);
    }
    slot.batches.clear();
    for (const task of slot.blocks.values()) task.reject(error);
    slot.blocks.clear();
    if (this.live().length === 0) {
      const queued = this.queue.splice(0);
      this.release(this.queuedCost);
      this.queuedCost = 0;
      for (const item of queued) item.reject(error);
    }
  }

  /** Ends the workers; what is still in flight is rejected (the walker reports it unscanned). */
  async close(): Promise<void> {
    this.closed = true;
    const error = new Error('the scan ended');
    const queued = this.queue.splice(0);
    for (const item of queued) item.reject(error);
    for (const slot of this.slots) this.fail(slot, error);
    await Promise.all(this.slots.map((slot) => slot.worker.terminate().catch(() => undefined)));
  }
}
