/**
 * A worker of the member pool (member-pool.ts): decodes single blocks for the main thread, and
 * decodes and scans batches of members from their compressed parts, answering with each member's
 * result (null when it is one clean file). Members are scanned one after another in the order they
 * came, so one buffer holds the member being scanned, and the fragment cache stays in step with the
 * pool's mirror of it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { blockReply, decompressBlock, decompressBlockInto, failureOf } from '../decompress/block.js';
import { FileScanner, type FileResult, type ScanEnvironment } from '../file-scanner.js';
import { FormatError } from '../formats/types.js';
import { isNothing } from './file-task.js';
import { FRAGMENT_SLOTS, type PoolMessage, type PoolReply, type WireJob } from './member-pool.js';
import { unscannedFinding } from './unscanned.js';

const environment = (workerData as { environment: ScanEnvironment }).environment;

/** Decoded fragments by key, oldest first: the same sequence of uses as the pool's mirror. */
const fragments = new Map<string, Buffer | FormatError>();
/** The member being scanned; grown as needed, reused for the next. */
let scratch = Buffer.allocUnsafe(1024 * 1024);
/** Messages run one after another: a batch's members share the scratch buffer and the cache. */
let queue: Promise<void> = Promise.resolve();

parentPort!.on('message', (message: PoolMessage) => {
  queue = queue.then(() => handle(message));
});

async function handle(message: PoolMessage): Promise<void> {
  if (message.type === 'block') {
    const { reply, transfer } = await blockReply(message.id, message.kind, message.input, message.maxOutput);
    parentPort!.postMessage(reply, transfer);
    return;
  }
  const results: (FileResult | string | null)[] = [];
  try {
    const bytes = Buffer.from(message.bytes);
    for (const job of message.jobs) results.push(await scanJob(job, bytes));
    parentPort!.postMessage({ id: message.id, results } satisfies PoolReply);
  } catch (error) {
    parentPort!.postMessage({ id: message.id, error: failureOf(error) } satisfies PoolReply);
  }
}

/** The decoded fragment `key`, decoding it when its stored bytes came along; cache kept in step with the pool. */
async function fragment(job: WireJob, part: Extract<WireJob['parts'][number], { type: 'fragment' }>, bytes: Buffer): Promise<Buffer> {
  let held = fragments.get(part.key);
  if (part.at === null) {
    if (held === undefined) throw new Error(`member scan thread: fragment ${part.key} was not sent`);
    fragments.delete(part.key);
  } else {
    const stored = bytes.subarray(part.at, part.at + part.stored);
    try {
      // A decoded block is a buffer of its own already; stored bytes are copied out of the batch's.
      held = part.compressed ? await decompressBlock(job.compression, stored, job.maxBlock) : Buffer.from(stored);
    } catch (error) {
      held = error instanceof FormatError ? error : new FormatError('corrupt', (error as Error).message);
    }
    if (fragments.size >= FRAGMENT_SLOTS) fragments.delete(fragments.keys().next().value!);
  }
  fragments.set(part.key, held);
  if (held instanceof FormatError) throw new FormatError(held.reason, `squashfs: fragment ${part.key.split(':').pop()} does not decompress: ${held.message}`);
  if (part.offset + part.length > held.length) throw new FormatError('corrupt', `squashfs: a file's tail lies outside fragment ${part.key.split(':').pop()}`);
  return held.subarray(part.offset, part.offset + part.length);
}

/** Decodes one member into the scratch buffer and scans it; a part that does not decode is `unscanned`. */
async function scanJob(job: WireJob, bytes: Buffer): Promise<FileResult | string | null> {
  let size = 0;
  for (const part of job.parts) size += part.length;
  if (scratch.length < size) scratch = Buffer.allocUnsafe(Math.max(size, scratch.length * 2));
  let filled = 0;
  let broken: FormatError | undefined;
  // Every fragment part is looked at, even after a broken block: the cache must stay in step.
  for (const part of job.parts) {
    try {
      if (part.type === 'sparse') {
        if (!broken) scratch.fill(0, filled, filled + part.length);
      } else if (part.type === 'fragment') {
        const tail = await fragment(job, part, bytes);
        if (!broken) tail.copy(scratch, filled);
      } else if (!broken) {
        const stored = bytes.subarray(part.at, part.at + part.stored);
        // Decoded straight into the member's buffer (written only when the length is right).
        let length = stored.length;
        if (part.compressed) length = await decompressBlockInto(job.compression, stored, job.maxBlock, scratch, filled, part.length);
        else if (length === part.length) stored.copy(scratch, filled);
        if (length !== part.length) throw new FormatError('corrupt', `squashfs: a data block holds ${length} bytes where ${part.length} belong`);
      }
    } catch (error) {
      broken ??= error instanceof FormatError ? error : new FormatError('corrupt', (error as Error).message);
    }
    if (!broken) filled += part.length;
  }
  const scanner = new FileScanner({ ...environment, limits: { ...environment.limits, ...job.limits } }, job.target);
  const pending = scanner.scanOwned(scratch.subarray(0, filled));
  const result = pending instanceof Promise ? await pending : pending;
  if (broken) {
    // As the walker reports a member whose stream broke: what was read is scanned, the rest is unscanned.
    const message = broken.message.startsWith('squashfs:') ? broken.message : `squashfs: ${broken.message}`;
    result.findings.push(unscannedFinding(job.target, broken.reason, message));
  }
  if (result.unencrypted && result.findings.length === 0 && result.problems.length === 0 && result.sopsConfigs.length === 0 && result.files === 1) {
    // Clean, with only the fingerprint a `.sops.yaml` among its siblings may ask for: sent as that.
    return result.unencrypted.fingerprint;
  }
  return isNothing(result) ? null : result;
}
