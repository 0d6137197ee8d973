/**
 * `build --image FILE [--size N]`: a seed partition image, to be written later with dd. ext4 and FAT
 * are made without root: the seed is built in a local staging folder, then `mkfs.ext4 -d` fills a
 * new filesystem from it, or mkfs.vfat plus mtools copy it into a FAT image. exFAT has no way to be
 * filled from a folder without mounting, so it needs root (a loop device and exfat-fuse) and is
 * refused otherwise. The image is written as FILE.partial and renamed at the end, so FILE is either
 * the previous image or a complete new one.
 */
import { mkdtemp, open, rename, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CommandError, UsageError, VerificationError } from '../errors.js';
import { buildSeed, type BuildOptions, type BuildResult } from '../core/build-seed.js';
import { checkFilesystemLimits, onDisk } from '../core/target.js';
import { verifySeed, type VerifyReport } from '../core/verify-seed.js';
import { formatBytes } from '../util/format.js';
import { run } from '../util/run.js';
import type { SeedMediaOptions } from './device-build.js';
import { copySeedIntoFat, formatFat } from './fat.js';
import { mountPrivate } from './mount.js';
import { withSeedFolder } from './seed-access.js';
import { MiB, estimateSeed, parseSize, partitionBytesFor, roundUp } from './sizes.js';

export interface ImageBuildOptions extends SeedMediaOptions {
  /** The image file to create (replaced atomically if it exists). */
  image: string;
  /** `--size`: the image size (512M, 2G, ...); default content + 10% + 16 MiB, rounded to MiB. */
  size?: string;
}

export interface ImageBuildResult extends BuildResult {
  image: string;
  /** Bytes of the image file. */
  size: number;
}

const LONG = 24 * 60 * 60 * 1000;

/** Default image size for `contentBytes` of seed: content + 10% + 16 MiB, rounded up to MiB. */
export function defaultImageBytes(contentBytes: number): number {
  return roundUp(contentBytes + Math.ceil(contentBytes / 10) + 16 * MiB, MiB);
}

/** Smallest image accepted for `contentBytes` (filesystem metadata included). */
export function minimumImageBytes(contentBytes: number): number {
  return roundUp(contentBytes + Math.ceil(contentBytes / 20) + 8 * MiB, MiB);
}

function contentOf(result: BuildResult): number {
  // Payload in 4 KiB blocks, plus manifest, checksums, folders and the journal-free slack.
  return result.manifest.files.reduce((sum, file) => sum + onDisk(file.size, 4096), 0) + 2 * MiB;
}

