/**
 * `build --device`: the seed partition on a real stick. On a stick holding a hybrid installer image
 * (MBR plus a GPT covering only the image) the seed partition goes into the free space after the
 * last partition, through the MBR only; a stick with a partition already labelled for the seed has
 * it reused (resume or update) and nothing else touched; a blank stick gets a fresh MBR with only
 * the seed partition. The partition is formatted, mounted privately, built into, flushed and
 * unmounted, always.
 *
 * FAT: this kernel may lack a vfat driver, so a FAT seed is built in a local staging folder, copied
 * in with mtools (manifest last) and, with `verify`, read back through mtools and verified. It is
 * not resumable: every run copies the whole seed.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SecretsFoundError, UsageError } from '../errors.js';
import { nixpkgsCopyHint } from '../core/scan/public-sources.js';
import { buildSeed, type BuildOptions, type BuildResult, type BuildStep } from '../core/build-seed.js';
import { checkFilesystemLimits, isSeedEntry } from '../core/target.js';
import type { ProgressHook } from '../core/types.js';
import { verifySeed } from '../core/verify-seed.js';
import { checkTargetDevice } from '../hardware/drive-safety.js';
import { describeMounted, inspectBlockDevice, type BlockDeviceInfo } from '../hardware/block-devices.js';
import { formatBytes } from '../util/format.js';
import { run } from '../util/run.js';
import { withSeedFolder } from './seed-access.js';
import { copySeedIntoFat, fatRootEntries, formatFat } from './fat.js';
import { recordInstaller, writeIso } from './iso-write.js';
import { mountPrivate, partitionNode, refreshPartitions } from './mount.js';
import { appendPartition, createSeedTable, planAppend, readTable } from './partition-table.js';
import { MiB, estimateSeed, partitionBytesFor, roundUp } from './sizes.js';

export type SeedFilesystem = 'ext4' | 'exfat' | 'fat';
/** Steps of a device build: the build's own steps plus the media work around them. */
export type DeviceStep = BuildStep | 'installer-scan' | 'installer' | 'installer-record' | 'partition' | 'format' | 'mount' | 'unmount';

/** What every media build takes: the seed partition's label and filesystem, the build, the hooks. */
export interface SeedMediaOptions {
  /** Seed partition label: found and reused, or given to a new partition or image. */
  label: string;
  /** Filesystem of a new seed partition or image (a reused partition keeps its own). */
  filesystem: SeedFilesystem;
  build: Omit<BuildOptions, 'target' | 'label' | 'onStep' | 'onProgress' | 'signal'>;
  onStep?: (step: DeviceStep, state: 'start' | 'done', detail?: string) => void;
  onProgress?: ProgressHook;
  signal?: AbortSignal;
}

export interface DeviceBuildOptions extends SeedMediaOptions {
  /** Whole disk, e.g. /dev/sdb or an explicitly named loop device. The caller has checked `--yes`. */
  device: string;
  /** Installer image to write first (`--iso FILE`), verified by reading it back. */
  iso?: string;
  /** `--allow-fixed-disk`. */
  allowFixedDisk: boolean;
  /** `--allow-large`. */
  allowLarge: boolean;
  /** Warnings from the device check (loop device, fixed disk accepted...). */
  onWarning?: (message: string) => void;
}

export interface DeviceBuildResult extends BuildResult {
  /** The whole disk. */
  device: string;
  /** The seed partition node. */
  partition: string;
  /** True when this run created (and formatted) the partition; false when it reused one. */
  created: boolean;
  filesystem: string;
  installer?: { bytes: number; sha256: string; written: boolean };
}

const partitionType = { ext4: '83', exfat: '7', fat: 'c' } as const;
const LONG = 24 * 60 * 60 * 1000;

async function wholeDeviceSignature(device: string): Promise<string | null> {
  const result = await run('blkid', ['-p', '-o', 'export', device], { cwd: '/', reject: false, timeout: 30_000 });
  return /^TYPE=(.*)$/m.exec(result.stdout)?.[1] ?? null;
}

function findLabelled(info: BlockDeviceInfo, label: string) {
  const matches = info.partitions.filter((partition) => partition.label !== null && partition.label.toUpperCase() === label.toUpperCase());
  if (matches.length > 1) {
    throw new UsageError(`Refusing ${info.path}: ${matches.length} partitions are labelled ${label} (${matches.map((entry) => entry.path).join(', ')}); relabel or remove all but one.`);
  }
  return matches[0];
}

async function format(partition: string, filesystem: SeedFilesystem, label: string): Promise<void> {
  if (filesystem === 'ext4') {
    // -m 0: a seed partition needs no blocks reserved for root.
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-L', label, partition], { cwd: '/', timeout: LONG });
  } else if (filesystem === 'exfat') {
    await run('mkfs.exfat', ['-L', label, partition], { cwd: '/', timeout: LONG });
  } else {
    await formatFat(partition, label);
  }
}

