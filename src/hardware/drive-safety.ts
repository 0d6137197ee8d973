/**
 * Which drives may receive a seed. Two entry points share one policy:
 * - `classifyDrives` sorts a drivelist result into candidates and excluded drives (wizard, `drives`);
 * - `checkTargetDevice` vets an explicitly named `--device` path (scripted builds, loop devices).
 * Hard refusals (system disk, virtual, read-only, holds the source or a model) can never be
 * overridden; "not removable" and "larger than 128 GB" only need an explicit confirmation.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { canonicalDevice, describeMounted, disksHoldingPath, findSystemDisks, inspectBlockDevice, mountedPartitions, type BlockDeviceInfo } from './block-devices.js';
import { formatDriveSize, type Drive } from './drives.js';

/** Default threshold above which a target needs explicit confirmation (`--allow-large`). */
export const LARGE_DRIVE_BYTES = 128e9;

/** What the safety checks need to know about the build. */
export interface SafetyContext {
  /** The repository and model bundle paths: the drive holding any of them is refused. */
  protectedPaths: string[];
  /** Bytes above which a drive needs confirmation; default 128e9 (128 GB). */
  largeDriveBytes?: number;
  /** Bytes the seed needs; a smaller drive is excluded as too small. Omit when not known yet. */
  requiredBytes?: number;
  /**
   * Whole-disk devices holding the running system. Default: detected live with `findSystemDisks()`.
   * Tests over recorded drive lists pass `[]` so the host machine does not leak into them.
   */
  systemDisks?: string[];
}

export const ExclusionReason = {
  systemDrive: 'system-drive',
  virtualDevice: 'virtual-device',
  readOnly: 'read-only',
  holdsSourceOrModel: 'holds-source-or-model',
  noMedium: 'no-medium',
  tooSmall: 'too-small',
  notRemovable: 'not-removable',
  tooLarge: 'too-large',
} as const;
export type ExclusionReason = (typeof ExclusionReason)[keyof typeof ExclusionReason];

/** Reasons that only need confirmation (wizard) or a flag (scripted); all others are refusals. */
export type ConfirmationReason = 'not-removable' | 'too-large';

export interface DriveVerdict {
  drive: Drive;
  /** False when any hard refusal applies. */
  eligible: boolean;
  /** Confirmations still needed for an eligible drive. */
  needsConfirmation: ConfirmationReason[];
  reasons: { code: ExclusionReason; message: string }[];
}

export interface DriveClassification {
  candidates: DriveVerdict[];
  excluded: DriveVerdict[];
}

/** Mount points that mean "this disk runs the system" (swap as lsblk names it). */
const systemMounts = new Set(['/', '/boot', '/boot/efi', '/efi', '/nix', '/nix/store', '/usr', '/var', '/iso', '/nix/.ro-store', '/run/initramfs/live', '[SWAP]']);

function isInside(child: string, parent: string): boolean {
  const relative = path.relative(parent, child);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

async function resolvePath(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    return path.resolve(p);
  }
}

/** The mount point (longest match over all drives) holding each protected path, with its drive. */
function holderByMount(protectedPath: string, drives: Drive[]): Drive | null {
  let best: { drive: Drive; length: number } | null = null;
  for (const drive of drives) {
    for (const mount of drive.mountpoints) {
      if (!mount.path.startsWith('/') || !isInside(protectedPath, mount.path)) continue;
      if (!best || mount.path.length > best.length) best = { drive, length: mount.path.length };
    }
  }
  return best?.drive ?? null;
}

/**
 * Sorts drives into candidates and excluded ones, with reasons. System drive: a drive holding a
 * system mount (/, /boot, /nix, /usr, swap...) or listed in `systemDisks`; drivelist's own
 * `isSystem` is trusted only from native enumerators, because on Linux it merely means "not
 * removable" (an internal data disk is then a confirmation, not a refusal). zram is excluded as
 * virtual although drivelist calls it removable.
 */
