/**
 * Hashing and scanning many files on all cores: sha256 is sequential per file, so the pool runs
 * one file per thread: the calling thread plus one worker per further core. Without the compiled
 * worker (unit tests against src/), the calling thread does it all.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CancelledError } from '../errors.js';
import { isShared } from './copy-io.js';
import { readFollowing, readThrough, type CacheBypass, type FollowedFile } from './read-direct.js';
import type { Gate, LeakGateOptions } from './scan/index.js';
import type { Finding } from './types.js';

export interface HashJob {
  id: number;
  file: string;
  /** Path reported in findings (relative to the seed root). */
  relPath: string;
  bypassCache: boolean;
  scan: boolean;
  /**
   * The size the file had when it was listed, when known: a large file is then streamed through the
   * scanner from its first chunk instead of being held until it proves large.
   */
  size?: number;
}

export interface HashOutcome {
  size: number;
  sha256: string;
  bypass: CacheBypass;
  findings: Finding[];
}

/**
 * Workers hash and scan chunks that live outside the V8 heap, so a small young generation is
 * enough; V8's default (tens of MiB per isolate) would dominate verify's peak memory.
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 96 };

/**
 * A leak gate made on first use, then shared by every file one thread scans for one pool (a gate
 * loads the operator's key files: once per thread, not once per file, and never a stale one from
 * an earlier pool with other options).
 */
export function lazyGate(options: LeakGateOptions | undefined): () => Promise<Gate> {
  let gate: Promise<Gate> | undefined;
  // Imported on first use: a worker that only hashes (a build's copy) never loads the rules.
  return () => (gate ??= import('./scan/index.js').then(({ createLeakGate }) => createLeakGate(options)));
}

/**
 * One pass over the file: sha256 and (optionally) the leak scanner. With `follow`, behind its
 * writer. With `hasher`, the sha256 is computed by another thread (see HashPool.pump) while this
 * one reads and scans.
 */
export async function hashAndScanFile(job: HashJob, gate: () => Promise<Gate>, onProgress?: (bytes: number) => void, signal?: AbortSignal, follow?: FollowedFile, hasher?: StreamHasher): Promise<HashOutcome> {
  const hash = hasher ? undefined : createHash('sha256');
  let scanner: ReturnType<Gate['open']> | undefined;
  if (job.scan) scanner = (await gate()).open({ path: job.relPath, size: job.size });
  const onChunk = (chunk: Buffer): Promise<void> | undefined => {
    // Checked per chunk (2 MiB): a cancelled verify stops within one read, whatever the file's size.
    if (signal?.aborted) throw new CancelledError();
    scanner?.update(chunk);
    onProgress?.(chunk.length);
    if (hash) hash.update(chunk);
    else return hasher!.update(chunk);
    return undefined;
  };
  const { size, bypass } = follow
    ? await readFollowing(follow, job.bypassCache, (chunk) => void onChunk(chunk))
    : await readThrough(job.file, job.bypassCache, onChunk, undefined, undefined, job.size);
  const findings = scanner ? await scanner.finish() : [];
  return { size, sha256: hash ? hash.digest('hex') : await hasher!.digest(), bypass, findings };
}

/**
 * A file at least this large may be split between two threads (see HashPool.splitLargest): a seed
 * whose largest file stands alone (one GGUF, an odd shard) then verifies on two cores, not one.
 */
const SPLIT_MIN_BYTES = 64 * 1024 * 1024;

/** What a writer tells the thread that reads its file back: more is on the device, or it is final. */
export type FollowUpdate = { path: string; written: number } | { path: string; finalSize: number } | { aborted: string };

/** The reading side of a followed file: updates come in as messages (see HashPool.follow). */
export class FollowState implements FollowedFile {
  path: string | undefined;
  written = 0;
  finalSize: number | undefined;
  aborted: Error | undefined;
  private waiters: { resolve: () => void; reject: (error: Error) => void }[] = [];

