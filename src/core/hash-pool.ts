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
import { readThrough, type CacheBypass } from './read-direct.js';
import { createLeakGate, type Gate, type LeakGateOptions } from './scan/index.js';
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
  return () => (gate ??= createLeakGate(options));
}

/** One pass over the file: sha256 and (optionally) the leak scanner. */
export async function hashAndScanFile(job: HashJob, gate: () => Promise<Gate>, onProgress?: (bytes: number) => void, signal?: AbortSignal): Promise<HashOutcome> {
  const hash = createHash('sha256');
  let scanner: ReturnType<Gate['open']> | undefined;
  if (job.scan) scanner = (await gate()).open({ path: job.relPath, size: job.size });
  const { size, bypass } = await readThrough(job.file, job.bypassCache, (chunk) => {
    // Checked per chunk (2 MiB): a cancelled verify stops within one read, whatever the file's size.
    if (signal?.aborted) throw new CancelledError();
    hash.update(chunk);
    scanner?.update(chunk);
    onProgress?.(chunk.length);
  });
  const findings = scanner ? await scanner.finish() : [];
  return { size, sha256: hash.digest('hex'), bypass, findings };
}

export class HashPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { job: HashJob; resolve: (outcome: HashOutcome) => void; reject: (error: Error) => void; onProgress?: (bytes: number) => void }[] = [];
  private readonly running = new Map<number, (typeof this.queue)[number]>();
  /** Which job each busy worker is on. */
  private readonly busy = new Map<Worker, number>();
  private nextId = 1;
  private inThread = 0;

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
        worker.on('message', (message: { id: number; progress?: number; result?: HashOutcome; error?: { message: string; code?: string } }) => {
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
    const entries = [...this.queue.splice(0), ...this.running.values()];
    this.running.clear();
    this.busy.clear();
    this.idle.length = 0;
    for (const worker of this.workers) void worker.terminate();
    for (const entry of entries) entry.reject(new CancelledError());
  };

  run(job: Omit<HashJob, 'id'>, onProgress?: (bytes: number) => void): Promise<HashOutcome> {
    if (this.signal?.aborted) return Promise.reject(new CancelledError());
    return new Promise((resolve, reject) => {
      this.queue.push({ job: { ...job, id: this.nextId++ }, resolve, reject, onProgress });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const entry = this.queue.shift()!;
      this.running.set(entry.job.id, entry);
      this.busy.set(worker, entry.job.id);
      worker.postMessage(entry.job);
    }
    // The calling thread is one of the hashers too: it has nothing else to do meanwhile, and one
    // isolate fewer keeps peak memory down.
    if (this.inThread === 0 && this.queue.length > 0) {
      const entry = this.queue.shift()!;
      this.inThread += 1;
      hashAndScanFile(entry.job, this.gate, entry.onProgress, this.signal)
        .then(entry.resolve, entry.reject)
        .finally(() => {
          this.inThread -= 1;
          this.pump();
        });
    }
  }

  async close(): Promise<void> {
    this.signal?.removeEventListener('abort', this.cancel);
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}