export async function classifyDrives(drives: Drive[], context: SafetyContext): Promise<DriveClassification> {
  const systemDisks = new Set(await Promise.all((context.systemDisks ?? (await findSystemDisks())).map(canonicalDevice)));
  const largeBytes = context.largeDriveBytes ?? LARGE_DRIVE_BYTES;
  // Which drive holds each protected path: by mount point (works on recorded lists), and by the
  // live device number of the path (works when the partition is mounted somewhere unexpected).
  const holders = new Map<string, string[]>();
  for (const original of context.protectedPaths) {
    const resolved = await resolvePath(original);
    const byMount = holderByMount(resolved, drives);
    const byDevice = await disksHoldingPath(resolved).catch(() => []);
    for (const device of new Set([...(byMount ? [byMount.device] : []), ...byDevice])) {
      holders.set(device, [...(holders.get(device) ?? []), original]);
    }
  }

  const verdicts: DriveVerdict[] = [];
  for (const drive of drives) {
    const reasons: DriveVerdict['reasons'] = [];
    const device = await canonicalDevice(drive.device);
    const heldSystemMounts = drive.mountpoints.map((mount) => mount.path).filter((mount) => systemMounts.has(mount));
    const nativeSystem = drive.isSystem && !drive.enumerator.startsWith('lsblk');
    if (heldSystemMounts.length > 0 || systemDisks.has(device) || systemDisks.has(drive.device) || nativeSystem) {
      const why = heldSystemMounts.length > 0 ? `it holds ${heldSystemMounts.join(', ')}` : 'it holds the running system';
      reasons.push({ code: 'system-drive', message: `system drive: ${why}` });
    }
    if (drive.isVirtual || /^\/dev\/(zram|ram)\d+$/.test(drive.device)) {
      reasons.push({ code: 'virtual-device', message: 'virtual device (memory-backed, nothing written survives a reboot)' });
    }
    if (drive.isReadOnly) reasons.push({ code: 'read-only', message: 'read-only (write-protect switch or read-only medium)' });
    const held = holders.get(drive.device) ?? holders.get(device);
    if (held) reasons.push({ code: 'holds-source-or-model', message: `holds the source repository or a model bundle (${held.join(', ')})` });
    if (drive.size === null && !drive.isVirtual) reasons.push({ code: 'no-medium', message: 'no medium or unknown size (insert a card, or check the reader)' });
    if (drive.size !== null && context.requiredBytes !== undefined && drive.size < context.requiredBytes) {
      reasons.push({ code: 'too-small', message: `too small: needs ${formatDriveSize(context.requiredBytes)}, has ${formatDriveSize(drive.size)}` });
    }
    const eligible = reasons.length === 0;
    const needsConfirmation: ConfirmationReason[] = [];
    if (!drive.isRemovable) {
      needsConfirmation.push('not-removable');
      reasons.push({ code: 'not-removable', message: 'fixed, non-removable disk: needs confirmation (--allow-fixed-disk)' });
    }
    if (drive.size !== null && drive.size > largeBytes) {
      needsConfirmation.push('too-large');
      reasons.push({ code: 'too-large', message: `larger than ${formatDriveSize(largeBytes)}: needs confirmation (--allow-large); is this really the stick?` });
    }
    verdicts.push({ drive, eligible, needsConfirmation: eligible ? needsConfirmation : [], reasons });
  }
  return { candidates: verdicts.filter((verdict) => verdict.eligible), excluded: verdicts.filter((verdict) => !verdict.eligible) };
}

/** Options of `checkTargetDevice`; flags come from the command line. */
export interface TargetDeviceOptions {
  /** `--allow-fixed-disk`: accept a non-removable disk (never the system disk). */
  allowFixedDisk: boolean;
  /** `--allow-large`: accept a target larger than the large-drive threshold. */
  allowLarge: boolean;
  context: SafetyContext;
}

/**
 * Scripted/explicit device check. Refuses (UsageError, exit 2): the system disk, always; a
 * partition path (naming the disk to pass instead); a read-only device; a virtual device
 * (zram/ram); a device that is not a disk (optical, device-mapper, RAID); the disk holding a
 * protected path; a device without medium; a fixed non-removable disk unless `allowFixedDisk`;
 * a target above the large threshold unless `allowLarge`. An explicitly named loop device is
 * accepted. Mounted partitions are reported in `warnings` (see `mountedPartitions`): the caller
 * decides, because a partition it mounted itself is fine.
 */
