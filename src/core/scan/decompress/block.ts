/**
 * One compressed block decoded at once, as squashfs stores its data and metadata blocks (each block
 * compressed on its own, at most 1 MiB out): zlib (squashfs "gzip"), xz streams, zstd frames, raw LZ4
 * blocks, LZO1X blocks, LZMA-alone streams. The output is never larger than `maxOutput`: more is a
 * corrupt block.
 */
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { FormatError, type UnscannedReason } from '../formats/types.js';
import { zstdExports } from './zstd.js';
import { xzSharedInstance, XzStep } from './xz.js';
import { lz4DecodeBlock } from './lz4.js';
import { lzmaDecodeAll } from './lzma.js';
import { lzoDecodeBlock } from './lzo.js';

export type BlockCompression = 'zlib' | 'gzip' | 'xz' | 'lzma' | 'zstd' | 'lz4-block' | 'lzo';

const inflate = promisify(zlib.inflate);
const gunzip = promisify(zlib.gunzip);

function tooLarge(kind: string, maxOutput: number): FormatError {
  return new FormatError('corrupt', `${kind} block decodes to more than ${maxOutput} bytes`);
}

/**
 * Decodes one whole compressed block. Throws FormatError: 'corrupt' for damaged data or output over
 * `maxOutput`, 'truncated' when the block ends early.
 */
export async function decompressBlock(kind: BlockCompression, input: Buffer, maxOutput: number): Promise<Buffer> {
  switch (kind) {
    case 'zlib':
    case 'gzip':
      try {
        return await (kind === 'zlib' ? inflate : gunzip)(input, { maxOutputLength: Math.max(maxOutput, 1) });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(kind, maxOutput);
        throw new FormatError(code === 'Z_BUF_ERROR' ? 'truncated' : 'corrupt', `${kind} block: ${(error as Error).message}`);
      }
    case 'zstd':
      return zstdBlock(input, maxOutput);
    case 'xz':
      return xzBlock(input, maxOutput);
    case 'lz4-block':
      return lz4DecodeBlock(input, maxOutput);
    case 'lzma':
      return lzmaDecodeAll(input, maxOutput);
    case 'lzo':
      return lzoDecodeBlock(input, maxOutput);
  }
}

let zstdScratch: { input: number; inputSize: number; output: number; outputSize: number } | undefined;

type ZstdExports = Awaited<ReturnType<typeof zstdExports>>;

/**
 * Decodes a zstd block in the decoder's own memory: returns where its output lies there and its
 * length. Synchronous: the output area is shared, so it is read before anything else can decode.
 */
function zstdDecode(z: ZstdExports, input: Buffer, maxOutput: number): { at: number; length: number } {
  // One scratch input and output area, grown when needed and reused: blocks come by the thousand.
  if (!zstdScratch || zstdScratch.inputSize < input.length || zstdScratch.outputSize < maxOutput + 1) {
    if (zstdScratch) {
      z.free(zstdScratch.input);
      z.free(zstdScratch.output);
    }
    const inputSize = Math.max(input.length, 1 << 20);
    const outputSize = Math.max(maxOutput + 1, 1 << 20);
    zstdScratch = { input: z.malloc(inputSize), inputSize, output: z.malloc(outputSize), outputSize };
    if (!zstdScratch.input || !zstdScratch.output) {
      zstdScratch = undefined;
      throw new FormatError('corrupt', 'zstd: out of memory');
    }
  }
  const { input: inPtr, output: outPtr } = zstdScratch;
  new Uint8Array(z.memory.buffer, inPtr, input.length).set(input);
  // Room for one byte more than allowed: filling it means the block is too large.
  const ret = z.ZSTD_decompress(outPtr, maxOutput + 1, inPtr, input.length);
  if (ret < 0 || ret > 0xffffff80) {
    const code = ret < 0 ? -ret : 0x100000000 - ret;
    if (code === 70) throw tooLarge('zstd', maxOutput);
    if (code === 72) throw new FormatError('truncated', 'zstd block ends early');
    throw new FormatError('corrupt', `zstd block: error ${code}`);
  }
  if (ret > maxOutput) throw tooLarge('zstd', maxOutput);
  return { at: outPtr, length: ret };
}

async function zstdBlock(input: Buffer, maxOutput: number): Promise<Buffer> {
  const z = await zstdExports();
  const { at, length } = zstdDecode(z, input, maxOutput);
  return Buffer.from(new Uint8Array(z.memory.buffer, at, length));
}

/**
 * decompressBlock into `target` at `at`, written only when the block decodes to exactly `expected`
 * bytes; returns the length it decodes to. A zstd block is copied straight from the decoder's memory
 * (a member's blocks are not each made a buffer of their own first: on an image that is GBs).
 */
export async function decompressBlockInto(kind: BlockCompression, input: Buffer, maxOutput: number, target: Buffer, at: number, expected: number): Promise<number> {
  if (kind === 'zstd') {
    const z = await zstdExports();
    const { at: from, length } = zstdDecode(z, input, maxOutput);
    if (length === expected) target.set(new Uint8Array(z.memory.buffer, from, length), at);
    return length;
  }
  const output = await decompressBlock(kind, input, maxOutput);
  if (output.length === expected) output.copy(target, at);
  return output.length;
}

async function xzBlock(input: Buffer, maxOutput: number): Promise<Buffer> {
  const step = new XzStep(await xzSharedInstance());
  const parts: Buffer[] = [];
  let total = 0;
  try {
    let rest = input;
    for (;;) {
      const result = step.step(rest, rest.length === 0);
      rest = rest.subarray(result.used);
      if (result.output) {
        total += result.output.length;
        if (total > maxOutput) throw tooLarge('xz', maxOutput);
        parts.push(result.output);
      }
      if (result.done) break;
      // The whole block was given at once: a decoder that wants more has a cut block.
      if (result.used === 0 && !result.busy && !result.output) throw new FormatError('truncated', 'xz block ends early');
    }
  } finally {
    step.dispose();
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
}

/** What a worker sends back for a block: its output, or why it could not be decoded. */
export interface BlockReply {
  id: number;
  output?: ArrayBuffer;
  error?: { reason: UnscannedReason; message: string };
}

/** An error as a worker reports it: a FormatError's reason, anything else `corrupt`. */
export function failureOf(error: unknown): { reason: UnscannedReason; message: string } {
  return { reason: error instanceof FormatError ? error.reason : 'corrupt', message: (error as Error)?.message ?? String(error) };
}

/**
 * Decodes a block sent to a worker thread (see decompressBlock) and makes the reply to post back,
 * with what to transfer: the output's own memory when it owns all of it, else a copy of its bytes.
 */
export async function blockReply(id: number, kind: BlockCompression, input: ArrayBuffer, maxOutput: number): Promise<{ reply: BlockReply; transfer: ArrayBuffer[] }> {
  try {
    const output = await decompressBlock(kind, Buffer.from(input), maxOutput);
    const owned = output.byteOffset === 0 && output.byteLength === output.buffer.byteLength && output.buffer instanceof ArrayBuffer;
    const buffer = owned ? (output.buffer as ArrayBuffer) : (output.buffer.slice(output.byteOffset, output.byteOffset + output.byteLength) as ArrayBuffer);
    return { reply: { id, output: buffer }, transfer: [buffer] };
  } catch (error) {
    return { reply: { id, error: failureOf(error) }, transfer: [] };
  }
}