  update(update: FollowUpdate): void {
    if ('aborted' in update) this.aborted = new Error(update.aborted);
    else if ('finalSize' in update) {
      this.path = update.path;
      this.finalSize = update.finalSize;
    } else {
      this.path ??= update.path;
      this.written = Math.max(this.written, update.written);
    }
    for (const waiter of this.waiters.splice(0)) {
      if (this.aborted) waiter.reject(this.aborted);
      else waiter.resolve();
    }
  }

  changed(): Promise<void> {
    if (this.aborted) return Promise.reject(this.aborted);
    if (this.finalSize !== undefined) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

/** The writer's side of a file read back behind it (HashPool.follow). */
export interface Follower {
  /** `bytes` from the file's start (at `path`) are on the device. */
  written(path: string, bytes: number): void;
  /** The file is flushed and renamed to `path`, `size` bytes: the rest is read and the result given. */
  final(path: string, size: number): void;
  /** The file is gone (the copy failed or was stopped): the read-back stops and its result rejects. */
  abort(reason: string): void;
  result: Promise<HashOutcome>;
}

function copyShared(chunk: Buffer): Buffer {
  const copy = Buffer.from(new SharedArrayBuffer(chunk.length));
  chunk.copy(copy);
  return copy;
}

/**
 * How long close() waits for workers that were told to stop to close their files (each does within
 * one chunk's read; only a read stuck in the kernel on a failing device takes longer).
 */
const CLOSE_GRACE_MS = 10_000;

type PoolEntry = { job: HashJob; resolve: (outcome: HashOutcome) => void; reject: (error: Error) => void; onProgress?: (bytes: number) => void };

type WorkerMessage =
  | { id: number; progress?: number; result?: HashOutcome; error?: { message: string; code?: string } }
  | { stream: number; hashed?: true; sha256?: string; error?: { message: string } };

/**
 * sha256 of a stream of chunks, on a worker thread. The chunks must lie in shared memory (pool
 * blocks, see copy-io.ts): the worker hashes them where they are, and `update` resolves once it
 * has, after which the chunk's memory may be reused.
 */
export interface StreamHasher {
  update(chunk: Buffer): Promise<void>;
  digest(): Promise<string>;
}

interface HashStream {
  worker: Worker;
  /** Resolvers of updates the worker has not acknowledged yet, in order. */
  pending: { resolve: () => void; reject: (error: Error) => void }[];
  digest?: { resolve: (sha256: string) => void; reject: (error: Error) => void };
  failed?: Error;
}

export class HashPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: PoolEntry[] = [];
  private readonly running = new Map<number, PoolEntry>();
  /** Read-backs that follow a writer: they run beside a worker's other work, not in its turn. */
  private readonly following = new Map<number, { worker: Worker; entry: PoolEntry }>();
  private nextFollower = 0;
  private readonly streams = new Map<number, HashStream>();
  private readyWorkers = 0;
  /** Which job each busy worker is on. */
  private readonly busy = new Map<Worker, number>();
  private nextId = 1;
  private inThread = 0;
  /**
   * Whether the calling thread takes files too. A build turns it off while it copies (its main
   * thread is busy reading, scanning and writing; the read-back of finished files runs on the
   * workers beside it) and on again for the verify that follows.
   */
  private callerHashes = true;
  private closed = false;
  /** Workers that died: never handed work again. */
  private readonly dead = new Set<Worker>();
  /** Files hashed on a worker while the calling thread read and scanned them (see splitLargest). */
  private splitFiles = 0;
  private pumpScheduled = false;
  /** Stops the calling thread's files when the pool closes (see close). */
  private readonly stopping = new AbortController();
  /** The calling thread's files being read now. */
  private readonly hereReading = new Set<Promise<unknown>>();

  /** The calling thread's gate, for its share of the files and for anything else the caller scans. */
  readonly gate: () => Promise<Gate>;

  constructor(
    gateOptions: LeakGateOptions | undefined,
    workerCount = Math.max(0, Math.min(availableParallelism(), 4) - 1),
    private readonly signal?: AbortSignal,
  ) {
    this.gate = lazyGate(gateOptions);
    // Cancelled: every queued and running file fails at once with CancelledError, and the workers
    // are stopped mid-file (terminate) rather than left to finish their reads.
    signal?.addEventListener('abort', this.cancel, { once: true });
    const workerFile = fileURLToPath(new URL('./hash-worker.js', import.meta.url));
    if (existsSync(workerFile) && import.meta.url.endsWith('.js')) {
      for (let index = 0; index < workerCount; index += 1) {
        const worker = new Worker(workerFile, { workerData: { gate: gateOptions }, resourceLimits: WORKER_LIMITS });
        worker.on('message', (message: WorkerMessage | { ready: true } | { stopped: true }) => {
          if ('ready' in message) {
            this.readyWorkers += 1;
            return;
          }
          if ('stopped' in message) return; // see stopReading
          if ('stream' in message) {
            this.streamMessage(message);
            return;
          }
          const followed = this.following.get(message.id);
          if (followed) {
            if (message.progress !== undefined) followed.entry.onProgress?.(message.progress);
            else {
              this.following.delete(message.id);
              if (message.error) followed.entry.reject(Object.assign(new Error(message.error.message), { code: message.error.code }));
              else followed.entry.resolve(message.result!);
            }
            return;
          }
          const entry = this.running.get(message.id);
          if (!entry) return;
          if (message.progress !== undefined) {
            entry.onProgress?.(message.progress);
            return;
          }
          this.running.delete(message.id);
          this.busy.delete(worker);
          if (message.error) entry.reject(Object.assign(new Error(message.error.message), { code: message.error.code }));
          else entry.resolve(message.result!);
          this.idle.push(worker);
          this.pump();
        });
        // A worker that dies fails only the file it was on; the others and the calling thread go on.
        worker.on('error', (error) => {
          this.dead.add(worker);
          for (const [id, stream] of this.streams) if (stream.worker === worker) this.failStream(id, error);
          for (const [id, followed] of this.following) {
            if (followed.worker !== worker) continue;
            this.following.delete(id);
            followed.entry.reject(error);
          }
          const id = this.busy.get(worker);
          this.busy.delete(worker);
          const idleAt = this.idle.indexOf(worker);
          if (idleAt >= 0) this.idle.splice(idleAt, 1);
          if (id !== undefined) {
            const entry = this.running.get(id);
            this.running.delete(id);
            entry?.reject(error);
          }
          this.pump();
        });
        this.workers.push(worker);
        this.idle.push(worker);
      }
    }
  }

  private readonly cancel = (): void => {
    for (const id of [...this.streams.keys()]) this.failStream(id, new CancelledError());
    const entries = [...this.queue.splice(0), ...this.running.values(), ...[...this.following.values()].map((followed) => followed.entry)];
    this.running.clear();
    this.following.clear();
    this.busy.clear();
    this.idle.length = 0;
    for (const worker of this.workers) void worker.terminate();
    for (const entry of entries) entry.reject(new CancelledError());
  };

  run(job: Omit<HashJob, 'id'>, onProgress?: (bytes: number) => void): Promise<HashOutcome> {
    if (this.signal?.aborted) return Promise.reject(new CancelledError());
    return new Promise((resolve, reject) => {
      this.queue.push({ job: { ...job, id: this.nextId++ }, resolve, reject, onProgress });
      // Files queued in one go are all in the queue before any is handed out: whether the last one
      // is split (see pump) depends on there being no other.
      if (!this.pumpScheduled) {
        this.pumpScheduled = true;
        queueMicrotask(() => {
          this.pumpScheduled = false;
          this.pump();
        });
      }
    });
  }

  private pump(): void {
    if (this.closed) return;
    this.splitLargest();
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const entry = this.queue.shift()!;
      this.running.set(entry.job.id, entry);
      this.busy.set(worker, entry.job.id);
      worker.postMessage(entry.job);
    }
    // The calling thread is one of the hashers too: it has nothing else to do meanwhile, and one
    // isolate fewer keeps peak memory down.
    if (this.callerHashes && this.inThread === 0 && this.queue.length > 0) this.runHere(this.queue.shift()!);
  }

