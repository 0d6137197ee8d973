/**
 * Worker thread for verify: reads a file once (bypassing the page cache), hashes it and runs the
 * leak scanner over the same bytes. The pool in hash-pool.ts runs one per core.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FollowState, hashAndScanFile, lazyGate, type FollowUpdate, type HashJob } from './hash-pool.js';
import type { LeakGateOptions } from './scan/index.js';

const options = workerData as { gate?: LeakGateOptions };
const gate = lazyGate(options.gate);

/** Files read back behind their writer (HashPool.follow), by job id. */
const followed = new Map<number, FollowState>();

parentPort!.on('message', (message: (HashJob & { follow?: true }) | { follow: number; update: FollowUpdate }) => {
  if (typeof message.follow === 'number') {
    followed.get(message.follow)?.update((message as { update: FollowUpdate }).update);
    return;
  }
  const job = message as HashJob & { follow?: true };
  const follow = job.follow ? new FollowState() : undefined;
  if (follow) followed.set(job.id, follow);
  hashAndScanFile(job, gate, (bytes) => parentPort!.postMessage({ id: job.id, progress: bytes }), undefined, follow)
    .finally(() => followed.delete(job.id))
    .then(
    (result) => parentPort!.postMessage({ id: job.id, result }),
    (error: NodeJS.ErrnoException) => parentPort!.postMessage({ id: job.id, error: { message: error.message, code: error.code } }),
  );
});
