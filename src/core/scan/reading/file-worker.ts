/**
 * A worker thread of `scanTasks`: claims batches of the walk from shared memory, scans them with the
 * same code as the main thread, and posts each batch's non-empty results back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BATCH, runLane, type BatchMessage, type WorkerInput, type WorkerTasks } from './file-pool.js';
import { isNothing, type FileTask } from './file-task.js';

const input = workerData as WorkerInput;
const share = await new Promise<WorkerTasks>((resolve) => parentPort!.once('message', resolve));
const full = share.full.split('\0');
const reported = share.reported.split('\0');
const tasks: FileTask[] = full.map((item, index) => ({ full: item, reported: reported[index]!, sopsGoverned: share.governed[index] === 1 }));

await runLane(tasks, new Int32Array(share.owners), input.me, input.environment, (batch, outcomes) => {
  const message: BatchMessage = { type: 'batch', batch, bytes: 0, results: [] };
  outcomes.forEach((outcome, offset) => {
    message.bytes += outcome.bytes;
    if (!isNothing(outcome.result)) message.results.push([batch * BATCH + offset, outcome.result]);
  });
  parentPort!.postMessage(message);
});
parentPort!.postMessage({ type: 'done' });
