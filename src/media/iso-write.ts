/**
 * Writes an installer image (a hybrid ISO) to the start of a whole disk and proves it by reading it
 * back: large chunks, fsync, the kernel's buffer cache for the device dropped (BLKFLSBUF through
 * `blockdev --flushbufs`) so the read-back comes from the medium, then sha256 compared.
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { CancelledError, VerificationError } from '../errors.js';
import { readFileChunks } from '../core/seed-writer.js';
import type { ProgressHook } from '../core/types.js';
import { run } from '../util/run.js';

const CHUNK = 4 * 1024 * 1024;
/** MBR partition entries 3 and 4 (bytes 478..509): where the seed partition is recorded. */
const SEED_ENTRY_START = 446 + 2 * 16;
const SEED_ENTRY_END = 510;

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of readFileChunks(file, CHUNK)) hash.update(chunk);
  return hash.digest('hex');
}

/**
 * sha256 of the first `length` bytes of `device`. With `isoHead` (the image's first sector), MBR
 * entries 3 and 4 are taken from the image: a seed partition added later does not make the
 * installer count as changed.
 */
export async function hashDeviceHead(device: string, length: number, isoHead?: Buffer, onBytes?: (bytes: number) => void): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(device, 'r');
  try {
    const buffer = Buffer.allocUnsafe(CHUNK);
    let position = 0;
    while (position < length) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(CHUNK, length - position), position);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      if (position === 0 && isoHead && bytesRead >= SEED_ENTRY_END && isoHead.length >= SEED_ENTRY_END) {
        isoHead.copy(chunk, SEED_ENTRY_START, SEED_ENTRY_START, SEED_ENTRY_END);
      }
      hash.update(chunk);
      position += bytesRead;
      onBytes?.(position);
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

async function readHead(file: string): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(512);
    await handle.read(buffer, 0, 512, 0);
    return buffer;
  } finally {
    await handle.close();
  }
}

export interface IsoWriteResult {
  bytes: number;
  sha256: string;
  /** False when the device already held exactly this image (then nothing was written). */
  written: boolean;
}

/** Writes `iso` to the start of `device` unless it is already there, then verifies it by reading back. */
export async function writeIso(device: string, iso: string, hooks: { onProgress?: ProgressHook; signal?: AbortSignal } = {}): Promise<IsoWriteResult> {
  const size = (await stat(iso)).size;
  const expected = await hashFile(iso);
  const head = await readHead(iso);
  if ((await hashDeviceHead(device, size, head)) === expected) return { bytes: size, sha256: expected, written: false };

  const handle = await open(device, 'r+');
  try {
    let position = 0;
    for await (const chunk of readFileChunks(iso, CHUNK)) {
      if (hooks.signal?.aborted) throw new CancelledError('Cancelled while writing the installer image: the stick does not boot now; run the same build again.');
      let offset = 0;
      while (offset < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset, position + offset);
        offset += bytesWritten;
      }
      position += chunk.length;
      hooks.onProgress?.({ phase: 'copy', bytes: position, total: size, path: iso });
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  await run('blockdev', ['--flushbufs', device], { cwd: '/', reject: false, timeout: 120_000 });
  const actual = await hashDeviceHead(device, size, undefined, (bytes) => hooks.onProgress?.({ phase: 'verify', bytes, total: size, path: iso }));
  if (actual !== expected) {
    throw new VerificationError(`The installer image read back from ${device} differs from ${iso}: the stick lost writes or is failing. Try another stick.`, [`expected sha256 ${expected}`, `actual   sha256 ${actual}`]);
  }
  return { bytes: size, sha256: expected, written: true };
}
