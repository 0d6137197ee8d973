/**
 * Read-only access to a seed on a block device, a partition, or an image file, for `verify PATH`.
 * Finds the seed partition (by label, else by the one holding the manifest), mounts it read-only in
 * a private temp folder (ext4 with `noload`: not even a journal replay writes; exFAT through
 * exfat-fuse with `-o ro`) or reads it without mounting (FAT through mtools; an ext4 image through
 * debugfs when not root), calls back, and always unmounts and detaches. Never writes to the media.
 *
 * Exit codes: input that is not a seed at all (no filesystem, another filesystem such as squashfs or
 * swap, a disk without a seed partition) is unusable input, UsageError (2). A seed filesystem that
 * cannot be read (ext4 or exFAT that fails to mount, FAT that mtools cannot read) is a media
 * problem, VerificationError (3).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UsageError, VerificationError, isSeedError } from '../errors.js';
import { inspectBlockDevice, probe, type BlockPartition } from '../hardware/block-devices.js';
import { MANIFEST_NAME } from '../core/manifest.js';
import { run } from '../util/run.js';
import { copySeedOutOfFat, fatRootEntries } from './fat.js';
import { mountPrivate } from './mount.js';
import { readTable } from './partition-table.js';

/** The label `build` gives a seed partition unless told otherwise. */
export const DEFAULT_SEED_LABEL = 'DUBNIUM-SEED';

export interface SeedAccessInfo {
  /** The partition (or image file) the seed was read from. */
  partition: string;
  /** As blkid names it: `ext4`, `exfat`, `vfat`. */
  filesystem: string;
  label: string | null;
  readOnly: true;
  /** How the files were reached: a read-only mount, or a copy made without mounting (mtools, debugfs). */
  access: 'mount' | 'copy';
}

export interface SeedAccessOptions {
  /** Label of the seed partition to look for first; default DUBNIUM-SEED. */
  label?: string;
  /**
   * Image files only: read an ext4 image through debugfs instead of a loop mount, as happens
   * anyway without root. Default false.
   */
  withoutMount?: boolean;
}

const seedFilesystems = new Set(['ext4', 'exfat', 'vfat']);

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

async function attachReadOnly(image: string, partitions: boolean): Promise<string> {
  if (!isRoot()) {
    throw new UsageError(`Reading ${image} needs a loop device, which needs root; run verify with sudo, or pass a partition image (build --image) instead.`);
  }
  const result = await run('losetup', ['-r', '-f', '--show', ...(partitions ? ['-P'] : []), image], { cwd: '/', reject: false, timeout: 60_000 });
  if (result.exitCode !== 0) throw new UsageError(`Cannot attach ${image} read-only as a loop device: ${result.stderr.trim().split('\n').pop() ?? 'losetup failed'}.`);
  return result.stdout.trim();
}

async function detach(device: string): Promise<void> {
  await run('losetup', ['-d', device], { cwd: '/', reject: false, timeout: 60_000 });
}

/** Opens one partition (or partition image) read-only and runs `fn` on its root folder. */
async function withPartition<T>(
  target: string,
  fields: Record<string, string>,
  fn: (root: string, info: SeedAccessInfo) => Promise<T>,
  display: string,
  loopable: { image: boolean; withoutMount?: boolean },
): Promise<T> {
  const type = fields.TYPE ?? null;
  const label = fields.LABEL ?? null;
  if (type === null) {
    throw new UsageError(`${display} holds no filesystem, so it is not a seed partition (empty, or wiped). Pass the stick's seed partition, or build the seed first.`);
  }
  if (!seedFilesystems.has(type)) {
    throw new UsageError(`${display} holds a ${type} filesystem${label ? ` labelled ${label}` : ''}, not a seed: a seed partition is ext4, exFAT or FAT. Pass the seed partition instead (lsblk -f lists them).`);
  }
  const info = (access: SeedAccessInfo['access']): SeedAccessInfo => ({ partition: display, filesystem: type, label, readOnly: true, access });
  if (type === 'vfat') {
    // mtools reads through the block device's buffer cache: drop it so the copy comes from the medium.
    if (!loopable.image) await run('blockdev', ['--flushbufs', target], { cwd: '/', reject: false, timeout: 120_000 });
    return viaCopy(target, display, 'FAT', (dest) => copySeedOutOfFat(target, dest), (root) => fn(root, info('copy')));
  }
  if (type === 'ext4' && loopable.image && (!isRoot() || loopable.withoutMount)) {
    return viaCopy(target, display, 'ext4', (dest) => debugfsDump(target, dest), (root) => fn(root, info('copy')));
  }
  let device = target;
  let loop: string | undefined;
  if (loopable.image) device = loop = await attachReadOnly(target, false);
  try {
    let mount;
    try {
      mount = await mountPrivate(device, type === 'exfat' ? 'exfat' : 'ext4', { readOnly: true });
    } catch (error) {
      if (isSeedError(error) && error instanceof UsageError) throw error;
      throw new VerificationError(`The ${type} filesystem on ${display} cannot be mounted read-only, so the seed cannot be read: ${(error as Error).message}. The media is damaged or was unplugged while writing; check it with fsck -n, or build the seed again.`);
    }
    try {
      return await fn(mount.root, info('mount'));
    } finally {
      await mount.release();
    }
  } finally {
    if (loop) await detach(loop);
  }
}

