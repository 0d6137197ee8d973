/**
 * What the build needs to know about its target folder before writing: the filesystem it is on
 * (type, free space, limits), whether it already holds a seed, and whether it holds anything else.
 */
import { readdir, readFile, statfs, stat, realpath } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { formatBytes } from '../util/format.js';
import { CHECKSUMS_NAME, INSTALLER_NAME, JOURNAL_NAME, MANIFEST_NAME, PARTIAL_SUFFIX, SIGNATURE_NAME } from './manifest.js';

/** Filesystem families whose limits matter for a seed. */
export type FilesystemFamily = 'fat' | 'exfat' | 'ext4' | 'other';

export interface FilesystemInfo {
  mountPoint: string;
  /** As /proc/self/mountinfo names it (`vfat`, `exfat`, `fuseblk`, `ext4`, ...). */
  type: string;
  family: FilesystemFamily;
  device: string;
  freeBytes: number;
  blockSize: number;
}

/** FAT cannot hold a file of 4 GiB or more. */
export const FAT_MAX_FILE = 4 * 1024 * 1024 * 1024 - 1;
/** Label lengths each filesystem allows. */
export const LABEL_LIMITS: Record<Exclude<FilesystemFamily, 'other'>, number> = { fat: 11, exfat: 11, ext4: 16 };

function unescapeMountinfo(value: string): string {
  return value.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function familyOf(type: string, device: string): FilesystemFamily {
  if (type === 'vfat' || type === 'msdos' || type === 'fat') return 'fat';
  if (type === 'exfat' || (type === 'fuseblk' && /exfat/i.test(device))) return 'exfat';
  if (type === 'ext4') return 'ext4';
  return 'other';
}

/** The mount holding `target` (longest mount-point prefix of its real path) and its free space. */
export async function filesystemInfo(target: string): Promise<FilesystemInfo> {
  const real = await realpath(target);
  let best = { mountPoint: '/', type: 'unknown', device: '' };
  try {
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    for (const line of mountinfo.split('\n')) {
      const [left, right] = line.split(' - ');
      if (!left || !right) continue;
      const mountPoint = unescapeMountinfo(left.split(' ')[4] ?? '');
      const [type = 'unknown', device = ''] = right.split(' ');
      const inside = real === mountPoint || real.startsWith(mountPoint.endsWith('/') ? mountPoint : `${mountPoint}/`);
      if (inside && mountPoint.length >= best.mountPoint.length) best = { mountPoint, type, device: unescapeMountinfo(device) };
    }
  } catch {
    // Not Linux: type stays unknown, limits are not checked beyond free space.
  }
  const stats = await statfs(real);
  // exfat-fuse mounts report `fuseblk`; the superblock magic tells FUSE apart but not which FUSE.
  return {
    ...best,
    family: familyOf(best.type, best.device),
    freeBytes: Number(stats.bavail) * Number(stats.bsize),
    blockSize: Number(stats.bsize),
  };
}

/** Entries a freshly made filesystem or a desktop may put at a partition's root. */
const FILESYSTEM_NOISE = new Set(['lost+found', 'System Volume Information', '.Trashes', '.fseventsd', '.Spotlight-V100']);

export function isSeedEntry(name: string): boolean {
  return (
    name === MANIFEST_NAME ||
    name === SIGNATURE_NAME ||
    name === CHECKSUMS_NAME ||
    name === INSTALLER_NAME ||
    name === JOURNAL_NAME ||
    name === 'source' ||
    name === 'models' ||
    (name.startsWith('.') && name.endsWith(PARTIAL_SUFFIX))
  );
}

export interface TargetState {
  exists: boolean;
  hasManifest: boolean;
  hasJournal: boolean;
  /** Top-level entries that are neither seed files nor filesystem noise. */
  foreign: string[];
}

export async function inspectTarget(target: string): Promise<TargetState> {
  let entries: string[];
  try {
    const info = await stat(target);
    if (!info.isDirectory()) throw new UsageError(`Target ${target} is not a folder. Pass the mount point of the seed partition or an empty folder with --target.`);
    entries = await readdir(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { exists: false, hasManifest: false, hasJournal: false, foreign: [] };
    throw error;
  }
  return {
    exists: true,
    hasManifest: entries.includes(MANIFEST_NAME),
    hasJournal: entries.includes(JOURNAL_NAME),
    foreign: entries.filter((name) => !isSeedEntry(name) && !FILESYSTEM_NOISE.has(name) && !name.startsWith('.Trash-')).sort(),
  };
}

/** Bytes a file occupies, rounded up to whole blocks. */
export function onDisk(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize) * blockSize;
}

export interface LimitCheck {
  family: FilesystemFamily;
  files: { path: string; size: number }[];
  label?: string;
}

/** Throws a UsageError when a file or the label does not fit the filesystem. */
export function checkFilesystemLimits(check: LimitCheck): void {
  if (check.family === 'fat') {
    const tooBig = check.files.filter((file) => file.size > FAT_MAX_FILE);
    if (tooBig.length > 0) {
      throw new UsageError(
        `${tooBig[0]!.path} is ${formatBytes(tooBig[0]!.size)}, but FAT cannot hold a file of 4 GiB or more; use an ext4 or exFAT seed partition.`,
        tooBig.slice(1).map((file) => `also too big for FAT: ${file.path} (${formatBytes(file.size)})`),
      );
    }
  }
  if (check.label !== undefined && check.family !== 'other') {
    const limit = LABEL_LIMITS[check.family];
    if (Buffer.byteLength(check.label) > limit) {
      throw new UsageError(`Label ${JSON.stringify(check.label)} is ${check.label.length} characters; ${check.family} allows ${limit}. Pass a shorter --label.`);
    }
  }
}

export function relativeTo(root: string, file: string): string {
  return path.relative(root, file).split(path.sep).join('/');
}
