/**
 * The walk thread (walk-thread.ts): runs `scanLargeFile` on one file and posts its result back, with
 * its progress at most every PROGRESS_EVERY_MS. A 'cancel' message aborts the walk, which unwinds
 * as on the main thread (member threads ended, spools removed) and answers 'cancelled'.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CancelledError } from '../../../errors.js';
import { scanLargeFile, type WalkProgress } from './container-walker.js';
import { PROGRESS_EVERY_MS, type WalkInput, type WalkMessage } from './walk-thread.js';

const input = workerData as WalkInput;
const controller = new AbortController();
parentPort!.on('message', (message: unknown) => {
  if (message === 'cancel') controller.abort();
});

let last = 0;
let timer: NodeJS.Timeout | undefined;
let latest: WalkProgress | undefined;
const post = (message: WalkMessage) => parentPort!.postMessage(message);
const sendLatest = () => {
  timer = undefined;
  last = Date.now();
  if (latest) post({ type: 'progress', progress: latest });
  latest = undefined;
};
const onProgress = (progress: WalkProgress) => {
  latest = progress;
  if (timer) return;
  const wait = PROGRESS_EVERY_MS - (Date.now() - last);
  if (wait <= 0) sendLatest();
  else timer = setTimeout(sendLatest, wait);
};

try {
  const result = await scanLargeFile(input.environment, input.target, input.file, input.size, controller.signal, input.progress ? onProgress : undefined);
  if (timer) clearTimeout(timer);
  post({ type: 'done', result });
} catch (error) {
  if (timer) clearTimeout(timer);
  post(error instanceof CancelledError ? { type: 'cancelled' } : { type: 'failed', message: (error as Error)?.message ?? String(error) });
}
