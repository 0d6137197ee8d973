/** Worker side of the block pool (pool.ts): decodes blocks it is sent and transfers the output back. */
import { parentPort } from 'node:worker_threads';
import { blockReply, type BlockCompression } from './block.js';

interface Task {
  id: number;
  kind: BlockCompression;
  input: ArrayBuffer;
  maxOutput: number;
}

parentPort?.on('message', (task: Task) => {
  void blockReply(task.id, task.kind, task.input, task.maxOutput).then(({ reply, transfer }) => parentPort!.postMessage(reply, transfer));
});
