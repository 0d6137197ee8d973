/**
 * The walk of a large container file (an installer image above all) on a thread of its own, whose
 * V8 heap is bounded where the main thread's cannot be (its limits are fixed when the process
 * starts). Walking an image allocates at a high rate (tables, read windows, one small record per
 * member); on the main thread V8 grew the young generation to its default maximum (32 MB) and the
 * heap to 137 MB on the bench image; a worker's young generation is set when it starts
 * (`resourceLimits`), and the walk's heap there peaked at about 60 MB. The main thread only waits
 * for the result, which is the very one `scanLargeFile` gives there (the same function runs); if the
 * thread cannot start or stops without answering, the walk runs here instead. Only cancellation throws.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isMainThread, Worker } from 'node:worker_threads';
import { CancelledError } from '../../../errors.js';
import type { FileResult, FileTarget, ScanEnvironment } from '../file-scanner.js';
import { workerExecArgv } from '../decompress/pool.js';
import { detectFormat, HEAD_BYTES } from '../formats/index.js';
import { FileSource } from './byte-source.js';
import { scanLargeFile, type WalkProgress } from './container-walker.js';

/**
 * The walk thread's young generation (2 MB semi-spaces). On the main thread, 2 MB semi-spaces cost no
 * more CPU than V8's default 16 MB; 1 MB cost 25% more.
 */
export const WALK_YOUNG_GENERATION_MB = 6;
/** Progress is posted at most this often (an image has tens of thousands of members). */
const PROGRESS_EVERY_MS = 100;

/** What the walk thread is given. */
export interface WalkInput {
  environment: ScanEnvironment;
  target: FileTarget;
  file: string;
  size: number;
  progress: boolean;
  /** Marks the thread as the one an image is walked on: it may start the member pool. */
  walkThread: true;
}

export type WalkMessage =
  | { type: 'progress'; progress: WalkProgress }
  | { type: 'done'; result: FileResult }
  | { type: 'cancelled' }
  | { type: 'failed'; message: string };

function workerUrl(): URL | undefined {
  const url = new URL('./walk-worker.js', import.meta.url);
  return url.protocol === 'file:' && existsSync(fileURLToPath(url)) ? url : undefined;
}

/** True when `file` starts like a container worth a thread of its own (not a model shard read in place). */
async function walksContainer(file: string): Promise<boolean> {
  const source = await FileSource.open(file);
  try {
    const format = detectFormat(await source.read(0, HEAD_BYTES), source.size);
    return format !== undefined && !format.inPlaceOnly;
  } finally {
    await source.close();
  }
}

/**
 * `scanLargeFile` (see there) on a walk thread when the file is a container and built workers are to
 * be had (not from TypeScript sources, not from a worker): same arguments, same result.
 */
export async function scanLargeFileOnThread(
  environment: ScanEnvironment,
  target: FileTarget,
  file: string,
  size: number,
  signal?: AbortSignal,
  onProgress?: (progress: WalkProgress) => void,
): Promise<FileResult> {
  const url = workerUrl();
  let threaded = false;
  try {
    threaded = url !== undefined && isMainThread && environment.walkThread !== false && (await walksContainer(file));
  } catch {
    // Unreadable here: scanLargeFile reports it as it would.
  }
  if (!threaded) return scanLargeFile(environment, target, file, size, signal, onProgress);
  if (signal?.aborted) throw new CancelledError('Scan cancelled.');
  const answer = await new Promise<WalkMessage | undefined>((resolve) => {
    const input: WalkInput = { environment, target, file, size, progress: onProgress !== undefined, walkThread: true };
    let worker: Worker;
    try {
      worker = new Worker(url!, { workerData: input, execArgv: workerExecArgv(), resourceLimits: { maxYoungGenerationSizeMb: WALK_YOUNG_GENERATION_MB } });
    } catch {
      resolve(undefined);
      return;
    }
    let settled = false;
    const settle = (message: WalkMessage | undefined) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', cancel);
      resolve(message);
      // It has answered (or is being given up on): nothing of it is needed any more.
      void worker.terminate().catch(() => undefined);
    };
    // Cancelling lets the walk unwind (its member threads and spools are closed on the way out).
    const cancel = () => worker.postMessage('cancel');
    signal?.addEventListener('abort', cancel, { once: true });
    worker.on('message', (message: WalkMessage) => {
      if (message.type === 'progress') onProgress?.(message.progress);
      else settle(message);
    });
    worker.on('error', () => settle(undefined));
    worker.on('exit', () => settle(undefined));
  });
  if (answer?.type === 'done') return answer.result;
  if (answer?.type === 'cancelled' || signal?.aborted) throw new CancelledError('Scan cancelled.');
  // The thread failed to start or stopped without a result: the walk runs here, as it would have.
  return scanLargeFile(environment, target, file, size, signal, onProgress);
}

export { PROGRESS_EVERY_MS };