async function fsyncPath(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Builds a seed partition image at `options.image`. */
export async function buildImage(options: ImageBuildOptions): Promise<ImageBuildResult> {
  const image = path.resolve(options.image);
  const existing = await stat(image).catch(() => undefined);
  if (existing && !existing.isFile()) {
    throw new UsageError(`--image ${options.image} exists and is not a regular file; --image writes a partition image file (use --device for a disk).`);
  }
  await stat(path.dirname(image)).catch(() => {
    throw new UsageError(`The folder of --image ${options.image} does not exist; create it first.`);
  });
  checkFilesystemLimits({ family: options.filesystem, files: [], label: options.label });
  const requested = options.size !== undefined ? parseSize(options.size) : undefined;
  const partial = `${image}.partial`;
  await unlink(partial).catch(() => undefined);
  const buildOptions = { ...options.build, onStep: options.onStep, onProgress: options.onProgress, signal: options.signal };

  try {
    let result: BuildResult;
    let size: number;
    if (options.filesystem === 'exfat') {
      ({ result, size } = await buildExfatImage(partial, options, buildOptions, requested));
    } else {
      const staging = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-stage-'));
      try {
        const root = path.join(staging, 'seed');
        result = await buildSeed({ ...buildOptions, target: root, verify: false });
        checkFilesystemLimits({ family: options.filesystem, files: result.manifest.files, label: options.label });
        const content = contentOf(result);
        size = requested ?? defaultImageBytes(content);
        const minimum = minimumImageBytes(content);
        if (size < minimum) {
          throw new UsageError(`--size ${options.size} is too small for this seed: needs ${formatBytes(minimum)}, has ${formatBytes(size)}. Pass a larger --size or leave it out (default ${formatBytes(defaultImageBytes(content))}).`);
        }
        options.onStep?.('format', 'start', `${options.filesystem} image of ${formatBytes(size)}`);
        if (options.filesystem === 'ext4') {
          await writeFile(partial, '');
          await truncate(partial, size);
          await mkfsExt4FromFolder(partial, root, options.label, size, content);
        } else {
          await formatFat(partial, options.label, Math.floor(size / 1024));
          await copySeedIntoFat(root, partial);
        }
        options.onStep?.('format', 'done');
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
    }
    await fsyncPath(partial);

    let verify: VerifyReport | undefined;
    if (options.build.verify) {
      options.onStep?.('verify', 'start');
      verify = await withSeedFolder(partial, (root) => verifySeed({ root, scan: { allowlist: options.build.scan.allowlist, operatorSecrets: options.build.scan.operatorSecrets }, onProgress: options.onProgress, signal: options.signal }), { label: options.label });
      options.onStep?.('verify', 'done', verify.ok ? 'ok' : `${verify.problems.length} problems`);
      if (!verify.ok) {
        throw new VerificationError(`The image read back from ${partial} does not verify; it was not kept. Build it again.`, verify.problems.slice(0, 10).map((problem) => `${problem.path}: ${problem.message}`));
      }
      verify = { ...verify, root: image };
    }
    await rename(partial, image);
    await fsyncPath(path.dirname(image)).catch(() => undefined);
    return { ...result, ...(verify ? { verify } : {}), target: image, image, size };
  } catch (error) {
    await unlink(partial).catch(() => undefined);
    throw error;
  }
}

async function mkfsExt4FromFolder(file: string, folder: string, label: string, size: number, content: number): Promise<void> {
  try {
    // -m 0: no blocks reserved for root; root_owner: files belong to root on the installer, not to the builder's uid.
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-L', label, '-E', 'root_owner=0:0', '-d', folder, file], { cwd: '/', timeout: LONG });
  } catch (error) {
    if (error instanceof CommandError && /allocate|no space|too small|not enough/i.test(error.stderrTail)) {
      throw new UsageError(`--size ${formatBytes(size)} is too small for this seed as ext4: needs ${formatBytes(defaultImageBytes(content))}, has ${formatBytes(size)}. Pass a larger --size.`);
    }
    throw error;
  }
}

async function buildExfatImage(
  partial: string,
  options: ImageBuildOptions,
  buildOptions: Omit<BuildOptions, 'target'>,
  requested: number | undefined,
): Promise<{ result: BuildResult; size: number }> {
  if (process.getuid?.() !== 0) {
    throw new UsageError('An exFAT image needs root (a loop device and exfat-fuse): mkfs.exfat cannot fill an image from a folder. Run as root, or pick --filesystem ext4 or fat for --image.');
  }
  const estimate = await estimateSeed(options.build);
  checkFilesystemLimits({ family: 'exfat', files: estimate.files, label: options.label });
  const needed = partitionBytesFor(estimate.contentBytes, 'exfat');
  const size = requested ?? defaultImageBytes(estimate.contentBytes);
  if (size < needed) {
    throw new UsageError(`--size ${options.size} is too small for this seed: needs ${formatBytes(needed)}, has ${formatBytes(size)}. Pass a larger --size or leave it out.`);
  }
  await writeFile(partial, '');
  await truncate(partial, size);
  options.onStep?.('format', 'start', `exfat image of ${formatBytes(size)}`);
  await run('mkfs.exfat', ['-L', options.label, partial], { cwd: '/', timeout: LONG });
  options.onStep?.('format', 'done');
  const loop = (await run('losetup', ['-f', '--show', partial], { cwd: '/', timeout: 60_000 })).stdout.trim();
  try {
    const mount = await mountPrivate(loop, 'exfat', { readOnly: false });
    try {
      return { result: await buildSeed({ ...buildOptions, target: mount.root, label: options.label, verify: false }), size };
    } finally {
      await mount.release();
    }
  } finally {
    await run('losetup', ['-d', loop], { cwd: '/', reject: false, timeout: 60_000 });
  }
}
