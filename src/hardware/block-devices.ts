/**
 * Block devices named explicitly (`--device PATH`), resolved through lsblk and sysfs. Unlike
 * drivelist this sees loop devices, which is how tests and image workflows reach real partition
 * tables. Linux only: sysfs and lsblk are the sources of truth.
 */
import { readFile, readdir, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { run } from '../util/run.js';

/** One partition of a disk, as the kernel and the filesystem probe see it. */
export interface BlockPartition {
  path: string;
  /** Bytes. */
  size: number;
  fstype: string | null;
  label: string | null;
  /** Where it is mounted now (`[SWAP]` for active swap); empty when not mounted. */
  mountpoints: string[];
  /** The kernel's partition number (`/sys/class/block/<name>/partition`). */
  partNumber?: number;
}

export type BlockDeviceType = 'disk' | 'part' | 'loop' | 'rom' | 'lvm' | 'crypt' | 'raid' | 'mpath' | (string & {});

/** What `inspectBlockDevice` learns about a device path. */
export interface BlockDeviceInfo {
  /** Canonical device node, e.g. `/dev/sdb` (symlinks such as /dev/disk/by-id/... resolved). */
  path: string;
  /** Kernel name, e.g. `sdb`, `loop3`, `nvme0n1p2`. */
  kernelName: string;
  type: BlockDeviceType;
  /** Bytes; 0 when there is no medium. */
  size: number;
  readOnly: boolean;
  /** The kernel's removable flag or a hot-pluggable bus (USB, SD), as drivelist counts it. */
  removable: boolean;
  isLoop: boolean;
  /** Virtual memory-backed devices (zram, ram, brd) that never persist data. */
  isVirtual: boolean;
  backingFile?: string;
  model?: string;
  vendor?: string;
  /** Transport as lsblk reports it (`usb`, `nvme`, `sata`, `mmc`...). */
  transport?: string;
  /** `dos` or `gpt` when a partition table is found (blkid probe), else null. */
  partitionTableType: string | null;
  partitions: BlockPartition[];
  /** Mount points of the device node itself (a filesystem without a partition table). */
  mountpoints: string[];
  /** For a partition: the whole disk that holds it, e.g. `/dev/sdb`. */
  parentDisk?: string;
  /** `major:minor`. */
  devno: string;
}

interface LsblkNode {
  name?: string;
  kname?: string;
  path?: string;
  type?: string;
  size?: number | string | null;
  ro?: boolean | string | number;
  rm?: boolean | string | number;
  hotplug?: boolean | string | number;
  fstype?: string | null;
  label?: string | null;
  mountpoint?: string | null;
  mountpoints?: (string | null)[];
  pkname?: string | null;
  model?: string | null;
  vendor?: string | null;
  tran?: string | null;
  'maj:min'?: string;
  children?: LsblkNode[];
}

const baseColumns = ['NAME', 'KNAME', 'PATH', 'TYPE', 'SIZE', 'RO', 'RM', 'HOTPLUG', 'FSTYPE', 'LABEL', 'PKNAME', 'MODEL', 'VENDOR', 'TRAN', 'MAJ:MIN'];

function truthy(value: unknown): boolean {
  return value === true || value === 1 || value === '1' || value === 'true';
}

function trimmed(value: string | null | undefined): string | undefined {
  const result = value?.trim();
  return result ? result : undefined;
}

function nodeMounts(node: LsblkNode): string[] {
  const list = node.mountpoints ?? (node.mountpoint !== undefined ? [node.mountpoint] : []);
  return list.filter((entry): entry is string => typeof entry === 'string' && entry.length > 0);
}

/** Linux dev_t split (glibc's gnu_dev_major/minor), without 32-bit bit operations on large values. */
export function splitDevno(dev: number): { major: number; minor: number } {
  const low = dev % 2 ** 32;
  const high = Math.floor(dev / 2 ** 32);
  const major = ((low >>> 8) & 0xfff) | ((high & 0xfffff000) >>> 0);
  const minor = (low & 0xff) | ((low >>> 12) & 0xfff00);
  return { major, minor };
}

async function readSys(file: string): Promise<string | null> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    return null;
  }
}

/** The sysfs folder of a block device number, or null (anonymous devices such as tmpfs or overlay). */
async function sysfsDir(major: number, minor: number): Promise<string | null> {
  try {
    return await realpath(`/sys/dev/block/${major}:${minor}`);
  } catch {
    return null;
  }
}