function familyOfBlkid(type: string | null): SeedFilesystem | null {
  return type === 'ext4' ? 'ext4' : type === 'exfat' ? 'exfat' : type === 'vfat' ? 'fat' : null;
}

/**
 * Builds the seed onto the seed partition of `device`, creating the partition when needed.
 * Refuses (UsageError, exit 2) a device `checkTargetDevice` refuses, one with mounted partitions,
 * one too small ("needs X, has Y"), and layouts it does not understand.
 */
export async function buildOnDevice(options: DeviceBuildOptions): Promise<DeviceBuildResult> {
  const step = options.onStep ?? (() => undefined);
  const protectedPaths = [options.build.source.repo, ...options.build.models.map((model) => model.path), ...(options.iso ? [options.iso] : [])];
  const { info: checked, warnings } = await checkTargetDevice(options.device, { allowFixedDisk: options.allowFixedDisk, allowLarge: options.allowLarge, context: { protectedPaths } });
  const mounted = describeMounted(checked);
  if (mounted) throw new UsageError(`Refusing ${mounted}`);
  for (const warning of warnings) options.onWarning?.(warning);
  const disk = checked.path;

  // Size first: nothing is written to a stick that cannot hold the seed.
  const estimate = await estimateSeed(options.build);
  checkFilesystemLimits({ family: options.filesystem, files: estimate.files, label: options.label });
  const seedBytes = partitionBytesFor(estimate.contentBytes, options.filesystem);
  if (options.iso) {
    const isoBytes = (await stat(options.iso).catch(() => undefined))?.size;
    if (isoBytes === undefined) throw new UsageError(`--iso ${options.iso} does not exist; pass the installer image file.`);
    const needed = roundUp(isoBytes, MiB) + seedBytes;
    if (checked.size < needed) {
      throw new UsageError(`Refusing ${disk}: too small, the installer image and the seed need ${formatBytes(needed)}, has ${formatBytes(checked.size)}. Use a larger stick or fewer model bundles.`);
    }
  } else if (checked.size < seedBytes) {
    throw new UsageError(`Refusing ${disk}: too small, the seed needs ${formatBytes(seedBytes)}, has ${formatBytes(checked.size)}. Use a larger stick or fewer model bundles.`);
  }

  let installer: DeviceBuildResult['installer'];
  if (options.iso) {
    // The installer image is installer media too: scanned inside out (ISO, El Torito EFI image,
    // squashfs store, initrds) before a byte goes to the stick. A finding or anything unreadable
    // (`unscanned`) stops the build with the stick untouched.
    step('installer-scan', 'start', options.iso);
    await scanInstallerImage(options.iso, options);
    step('installer-scan', 'done', 'no credentials');
    step('installer', 'start', options.iso);
    installer = await writeIso(disk, options.iso, { onProgress: options.onProgress, signal: options.signal });
    if (installer.written) await refreshPartitions(disk);
    step('installer', 'done', installer.written ? `${formatBytes(installer.bytes)} written and read back` : 'already on the stick, kept');
  }

  // Find or make the seed partition.
  let info = await inspectBlockDevice(disk);
  let partition = findLabelled(info, options.label);
  let created = false;
  if (!partition) {
    step('partition', 'start');
    const table = await readTable(disk);
    let number: number;
    if (table === null) {
      const signature = await wholeDeviceSignature(disk);
      if (signature) {
        throw new UsageError(`Refusing ${disk}: it holds a ${signature} filesystem without a partition table, a layout this tool does not change. Wipe it first (wipefs -a ${disk}) or write the installer image with --iso FILE.`);
      }
      await createSeedTable(disk, partitionType[options.filesystem]);
      number = 1;
    } else {
      const plan = planAppend(disk, table, checked.size, seedBytes);
      await appendPartition(disk, plan, partitionType[options.filesystem]);
      number = plan.number;
    }
    const node = partitionNode(disk, number);
    await refreshPartitions(disk, [node]);
    step('partition', 'done', node);
    step('format', 'start', `${options.filesystem} "${options.label}"`);
    await format(node, options.filesystem, options.label);
    step('format', 'done');
    info = await inspectBlockDevice(disk);
    partition = info.partitions.find((entry) => entry.path === node) ?? { path: node, size: 0, fstype: null, label: options.label, mountpoints: [] };
    created = true;
  }
  const filesystem = created ? options.filesystem : familyOfBlkid(partition.fstype);
  if (filesystem === null) {
    throw new UsageError(`Refusing ${partition.path}: it is labelled ${options.label} but holds ${partition.fstype ?? 'no filesystem'}, which a seed cannot use. Reformat it (ext4, exFAT or FAT) or pick another --label.`);
  }
  if (!created && filesystem !== options.filesystem) {
    options.onWarning?.(`${partition.path} (${options.label}) is ${filesystem}; it is reused as it is, not reformatted as ${options.filesystem}.`);
  }
  // The installer image the build wrote, or found at the start of the stick, goes into the manifest
  // (which may be signed right after it is written: it is never rewritten).
  step('installer-record', 'start');
  const record = await recordInstaller(disk);
  step('installer-record', 'done', record ? `${record.volumeId}, ${formatBytes(record.length)}` : 'no installer image on the stick');
  const buildOptions = { ...options.build, ...(record ? { installer: record } : {}), label: options.label, onStep: options.onStep, onProgress: options.onProgress, signal: options.signal };

  let result: BuildResult;
  if (filesystem === 'fat') {
    result = await buildFat(partition.path, buildOptions, options, created);
  } else {
    step('mount', 'start', partition.path);
    const mount = await mountPrivate(partition.path, filesystem, { readOnly: false });
    step('mount', 'done', mount.root);
    let failed = false;
    try {
      result = await buildSeed({ ...buildOptions, target: mount.root });
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      step('unmount', 'start');
      // After a failed build (a stick that failed or went away) its error is the one to report,
      // not a failing flush or unmount of the same stick.
      // A mount a failed build leaves busy is detached lazily, so nothing stays mounted (the kernel
      // finishes the unmount once the last file on it is closed).
      const lazily = await mount.release(failed ? { lazyIfBusy: true } : {}).catch((error: unknown) => {
        if (!failed) throw error;
        return false;
      });
      if (lazily) options.onWarning?.(`${partition.path} was still in use after the build failed; it was detached (umount -l) and is unmounted once the last program using it lets go.`);
      step('unmount', 'done');
    }
  }
  const verify = result.verify ? { ...result.verify, root: partition.path } : undefined;
  return { ...result, ...(verify ? { verify } : {}), target: partition.path, device: disk, partition: partition.path, created, filesystem, ...(installer ? { installer } : {}) };
}

