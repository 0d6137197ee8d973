/**
 * A worker of the member pool: scans batches of held container members with FileScanner.scanOwned
 * (every rule, `finalize`, and the containers inside, as the walker's held path) and posts their
 * results back (null when clean).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FileScanner, type ScanEnvironment } from '../file-scanner.js';
import { isNothing } from './file-task.js';
import type { MemberBatch, MemberReply } from './member-pool.js';

const environment = (workerData as { environment: ScanEnvironment }).environment;

parentPort!.on('message', (batch: MemberBatch) => {
  void scanBatch(batch).then((reply) => parentPort!.postMessage(reply));
});

async function scanBatch(batch: MemberBatch): Promise<MemberReply> {
  const reply: MemberReply = { id: batch.id };
  try {
    const results: MemberReply['results'] = [];
    let start = 0;
    for (const [index, target] of batch.targets.entries()) {
      const end = batch.ends[index]!;
      const content = Buffer.from(batch.bytes, start, end - start);
      start = end;
      const limits = batch.limits[index];
      // A member that is a container is unpacked here (the walker's held path: every rule, then its
      // insides), within what was left of the image walk's limits when it was handed over.
      const scanner = new FileScanner(limits ? { ...environment, limits } : environment, target);
      const pending = scanner.scanOwned(content);
      const result = pending instanceof Promise ? await pending : pending;
      results.push(isNothing(result) ? null : result);
    }
    reply.results = results;
  } catch (error) {
    reply.error = (error as Error)?.message ?? String(error);
  }
  return reply;
}