async function lsblk(devicePath: string): Promise<LsblkNode> {
  // MOUNTPOINTS (all mount points) needs util-linux 2.37; older lsblk only knows MOUNTPOINT.
  for (const mountColumn of ['MOUNTPOINTS', 'MOUNTPOINT']) {
    const result = await run('lsblk', ['-J', '-b', '-o', [...baseColumns, mountColumn].join(','), devicePath], { cwd: '/', reject: false, timeout: 30_000 });
    if (result.exitCode === 0) {
      const parsed = JSON.parse(result.stdout) as { blockdevices?: LsblkNode[] };
      const node = parsed.blockdevices?.[0];
      if (!node) throw new UsageError(`lsblk did not describe ${devicePath}; is it a block device?`);
      return node;
    }
    if (!/unknown column/i.test(result.stderr)) {
      throw new UsageError(`Cannot inspect ${devicePath}: lsblk failed (${result.stderr.trim().split('\n').pop() ?? `exit ${result.exitCode}`}).`);
    }
  }
  throw new UsageError(`Cannot inspect ${devicePath}: this lsblk supports neither MOUNTPOINTS nor MOUNTPOINT.`);
}

/**
 * Low-level probe of a device or image file (reads it, not the udev database): without udev, as in
 * containers, lsblk leaves FSTYPE, LABEL and PTTYPE empty, but blkid -p still finds them. Empty when
 * blkid finds nothing (or cannot run).
 */
export async function probe(devicePath: string): Promise<Record<string, string>> {
  const result = await run('blkid', ['-p', '-o', 'export', devicePath], { cwd: '/', reject: false, timeout: 30_000 }).catch(() => null);
  if (!result || result.exitCode !== 0) return {};
  const fields: Record<string, string> = {};
  for (const line of result.stdout.split('\n')) {
    const index = line.indexOf('=');
    if (index > 0) fields[line.slice(0, index)] = line.slice(index + 1);
  }
  return fields;
}

async function statBlock(devicePath: string): Promise<{ canonical: string; major: number; minor: number }> {
  let canonical: string;
  try {
    canonical = await realpath(devicePath);
  } catch {
    throw new UsageError(`${devicePath} does not exist; pass a whole-disk device such as /dev/sdb (see \`dubnium-seed drives\`).`);
  }
  const info = await stat(canonical);
  if (!info.isBlockDevice()) {
    throw new UsageError(`${devicePath} is not a block device; --device takes a whole disk such as /dev/sdb (use --target DIR for a folder, --image FILE for an image file).`);
  }
  return { canonical, ...splitDevno(info.rdev) };
}

/**
 * Describes a block device (disk, partition or loop device): size, flags, partitions with
 * filesystem and label, mount points, loop backing file, parent disk of a partition.
 * Throws UsageError when the path does not exist or is not a block device.
 */