  /** Reads the file of `entry` on the calling thread (hashing it there, or on `hasher`'s worker). */
  private runHere(entry: PoolEntry, hasher?: StreamHasher): void {
    this.inThread += 1;
    const signal = this.signal ? AbortSignal.any([this.signal, this.stopping.signal]) : this.stopping.signal;
    const read = hashAndScanFile(entry.job, this.gate, entry.onProgress, signal, undefined, hasher)
      .then(entry.resolve, entry.reject)
      .finally(() => {
        this.inThread -= 1;
        this.hereReading.delete(read);
        this.pump();
      });
    this.hereReading.add(read);
  }

  /**
   * The calling thread takes the largest queued file and splits it with a worker when little else is
   * left to do (the other queued and running files hold less than half its bytes): it reads and
   * scans, the worker hashes the same chunks in shared memory between its own files. Otherwise one
   * thread would read, hash and scan that file alone while the others ran out of work.
   */
  private splitLargest(): void {
    if (!this.callerHashes || this.inThread > 0 || this.queue.length === 0) return;
    const helper = this.workers.find((worker) => !this.dead.has(worker) && this.idle.includes(worker)) ?? this.workers.find((worker) => !this.dead.has(worker));
    if (!helper) return;
    let largest = 0;
    for (let index = 1; index < this.queue.length; index += 1) if ((this.queue[index]!.job.size ?? 0) > (this.queue[largest]!.job.size ?? 0)) largest = index;
    const size = this.queue[largest]!.job.size ?? 0;
    if (size < SPLIT_MIN_BYTES) return;
    let rest = 0;
    for (const [index, entry] of this.queue.entries()) if (index !== largest) rest += entry.job.size ?? 0;
    for (const entry of this.running.values()) rest += entry.job.size ?? 0;
    if (rest * 2 >= size) return;
    this.splitFiles += 1;
    this.runHere(this.queue.splice(largest, 1)[0]!, this.streamOn(helper));
  }

