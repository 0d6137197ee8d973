/**
 * Sizes for seed partitions and partition images: parsing `--size`, estimating what a seed needs
 * before anything is written, and the filesystem overhead a fresh partition loses to metadata.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import type { BuildOptions } from '../core/build-seed.js';
import { resolveModelBundle } from '../core/model-bundle.js';
import { estimateArchiveBytes, planSourceArchive } from '../core/source-archive.js';
import { onDisk } from '../core/target.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

const units: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: MiB,
  mib: MiB,
  mb: 1000 ** 2,
  g: GiB,
  gib: GiB,
  gb: 1000 ** 3,
  t: 1024 * GiB,
  tib: 1024 * GiB,
  tb: 1000 ** 4,
};

/**
 * Parses a size as truncate(1) does: `512M`, `1G`, `1GiB` are binary, `1GB` decimal, a bare
 * number is bytes. Throws UsageError naming `flag` otherwise.
 */
export function parseSize(text: string, flag = '--size'): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const factor = match ? units[(match[2] ?? '').toLowerCase()] : undefined;
  if (!match || factor === undefined) {
    throw new UsageError(`${flag} ${JSON.stringify(text)} is not a size; write it like 512M, 2G or 2GiB (binary), 2GB (decimal) or a number of bytes.`);
  }
  const bytes = Math.ceil(Number(match[1]) * factor);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new UsageError(`${flag} ${JSON.stringify(text)} is not a usable size.`);
  return bytes;
}

/** Rounds up to a multiple of `unit`. */
export function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}

const INSTALLER_SOURCE = fileURLToPath(new URL('../assets/seed-install.sh', import.meta.url));

/** What a seed will hold, known before writing: each payload file's (upper-bound) size. */
export interface SeedEstimate {
  files: { path: string; size: number }[];
  /** Bytes on a 4 KiB-block filesystem, plus room for manifest, checksums and folders. */
  contentBytes: number;
}

/**
 * Estimates the seed's size from the same inputs `planBuild` uses (the source archive's size is
 * an upper bound), without needing a target folder: the device flow sizes the partition with it.
 */
export async function estimateSeed(build: Pick<BuildOptions, 'source' | 'models'>): Promise<SeedEstimate> {
  const source = await planSourceArchive(build.source);
  const files = [
    { path: `source/${source.fileName}`, size: estimateArchiveBytes(source) },
    { path: 'seed-install.sh', size: (await stat(INSTALLER_SOURCE)).size },
  ];
  for (const request of build.models) {
    const bundle = await resolveModelBundle(path.resolve(request.path), { revision: request.revision, name: request.name });
    files.push(...bundle.files.map((file) => ({ path: `models/${bundle.name}/${file.relPath}`, size: file.size })));
  }
  const contentBytes = files.reduce((sum, file) => sum + onDisk(file.size, 4096), 0) + 2 * MiB;
  return { files, contentBytes };
}

/**
 * Bytes a fresh filesystem of `partitionBytes` keeps for itself (inode tables, journal, FATs,
 * allocation bitmaps). Generous on purpose: `planBuild` repeats the exact free-space check once
 * the partition is mounted.
 */
export function filesystemOverhead(partitionBytes: number, filesystem: 'ext4' | 'exfat' | 'fat'): number {
  if (filesystem === 'ext4') return Math.max(8 * MiB, Math.ceil(partitionBytes * 0.03)) + (partitionBytes > GiB ? 128 * MiB : 4 * MiB);
  return Math.max(2 * MiB, Math.ceil(partitionBytes * 0.01));
}

/** Smallest partition that holds `contentBytes` once the filesystem's overhead is paid. */
export function partitionBytesFor(contentBytes: number, filesystem: 'ext4' | 'exfat' | 'fat'): number {
  let size = roundUp(contentBytes + 4 * MiB, MiB);
  while (size - filesystemOverhead(size, filesystem) < contentBytes) size += roundUp(filesystemOverhead(size, filesystem) / 2, MiB);
  return size;
}
