/**
 * Worker thread for verify: reads a file once (bypassing the page cache), hashes it and runs the
 * leak scanner over the same bytes. The pool in hash-pool.ts runs one per core. In a build it
 * also reads files back behind the copy, and hashes the copy's chunks in the copy's shared blocks.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { CancelledError } from '../errors.js';
import { FollowState, hashAndScanFile, lazyGate, type FollowUpdate, type HashJob } from './hash-pool.js';
import type { LeakGateOptions } from './scan/index.js';

const options = workerData as { gate?: LeakGateOptions };
const gate = lazyGate(options.gate);

/** Files read back behind their writer (HashPool.follow), by job id. */
const followed = new Map<number, FollowState>();

/**
 * Stops every file this thread reads (HashPool.close after a failed build): each closes its file
 * within one chunk, so the seed's filesystem can be unmounted once the pool is told they are done.
 * A worker terminated mid-read would leave its file open for as long as the process lives.
 */
const stopping = new AbortController();
/** The files being read now, settled or not. */
const reading = new Set<Promise<unknown>>();

function stop(): void {
  for (const follow of followed.values()) follow.update({ aborted: 'the build stopped' });
  stopping.abort();
  void Promise.allSettled([...reading]).then(() => parentPort!.postMessage({ stopped: true }));
}

/** sha256 streams of chunks in the caller's shared memory (HashPool.hasher), by id. */
const streams = new Map<number, Hash>();

type StreamMessage = { stream: number; memory?: SharedArrayBuffer; offset?: number; length?: number; digest?: true };

function onStream(message: StreamMessage): void {
  let hash = streams.get(message.stream);
  if (!hash) streams.set(message.stream, (hash = createHash('sha256')));
  try {
    if (message.digest) {
      streams.delete(message.stream);
      parentPort!.postMessage({ stream: message.stream, sha256: hash.digest('hex') });
      return;
    }
    hash.update(Buffer.from(message.memory!, message.offset!, message.length!));
    parentPort!.postMessage({ stream: message.stream, hashed: true });
  } catch (error) {
    streams.delete(message.stream);
    parentPort!.postMessage({ stream: message.stream, error: { message: (error as Error).message } });
  }
}

parentPort!.on('message', (message: (HashJob & { follow?: true }) | { follow: number; update: FollowUpdate } | StreamMessage | { stop: true }) => {
  if ('stop' in message) {
    stop();
    return;
  }
  if ('stream' in message) {
    onStream(message);
    return;
  }
  if (typeof message.follow === 'number') {
    followed.get(message.follow)?.update((message as { update: FollowUpdate }).update);
    return;
  }
  const job = message as HashJob & { follow?: true };
  const follow = job.follow ? new FollowState() : undefined;
  if (follow) followed.set(job.id, follow);
  if (stopping.signal.aborted) follow?.update({ aborted: 'the build stopped' });
  const read = hashAndScanFile(job, gate, (bytes) => parentPort!.postMessage({ id: job.id, progress: bytes }), stopping.signal, follow);
  reading.add(read);
  read
    .finally(() => {
      followed.delete(job.id);
      reading.delete(read);
    })
    .then(
      (result) => parentPort!.postMessage({ id: job.id, result }),
      (error: NodeJS.ErrnoException) =>
        parentPort!.postMessage({ id: job.id, error: { message: error instanceof CancelledError && stopping.signal.aborted ? 'the build stopped' : error.message, code: error.code } }),
    );
});

// Modules loaded: the pool hands this thread work that cannot wait (the copy's hashing) from now on.
parentPort!.postMessage({ ready: true });
// A pool given leak-gate options scans what it reads: the rules load now, while the caller is still
// reading the manifest and walking the media, not when the first file arrives. A failure to load
// them is reported by the first file that needs them.
if (options.gate) gate().catch(() => undefined);