  /**
   * Reads a file back behind its writer, on a worker thread (round robin, beside whatever that
   * worker is doing): the writer reports what is on the device as it goes, and the file's final
   * name and size once flushed and renamed. Undefined without workers (the caller reads the file
   * once it is final instead).
   */
  follow(job: Omit<HashJob, 'id' | 'file'>, onProgress?: (bytes: number) => void): Follower | undefined {
    // The first worker is the hasher's (see hasher); read-backs go to the others where there are any.
    const others = this.workers.length > 1 ? this.workers.slice(1) : this.workers;
    const worker = others[this.nextFollower++ % Math.max(others.length, 1)];
    if (!worker || this.signal?.aborted) return undefined;
    const id = this.nextId++;
    const send = (update: FollowUpdate) => {
      if (this.following.has(id)) worker.postMessage({ follow: id, update });
    };
    let entry: PoolEntry | undefined;
    const result = new Promise<HashOutcome>((resolve, reject) => {
      entry = { job: { ...job, file: '', id }, resolve, reject, onProgress };
    });
    this.following.set(id, { worker, entry: entry! });
    // A result may fail (the pool closed under it) before its caller attaches a handler: never unhandled.
    result.catch(() => undefined);
    worker.postMessage({ ...job, file: '', id, follow: true });
    return {
      written: (path, bytes) => send({ path, written: bytes }),
      final: (path, size) => send({ path, finalSize: size }),
      abort: (reason) => send({ aborted: reason }),
      result,
    };
  }

  /**
   * A sha256 of chunks in shared memory, computed on the first worker thread, so the calling
   * thread only reads, scans and writes. Undefined without workers.
   */
  hasher(): StreamHasher | undefined {
    const worker = this.workers[0];
    if (!worker || this.signal?.aborted) return undefined;
    return this.streamOn(worker);
  }