export async function inspectBlockDevice(devicePath: string): Promise<BlockDeviceInfo> {
  const { canonical, major, minor } = await statBlock(devicePath);
  const sysDir = await sysfsDir(major, minor);
  const node = await lsblk(canonical);
  const kernelName = node.kname ?? (sysDir ? path.basename(sysDir) : path.basename(canonical));
  const type = node.type ?? 'disk';
  const isLoop = type === 'loop' || /^loop\d+$/.test(kernelName);
  let parentDisk: string | undefined;
  if (type === 'part') {
    const parentName = trimmed(node.pkname) ?? (sysDir ? path.basename(path.dirname(sysDir)) : undefined);
    if (parentName) parentDisk = parentName.startsWith('/') ? parentName : `/dev/${parentName}`;
  }
  const backingFile = isLoop ? ((await readSys(`/sys/block/${kernelName}/loop/backing_file`)) ?? undefined) : undefined;

  const partitions: BlockPartition[] = [];
  for (const child of node.children ?? []) {
    if (child.type !== 'part') continue;
    const childName = child.kname ?? child.name ?? '';
    const childPath = child.path ?? `/dev/${childName}`;
    let fstype = trimmed(child.fstype) ?? null;
    let label = trimmed(child.label) ?? null;
    if (fstype === null) {
      const fields = await probe(childPath);
      fstype = fields.TYPE ?? null;
      label = label ?? fields.LABEL ?? null;
    }
    const partNumber = Number(await readSys(`/sys/class/block/${childName}/partition`));
    partitions.push({
      path: childPath,
      size: Number(child.size ?? 0),
      fstype,
      label,
      mountpoints: nodeMounts(child),
      ...(Number.isInteger(partNumber) && partNumber > 0 ? { partNumber } : {}),
    });
  }

  const deviceProbe = type === 'part' ? {} : await probe(canonical);
  const model = trimmed(node.model);
  const vendor = trimmed(node.vendor);
  const transport = trimmed(node.tran);
  return {
    path: node.path ?? canonical,
    kernelName,
    type,
    size: Number(node.size ?? 0),
    readOnly: truthy(node.ro),
    removable: truthy(node.rm) || truthy(node.hotplug),
    isLoop,
    isVirtual: /^(zram|ram)\d+$/.test(kernelName),
    ...(backingFile ? { backingFile } : {}),
    ...(model ? { model } : {}),
    ...(vendor ? { vendor } : {}),
    ...(transport ? { transport } : {}),
    partitionTableType: deviceProbe.PTTYPE ?? null,
    partitions,
    mountpoints: nodeMounts(node),
    ...(parentDisk ? { parentDisk } : {}),
    devno: node['maj:min'] ?? `${major}:${minor}`,
  };
}

/** Partitions (or the device itself) that are mounted now, with their mount points. */
export function mountedPartitions(info: BlockDeviceInfo): { path: string; mountpoints: string[] }[] {
  const mounted = info.partitions.filter((partition) => partition.mountpoints.length > 0).map((partition) => ({ path: partition.path, mountpoints: partition.mountpoints }));
  if (info.mountpoints.length > 0) mounted.unshift({ path: info.path, mountpoints: info.mountpoints });
  return mounted;
}

/** One line naming mounted partitions and how to release them, for refusal messages. */
export function describeMounted(info: BlockDeviceInfo): string | null {
  const mounted = mountedPartitions(info);
  if (mounted.length === 0) return null;
  const list = mounted.map((entry) => `${entry.path} on ${entry.mountpoints.join(', ')}`).join('; ');
  const swaps = mounted.filter((entry) => entry.mountpoints.includes('[SWAP]')).map((entry) => `swapoff ${entry.path}`);
  const mounts = mounted.filter((entry) => !entry.mountpoints.includes('[SWAP]')).map((entry) => `umount ${entry.path}`);
  return `${info.path} has mounted partitions: ${list}. Unmount them first (${[...mounts, ...swaps].join(' && ')}), or eject them in the file manager.`;
}

/**
 * Whole disks under a sysfs block folder: a partition resolves to its disk; device-mapper, md and
 * similar stacked devices resolve through `slaves/` to every disk beneath them; a loop device is
 * itself a disk, and with `followLoops` the disks holding its backing file are added (a live
 * system's squashfs on the installer stick).
 */
async function wholeDisksOfSysDir(sysDir: string, followLoops: boolean, depth = 0): Promise<string[]> {
  if (depth > 8) return [];
  let diskDir = sysDir;
  if ((await readSys(path.join(sysDir, 'partition'))) !== null) diskDir = path.dirname(sysDir);
  const name = path.basename(diskDir);
  let slaves: string[] = [];
  try {
    slaves = await readdir(path.join(diskDir, 'slaves'));
  } catch {
    slaves = [];
  }
  if (slaves.length > 0) {
    const nested = await Promise.all(
      slaves.map(async (slave) => {
        try {
          return await wholeDisksOfSysDir(await realpath(`/sys/class/block/${slave}`), followLoops, depth + 1);
        } catch {
          return [];
        }
      }),
    );
    return [...new Set(nested.flat())];
  }
  const disks = [`/dev/${name}`];
  if (followLoops && /^loop\d+$/.test(name)) {
    const backing = await readSys(path.join(diskDir, 'loop', 'backing_file'));
    if (backing) disks.push(...(await disksHoldingPathInternal(backing.replace(/ \(deleted\)$/, ''), followLoops, depth + 1)));
  }
  return [...new Set(disks)];
}

interface MountEntry {
  source: string;
  target: string;
}