export async function checkTargetDevice(devicePath: string, options: TargetDeviceOptions): Promise<{ info: BlockDeviceInfo; warnings: string[] }> {
  const info = await inspectBlockDevice(devicePath);
  const named = devicePath === info.path ? info.path : `${devicePath} (${info.path})`;
  const wholeDisk = info.parentDisk ?? info.path;
  const systemDisks = new Set(await Promise.all((options.context.systemDisks ?? (await findSystemDisks())).map(canonicalDevice)));
  if (systemDisks.has(await canonicalDevice(wholeDisk))) {
    throw new UsageError(`Refusing ${named}: ${wholeDisk} holds the running system (/, /boot, /nix, /usr or swap). Pick the USB stick instead; \`dubnium-seed drives\` lists candidates.`);
  }
  if (info.type === 'part') {
    throw new UsageError(`Refusing ${named}: it is a partition, and --device takes the whole disk. Pass --device ${wholeDisk} (the seed partition is created or reused on it).`);
  }
  if (info.isVirtual) {
    throw new UsageError(`Refusing ${named}: it is a virtual memory-backed device (${info.kernelName}); nothing written there survives a reboot.`);
  }
  if (info.type !== 'disk' && info.type !== 'loop') {
    throw new UsageError(`Refusing ${named}: it is a ${info.type} device, not a plain disk; pass the USB stick itself (see \`dubnium-seed drives\`).`);
  }
  if (info.readOnly) {
    throw new UsageError(`Refusing ${named}: the device is read-only (write-protect switch, or a loop device attached with -r).`);
  }
  for (const protectedPath of options.context.protectedPaths) {
    const resolved = await resolvePath(protectedPath);
    const holders = await Promise.all((await disksHoldingPath(resolved).catch(() => [])).map(canonicalDevice));
    const mountedHere = [...info.partitions.flatMap((partition) => partition.mountpoints), ...info.mountpoints].some((mount) => mount.startsWith('/') && isInside(resolved, mount));
    if (holders.includes(info.path) || mountedHere) {
      throw new UsageError(`Refusing ${named}: it holds ${protectedPath}, which is being copied. Move the repository or model elsewhere, or pick another stick.`);
    }
  }
  if (info.size === 0) {
    throw new UsageError(`Refusing ${named}: no medium (size 0). Insert the card or stick and try again.`);
  }
  const warnings: string[] = [];
  if (info.isLoop) {
    warnings.push(`${info.path} is a loop device${info.backingFile ? ` backed by ${info.backingFile}` : ''}; writing to it changes that file.`);
  } else if (!info.removable) {
    if (!options.allowFixedDisk) {
      throw new UsageError(`Refusing ${named}: it is a fixed, non-removable disk${info.model ? ` (${info.model})` : ''}. If you really mean it, pass --allow-fixed-disk as well.`);
    }
    warnings.push(`${info.path} is a fixed, non-removable disk (accepted because of --allow-fixed-disk).`);
  }
  const largeBytes = options.context.largeDriveBytes ?? LARGE_DRIVE_BYTES;
  if (info.size > largeBytes) {
    if (!options.allowLarge) {
      throw new UsageError(`Refusing ${named}: it holds ${formatDriveSize(info.size)}, more than ${formatDriveSize(largeBytes)}; that is rarely a USB stick. If you really mean it, pass --allow-large.`);
    }
    warnings.push(`${info.path} is larger than ${formatDriveSize(largeBytes)} (accepted because of --allow-large).`);
  }
  if (options.context.requiredBytes !== undefined && info.size < options.context.requiredBytes) {
    throw new UsageError(`Refusing ${named}: too small, needs ${formatDriveSize(options.context.requiredBytes)}, has ${formatDriveSize(info.size)}.`);
  }
  const mounted = describeMounted(info);
  if (mounted) warnings.push(mounted);
  return { info, warnings };
}

export { mountedPartitions };

function driveName(drive: Drive): string {
  if (drive.description) return drive.description;
  if (drive.isVirtual) return 'virtual device';
  return drive.isCard ? 'SD/MMC card' : drive.busType === 'UNKNOWN' ? 'unnamed drive' : `${drive.busType} drive`;
}

function mountSummary(drive: Drive): string {
  if (drive.mountpoints.length === 0) return 'not mounted';
  return drive.mountpoints.map((mount) => (mount.label ? `${mount.path} [${mount.label}]` : mount.path)).join(', ');
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_cell, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join('  ').trimEnd());
}

/** Human listing for `dubnium-seed drives`: candidates first, then excluded drives with reasons. */
export function formatDrives(result: DriveClassification): string {
  const lines: string[] = [];
  if (result.candidates.length === 0) {
    lines.push('No candidate drives. Plug in a USB stick or SD card, or pass --device PATH / --target DIR.');
  } else {
    lines.push('Candidate drives:');
    const rows = [['  DEVICE', 'SIZE', 'BUS', 'DESCRIPTION', 'MOUNTED', 'NOTE']];
    for (const verdict of result.candidates) {
      const { drive } = verdict;
      const note = verdict.needsConfirmation.map((code) => (code === 'not-removable' ? 'fixed disk: confirm (--allow-fixed-disk)' : 'large: confirm (--allow-large)')).join('; ');
      rows.push([`  ${drive.device}`, formatDriveSize(drive.size), drive.isCard ? 'SD' : drive.busType, driveName(drive), mountSummary(drive), note || '-']);
    }
    lines.push(...table(rows));
  }
  if (result.excluded.length > 0) {
    lines.push('', 'Excluded:');
    for (const verdict of result.excluded) {
      const { drive } = verdict;
      const hard = verdict.reasons.filter((reason) => reason.code !== 'not-removable' && reason.code !== 'too-large');
      lines.push(`  ${drive.device}  ${formatDriveSize(drive.size)}  ${driveName(drive)}`);
      for (const reason of hard) lines.push(`    - ${reason.message}`);
    }
  }
  return lines.join('\n');
}

/** JSON-safe form for `drives --json` (drops drivelist's raw object). */
export function drivesToJson(result: DriveClassification): { candidates: unknown[]; excluded: unknown[] } {
  const strip = (verdict: DriveVerdict) => {
    const { raw: _raw, ...drive } = verdict.drive;
    return { ...drive, eligible: verdict.eligible, needsConfirmation: verdict.needsConfirmation, reasons: verdict.reasons };
  };
  return { candidates: result.candidates.map(strip), excluded: result.excluded.map(strip) };
}