async function viaCopy<T>(source: string, display: string, kind: string, copy: (dest: string) => Promise<void>, use: (root: string) => Promise<T>): Promise<T> {
  const dest = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-read-'));
  try {
    try {
      await copy(dest);
    } catch (error) {
      throw new VerificationError(`Cannot read the ${kind} filesystem on ${display}: ${(error as Error).message}. The media is damaged or incomplete; build the seed again.`);
    }
    return await use(dest);
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
}

async function debugfsDump(image: string, dest: string): Promise<void> {
  // debugfs opens read-only unless -w is given, and exits 0 even on errors: stderr tells.
  const result = await run('debugfs', ['-R', `rdump / ${dest}`, image], { cwd: '/', reject: false, timeout: 24 * 60 * 60 * 1000 });
  const errors = result.stderr.split('\n').filter((line) => line.trim() && !/^debugfs \d/.test(line));
  if (result.exitCode !== 0 || errors.length > 0) throw new Error(errors.slice(-2).join(' | ') || `debugfs exited ${result.exitCode}`);
}

/** Whether a candidate partition holds the manifest at its root (read-only peek). */
async function holdsManifest(partition: BlockPartition): Promise<boolean> {
  if (partition.fstype === 'vfat') return (await fatRootEntries(partition.path).catch((): string[] => [])).includes(MANIFEST_NAME);
  try {
    const mount = await mountPrivate(partition.path, partition.fstype === 'exfat' ? 'exfat' : 'ext4', { readOnly: true });
    try {
      return (await stat(path.join(mount.root, MANIFEST_NAME)).catch(() => undefined)) !== undefined;
    } finally {
      await mount.release();
    }
  } catch {
    return false;
  }
}

async function withDisk<T>(disk: string, display: string, label: string, fn: (root: string, info: SeedAccessInfo) => Promise<T>): Promise<T> {
  const info = await inspectBlockDevice(disk);
  if (info.partitions.length === 0) {
    // A filesystem on the whole device (superfloppy) or an empty disk: treat the device as the partition.
    return openBlockPartition(info.path, display, fn);
  }
  const labelled = info.partitions.filter((partition) => partition.label !== null && partition.label.toUpperCase() === label.toUpperCase());
  if (labelled.length > 1) {
    throw new UsageError(`${display} has ${labelled.length} partitions labelled ${label} (${labelled.map((entry) => entry.path).join(', ')}); pass the one to verify.`);
  }
  let chosen = labelled[0];
  if (!chosen) {
    for (const partition of info.partitions.filter((entry) => entry.fstype !== null && seedFilesystems.has(entry.fstype))) {
      if (partition.mountpoints.length === 0 && (await holdsManifest(partition))) {
        chosen = partition;
        break;
      }
    }
  }
  if (!chosen) {
    const layout = info.partitions.map((entry) => `${entry.path} ${entry.fstype ?? 'no filesystem'}${entry.label ? ` "${entry.label}"` : ''}`).join(', ');
    throw new UsageError(`${display} has no seed partition: none is labelled ${label} and none holds ${MANIFEST_NAME} (${layout}). Build the seed onto it first (build --device), or pass the right device.`);
  }
  return openBlockPartition(chosen.path, chosen.path, fn);
}

async function openBlockPartition<T>(partition: string, display: string, fn: (root: string, info: SeedAccessInfo) => Promise<T>): Promise<T> {
  const info = await inspectBlockDevice(partition);
  if (info.mountpoints.length > 0) {
    throw new UsageError(`${partition} is mounted on ${info.mountpoints.join(', ')}; verify that folder instead (dubnium-seed verify ${info.mountpoints[0]}), or unmount it first (umount ${partition}).`);
  }
  return withPartition(partition, await probe(partition), fn, display, { image: false });
}

/**
 * Runs `fn` on the root folder of the seed held by a block device (whole disk: the partition
 * labelled `label`, else the one holding the manifest), a partition, or an image file (a partition
 * image, or a whole-disk image with a partition table). Everything mounted or attached here is
 * released before this returns or throws.
 */
export async function withSeedFolder<T>(
  pathToDeviceOrImage: string,
  fn: (root: string, info: SeedAccessInfo) => Promise<T>,
  options: SeedAccessOptions = {},
): Promise<T> {
  const label = options.label ?? DEFAULT_SEED_LABEL;
  const info = await stat(pathToDeviceOrImage).catch(() => undefined);
  if (!info) throw new UsageError(`${pathToDeviceOrImage} does not exist; pass a seed folder, a device such as /dev/sdb, or an image file.`);
  if (info.isBlockDevice()) {
    const device = await inspectBlockDevice(pathToDeviceOrImage);
    if (device.type === 'part') return openBlockPartition(device.path, pathToDeviceOrImage, fn);
    return withDisk(device.path, pathToDeviceOrImage, label, fn);
  }
  if (!info.isFile()) throw new UsageError(`${pathToDeviceOrImage} is neither a folder, a block device nor an image file.`);
  if (info.size === 0) throw new UsageError(`${pathToDeviceOrImage} is an empty file, not a seed image.`);
  const fields = await probe(pathToDeviceOrImage);
  if (fields.PTTYPE) {
    const loop = await attachReadOnly(pathToDeviceOrImage, true);
    try {
      await run('partx', ['-u', loop], { cwd: '/', reject: false, timeout: 30_000 });
      // Give devtmpfs a moment to create the nodes (an image's nested partitions may never get one).
      const expected = ((await readTable(loop).catch(() => null))?.entries ?? []).map((entry) => entry.node);
      for (let attempt = 0; attempt < 20 && !expected.every((node) => existsSync(node)); attempt += 1) await new Promise((resolve) => setTimeout(resolve, 100));
      return await withDisk(loop, pathToDeviceOrImage, label, fn);
    } finally {
      await detach(loop);
    }
  }
  return withPartition(pathToDeviceOrImage, fields, fn, pathToDeviceOrImage, { image: true, withoutMount: options.withoutMount ?? false });
}