/** Leak-scans the installer image `iso` with the build's scan settings; throws SecretsFoundError (exit 4) on any finding. */
export async function scanInstallerImage(iso: string, options: Pick<SeedMediaOptions, 'build' | 'onProgress' | 'signal'>): Promise<void> {
  const { scanPaths } = await import('../core/scan/index.js');
  const { scan } = options.build;
  const report = await scanPaths([iso], {
    allowlist: scan.allowlist,
    operatorSecrets: scan.operatorSecrets,
    ...(scan.limits ? { limits: scan.limits } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  if (report.findings.length === 0) return;
  const location = (finding: (typeof report.findings)[number]) => [finding.path, ...(finding.chain ?? (finding.inner ? [finding.inner] : []))].join(' › ');
  const first = report.findings[0]!;
  const hint = nixpkgsCopyHint(report.findings);
  const error = new SecretsFoundError(
    `Credentials found in the installer image ${iso}: ${first.kind} in ${location(first)}${report.findings.length > 1 ? ` and ${report.findings.length - 1} more` : ''}. Nothing was written to the stick; rebuild the image without the secret (or allowlist its fingerprint in the profile with a reason).`,
    [
      ...report.findings.map((finding) => `${finding.kind} (${finding.rule}) in ${location(finding)}${finding.line ? `:${finding.line}` : ''} fingerprint ${finding.fingerprint}${finding.note ? `: ${finding.note}` : ''}`),
      ...(hint ? [hint] : []),
    ],
  );
  (error as SecretsFoundError & { findings: unknown[] }).findings = report.findings;
  throw error;
}

async function buildFat(partition: string, buildOptions: Omit<BuildOptions, 'target'>, options: DeviceBuildOptions, created: boolean): Promise<BuildResult> {
  if (!created) {
    const foreign = (await fatRootEntries(partition)).filter((name) => !isSeedEntry(name) && name !== 'System Volume Information');
    if (foreign.length > 0) {
      throw new UsageError(`Refusing ${partition}: it holds files that are not part of a seed (${foreign.slice(0, 5).join(', ')}); move them off or pick another --label.`);
    }
  }
  const staging = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-stage-'));
  try {
    const result = await buildSeed({ ...buildOptions, target: path.join(staging, 'seed'), verify: false });
    options.onStep?.('copy', 'start', `into ${partition} (mtools)`);
    await copySeedIntoFat(path.join(staging, 'seed'), partition);
    options.onStep?.('copy', 'done');
    if (!buildOptions.verify) return result;
    await rm(path.join(staging, 'seed'), { recursive: true, force: true });
    options.onStep?.('verify', 'start');
    const verify = await withSeedFolder(partition, (root) => verifySeed({ root, scan: { allowlist: buildOptions.scan.allowlist, operatorSecrets: buildOptions.scan.operatorSecrets }, onProgress: buildOptions.onProgress, signal: buildOptions.signal }));
    options.onStep?.('verify', 'done', verify.ok ? 'ok' : `${verify.problems.length} problems`);
    return { ...result, verify };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
