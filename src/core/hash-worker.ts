/**
 * Worker thread for verify: reads a file once (bypassing the page cache), hashes it and runs the
 * leak scanner over the same bytes. The pool in hash-pool.ts runs one per core.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { hashAndScanFile, lazyGate, type HashJob } from './hash-pool.js';
import type { LeakGateOptions } from './scan/index.js';

const options = workerData as { gate?: LeakGateOptions };
const gate = lazyGate(options.gate);

parentPort!.on('message', (job: HashJob) => {
  hashAndScanFile(job, gate, (bytes) => parentPort!.postMessage({ id: job.id, progress: bytes })).then(
    (result) => parentPort!.postMessage({ id: job.id, result }),
    (error: NodeJS.ErrnoException) => parentPort!.postMessage({ id: job.id, error: { message: error.message, code: error.code } }),
  );
});
