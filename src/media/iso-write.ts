/**
 * Writes an installer image (a hybrid ISO) to the start of a whole disk and proves it by reading it
 * back: large chunks, fsync, the kernel's buffer cache for the device dropped (BLKFLSBUF through
 * `blockdev --flushbufs`) so the read-back comes from the medium, then sha256 compared.
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { CancelledError, VerificationError } from '../errors.js';
import { readFileChunks } from '../core/seed-writer.js';
import type { ManifestInstaller } from '../core/manifest.js';
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

const DESCRIPTORS_START = 16 * 2048;
const HEAD = 64 * 1024;
/** MBR entries 3 and 4 read as zeros: the seed partition added beside the image does not change its digest. */
const ZERO_SEED_ENTRIES = Buffer.alloc(512);

/**
 * The ISO 9660 image at the start of `disk` (a whole disk or a whole-disk image file): its volume id
 * and length from the primary volume descriptor (volume space size × logical block size), or
 * undefined when the disk does not start with an ISO.
 */
export async function readInstallerVolume(disk: string): Promise<{ volumeId: string; length: number } | undefined> {
  const handle = await open(disk, 'r');
  let head: Buffer;
  try {
    head = Buffer.alloc(HEAD);
    const { bytesRead } = await handle.read(head, 0, HEAD, 0);
    head = head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  for (let offset = DESCRIPTORS_START; offset + 2048 <= head.length; offset += 2048) {
    const type = head[offset];
    if (head.toString('latin1', offset + 1, offset + 6) !== 'CD001' || type === 255) return undefined;
    if (type !== 1) continue;
    const length = head.readUInt32LE(offset + 80) * head.readUInt16LE(offset + 128);
    return length > 0 ? { volumeId: head.toString('latin1', offset + 40, offset + 72).trim(), length } : undefined;
  }
  return undefined;
}

/** sha256 of the installer region of `disk` (`length` bytes from 0, MBR entries 3 and 4 read as zeros): what the manifest records. */
export function installerRegionSha256(disk: string, length: number, onBytes?: (bytes: number) => void): Promise<string> {
  return hashDeviceHead(disk, length, ZERO_SEED_ENTRIES, onBytes);
}

/** The manifest's record of the installer image at the start of `disk`, or undefined when there is none. */
export async function recordInstaller(disk: string, onBytes?: (bytes: number) => void): Promise<ManifestInstaller | undefined> {
  const volume = await readInstallerVolume(disk);
  if (!volume) return undefined;
  return { ...volume, sha256: await installerRegionSha256(disk, volume.length, onBytes) };
}