/** /proc/self/mounts, with the octal escapes (\040 for a space) decoded. */
async function readMounts(): Promise<MountEntry[]> {
  const content = (await readSys('/proc/self/mounts')) ?? (await readSys('/proc/mounts')) ?? '';
  const decode = (field: string) => field.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return content
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields.length >= 2)
    .map((fields) => ({ source: decode(fields[0] ?? ''), target: decode(fields[1] ?? '') }));
}

function isInside(child: string, parent: string): boolean {
  const relative = path.relative(parent, child);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

async function disksOfDeviceNode(devicePath: string, followLoops: boolean, depth: number): Promise<string[]> {
  try {
    const info = await stat(devicePath);
    if (!info.isBlockDevice()) return [];
    const { major, minor } = splitDevno(info.rdev);
    const dir = await sysfsDir(major, minor);
    return dir ? await wholeDisksOfSysDir(dir, followLoops, depth) : [];
  } catch {
    return [];
  }
}

async function disksHoldingPathInternal(target: string, followLoops: boolean, depth: number): Promise<string[]> {
  // A path that does not exist yet is held by the disk of its nearest existing ancestor.
  let existing = path.resolve(target);
  for (;;) {
    try {
      existing = await realpath(existing);
      break;
    } catch {
      const parent = path.dirname(existing);
      if (parent === existing) return [];
      existing = parent;
    }
  }
  const { dev } = await stat(existing);
  const { major, minor } = splitDevno(dev);
  const dir = await sysfsDir(major, minor);
  if (dir) return wholeDisksOfSysDir(dir, followLoops, depth);
  // Anonymous device numbers (btrfs subvolumes, overlay, tmpfs): fall back to the mount source.
  const mounts = (await readMounts()).filter((entry) => isInside(existing, entry.target)).sort((a, b) => b.target.length - a.target.length);
  const mount = mounts[0];
  if (!mount || !mount.source.startsWith('/dev/')) return [];
  return disksOfDeviceNode(mount.source, followLoops, depth);
}

/** Every whole-disk device holding `p` (several for RAID or LVM spanning disks); empty for tmpfs and the like. */
export async function disksHoldingPath(p: string): Promise<string[]> {
  return disksHoldingPathInternal(p, true, 0);
}

/** The whole-disk device holding a path (stat dev → /sys/dev/block/MAJ:MIN → parent), or null. */
export async function diskHoldingPath(p: string): Promise<string | null> {
  return (await disksHoldingPath(p))[0] ?? null;
}

/** Mount points whose disk is the running system (live systems add /iso and /nix/.ro-store). */
const systemMountTargets = ['/', '/boot', '/boot/efi', '/efi', '/nix', '/nix/store', '/usr', '/var', '/iso', '/nix/.ro-store', '/run/initramfs/live'] as const;

/** Disks holding /, /boot, /nix, /usr, /var and active swap: refused as targets, always. */
export async function findSystemDisks(): Promise<string[]> {
  const disks = new Set<string>();
  const mounts = await readMounts();
  const mountedTargets = new Set(mounts.map((entry) => entry.target));
  for (const target of systemMountTargets) {
    if (!mountedTargets.has(target) && target !== '/') continue;
    for (const disk of await disksHoldingPathInternal(target, true, 0).catch(() => [])) disks.add(disk);
    for (const entry of mounts.filter((mount) => mount.target === target && mount.source.startsWith('/dev/'))) {
      for (const disk of await disksOfDeviceNode(entry.source, true, 0)) disks.add(disk);
    }
  }
  const swaps = ((await readSys('/proc/swaps')) ?? '').split('\n').slice(1);
  for (const line of swaps) {
    const [source, kind] = line.trim().split(/\s+/);
    if (!source) continue;
    const decoded = source.replace(/\\040/g, ' ');
    const found = kind === 'file' ? await disksHoldingPathInternal(decoded, true, 0).catch(() => []) : await disksOfDeviceNode(decoded, true, 0);
    for (const disk of found) disks.add(disk);
  }
  return [...disks].sort();
}

/** Resolves `/dev/disk/by-id/...` and similar links to the kernel node, for comparisons. */
export async function canonicalDevice(devicePath: string): Promise<string> {
  try {
    return await realpath(devicePath);
  } catch {
    try {
      return path.resolve(path.dirname(devicePath), await readlink(devicePath));
    } catch {
      return devicePath;
    }
  }
}
