/**
 * A worker of the member pool (member-pool.ts): decodes single blocks for the main thread, and
 * decodes and scans batches of members from their compressed parts, answering with each member's
 * result (null when it is one clean file). Members are scanned one after another in the order they
 * came, so one buffer holds the member being scanned, and the fragment cache stays in step with the
 * pool's mirror of it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { blockReply, failureOf } from '../decompress/block.js';
import type { FileResult, ScanEnvironment } from '../file-scanner.js';
import type { PoolMessage, PoolReply } from './member-pool.js';
import { MemberScanner } from './member-scan.js';

const environment = (workerData as { environment: ScanEnvironment }).environment;

const members = new MemberScanner(environment);
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
    for (const job of message.jobs) results.push(await members.scan(job, bytes));
    parentPort!.postMessage({ id: message.id, results } satisfies PoolReply);
  } catch (error) {
    parentPort!.postMessage({ id: message.id, error: failureOf(error) } satisfies PoolReply);
  }
}