  private streamOn(worker: Worker): StreamHasher {
    const id = this.nextId++;
    const stream: HashStream = { worker, pending: [] };
    this.streams.set(id, stream);
    return {
      update: (chunk) => {
        // After a failure, what failed it (a dead worker, a cancel): not a generic cancel, which a
        // verify would take for the operator's Ctrl-C.
        if (stream.failed || !this.streams.has(id)) return Promise.reject(stream.failed ?? new CancelledError());
        return new Promise<void>((resolve, reject) => {
          stream.pending.push({ resolve, reject });
          // A chunk outside shared memory (not a pool block) is copied into some first.
          const shared = isShared(chunk) ? chunk : copyShared(chunk);
          worker.postMessage({ stream: id, memory: shared.buffer, offset: shared.byteOffset, length: shared.length });
        });
      },
      digest: () => {
        if (stream.failed || !this.streams.has(id)) return Promise.reject(stream.failed ?? new CancelledError());
        return new Promise<string>((resolve, reject) => {
          stream.digest = { resolve, reject };
          worker.postMessage({ stream: id, digest: true });
        });
      },
    };
  }

  private streamMessage(message: Extract<WorkerMessage, { stream: number }>): void {
    const stream = this.streams.get(message.stream);
    if (!stream) return;
    if (message.error) this.failStream(message.stream, new Error(message.error.message));
    else if (message.hashed) stream.pending.shift()?.resolve();
    else if (message.sha256 !== undefined) {
      this.streams.delete(message.stream);
      stream.digest?.resolve(message.sha256);
    }
  }

  private failStream(id: number, error: Error): void {
    const stream = this.streams.get(id);
    if (!stream) return;
    stream.failed = error;
    this.streams.delete(id);
    for (const waiter of stream.pending.splice(0)) waiter.reject(error);
    stream.digest?.reject(error);
  }

  /** Lets the calling thread take files (again), or not; see callerHashes. */
  setCallerHashes(on: boolean): void {
    this.callerHashes = on;
    this.pump();
  }

  /** Whether every worker thread has loaded its modules (work given earlier waits for them). */
  get ready(): boolean {
    return this.workers.length > 0 && this.readyWorkers >= this.workers.length;
  }

  /** How many files were split between the calling thread (reading, scanning) and a worker (hashing). */
  get split(): number {
    return this.splitFiles;
  }

  /** How many worker threads run. */
  get workerCount(): number {
    return this.workers.length;
  }

  /** Whether any worker thread runs (without one, files wait for the calling thread). */
  get hasWorkers(): boolean {
    return this.workers.length > 0;
  }

  /**
   * Stops the workers. Files still being read (a build that failed) are stopped first and the
   * workers given a moment to close them: the seed's filesystem may be unmounted next, and a
   * worker terminated mid-read would keep its file open, and the filesystem busy, for as long as
   * the process lives.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.cancel);
    const closedError = () => new Error('the build stopped');
    for (const entry of this.queue.splice(0)) entry.reject(closedError());
    this.stopping.abort();
    const reading = this.workers.filter((worker) => !this.dead.has(worker) && (this.busy.has(worker) || [...this.following.values()].some((followed) => followed.worker === worker)));
    if (reading.length > 0 || this.hereReading.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...reading.map((worker) => this.stopReading(worker)), ...this.hereReading]),
        new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
      ]);
      clearTimeout(timer);
    }
    await Promise.all(this.workers.map((worker) => worker.terminate()));
    // Whatever a stopped worker never answered fails now, rather than waiting for good.
    for (const id of [...this.streams.keys()]) this.failStream(id, closedError());
    const left = [...this.running.values(), ...[...this.following.values()].map((followed) => followed.entry)];
    this.running.clear();
    this.following.clear();
    for (const entry of left) entry.reject(closedError());
  }

  /** Tells `worker` to stop its files; resolves once it has closed them (or died). */
  private stopReading(worker: Worker): Promise<void> {
    return new Promise((resolve) => {
      const done = (message?: unknown) => {
        if (message !== undefined && !(typeof message === 'object' && message !== null && 'stopped' in message)) return;
        worker.off('message', done).off('error', settle).off('exit', settle);
        resolve();
      };
      const settle = () => done();
      worker.on('message', done).on('error', settle).on('exit', settle);
      worker.postMessage({ stop: true });
    });
  }
}
