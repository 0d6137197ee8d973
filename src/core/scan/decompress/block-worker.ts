/** Worker side of the block pool (pool.ts): decodes blocks it is sent and transfers the output back. */
import { parentPort } from 'node:worker_threads';
import { FormatError } from '../formats/types.js';
import { decompressBlock, type BlockCompression } from './block.js';

interface Task {
  id: number;
  kind: BlockCompression;
  input: ArrayBuffer;
  maxOutput: number;
}

parentPort?.on('message', (task: Task) => {
  decompressBlock(task.kind, Buffer.from(task.input), task.maxOutput).then(
    (output) => {
      const owned = output.byteOffset === 0 && output.byteLength === output.buffer.byteLength && output.buffer instanceof ArrayBuffer;
      const buffer = owned ? (output.buffer as ArrayBuffer) : output.buffer.slice(output.byteOffset, output.byteOffset + output.byteLength);
      parentPort!.postMessage({ id: task.id, output: buffer }, [buffer as ArrayBuffer]);
    },
    (error: unknown) => {
      const reason = error instanceof FormatError ? error.reason : 'corrupt';
      parentPort!.postMessage({ id: task.id, error: { reason, message: (error as Error).message ?? String(error) } });
    },
  );
});
