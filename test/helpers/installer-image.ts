/**
 * NixOS-shaped installer media made at test time with the real tools (xorriso, mkfs.vfat + mtools,
 * sfdisk): a FAT EFI image, an ISO 9660 image (Rock Ridge, Joliet, El Torito BIOS + EFI, isohybrid
 * MBR + GPT) and a stick (the hybrid ISO followed by a FAT seed partition in the MBR).
 *
 * The usual chain for a test that needs a whole installer:
 *
 *   const dir = await tempDir();
 *   const { iso } = await makeInstallerIso(dir, {
 *     store: squashfsPath,                 // becomes /nix-store.squashfs (a file path or bytes)
 *     initrd: initrdPath,                  // becomes /boot/initrd
 *     efi: { 'EFI/BOOT/BOOTX64.EFI': 'x' },// files of boot/efi.img (a FAT image, also the El Torito EFI image)
 *     extra: { 'etc/key': privateKey },    // anything else in the ISO tree
 *   });
 *   const stick = await makeStick(dir, iso, { 'seed/README': 'hi' });
 *
 * Lower-level pieces: `writeTree` (files, symlinks, sparse files with markers), `makeFatImage`, `makeIso`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFile, mkdir, open, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { ByteSource, FormatContext, FormatHandler, Member, UnscannedReason } from '../../src/core/scan/formats/types.js';

/** A sparse file of `size` bytes (holes read as zeros) with `markers` written at their offsets. */
export interface SparseFile {
  sparse: number;
  markers?: { offset: number; bytes: Buffer | string }[];
}
export interface SymlinkEntry {
  symlink: string;
}
/** Relative path -> content; a path ending in `/` is an empty folder. */
export type Tree = Record<string, string | Buffer | SparseFile | SymlinkEntry>;

export const ISOLINUX_DIR = '/usr/lib/ISOLINUX';
const MTOOLS_ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

/** Writes `tree` under `root` (folders made as needed). */
export async function writeTree(root: string, tree: Tree): Promise<void> {
  for (const [relative, content] of Object.entries(tree)) {
    const full = path.join(root, relative);
    if (relative.endsWith('/')) {
      await mkdir(full, { recursive: true });
      continue;
    }
    await mkdir(path.dirname(full), { recursive: true });
    if (typeof content === 'string' || Buffer.isBuffer(content)) await writeFile(full, content);
    else if ('symlink' in content) await symlink(content.symlink, full);
    else {
      await writeFile(full, '');
      await truncate(full, content.sparse);
      const handle = await open(full, 'r+');
      try {
        for (const marker of content.markers ?? []) await handle.write(Buffer.from(marker.bytes), 0, Buffer.byteLength(marker.bytes), marker.offset);
      } finally {
        await handle.close();
      }
    }
  }
}

export interface FatImageOptions {
  /** Image size in KiB (default 4096). */
  sizeKiB?: number;
  /** Force FAT12, FAT16 or FAT32 (default: mkfs.vfat's choice for the size). */
  fatBits?: 12 | 16 | 32;
  label?: string;
  /** Cluster size in sectors (mkfs.vfat -s). */
  sectorsPerCluster?: number;
}

/** A FAT image at `file` holding `tree` (long names, folders), made with `mkfs.vfat -C` and `mcopy -s`. */
export async function makeFatImage(file: string, tree: Tree, options: FatImageOptions = {}): Promise<string> {
  const args = ['-C', '-n', options.label ?? 'EFIBOOT'];
  if (options.fatBits) args.push('-F', String(options.fatBits));
  if (options.sectorsPerCluster) args.push('-s', String(options.sectorsPerCluster));
  execFileSync('mkfs.vfat', [...args, file, String(options.sizeKiB ?? 4096)], { stdio: 'ignore' });
  const staging = `${file}.tree`;
  await mkdir(staging, { recursive: true });
  await writeTree(staging, tree);
  const top = new Set(Object.keys(tree).map((relative) => relative.split('/')[0]!));
  for (const entry of top) {
    execFileSync('mcopy', ['-s', '-i', file, path.join(staging, entry), '::/'], { env: MTOOLS_ENV, stdio: ['ignore', 'ignore', 'pipe'] });
  }
  return file;
}

export interface IsoOptions {
  /** Rock Ridge names and modes (`-R`, default true). */
  rockRidge?: boolean;
  /** Joliet names (`-J`, default true). */
  joliet?: boolean;
  /** ISO level 3 allows files over 4 GiB as several extents (default true). */
  isoLevel?: 1 | 2 | 3;
  /** El Torito BIOS image (relative path in the folder), e.g. `isolinux/isolinux.bin`; the boot catalog goes beside it. */
  biosBoot?: string;
  /** El Torito EFI image (relative path), e.g. `boot/efi.img`. */
  efiBoot?: string;
  /** isohybrid MBR (and GPT when there is an EFI image), as NixOS makes it (default: true when `biosBoot` is set). */
  hybrid?: boolean;
  /** Paths (relative) hidden from the ISO 9660 and Joliet trees: still in the image, reachable only by El Torito. */
  hide?: string[];
  /** Write the image with holes (for images holding big sparse files). */
  sparseOutput?: boolean;
  volumeId?: string;
  /** Move folders deeper than 8 levels into /rr_moved (Rock Ridge CL/RE entries tie them back), as old mkisofs did. */
  relocateDeepFolders?: boolean;
}

/** Builds an ISO 9660 image of `folder` at `out` with `xorriso -as mkisofs`, the way NixOS's iso-image.nix does. */
export async function makeIso(folder: string, out: string, options: IsoOptions = {}): Promise<string> {
  const native = options.relocateDeepFolders ? ['-compliance', 'deep_paths_off', '-rr_reloc_dir', 'rr_moved'] : [];
  const args = [...native, '-as', 'mkisofs', '-quiet', '-iso-level', String(options.isoLevel ?? 3), '-V', options.volumeId ?? 'NIXOS_ISO'];
  // xorriso's mkisofs writes Rock Ridge unless told --norock, -R or not.
  args.push(options.rockRidge ?? true ? '-R' : '--norock');
  if (options.joliet ?? true) args.push('-J', '-joliet-long');
  // xorriso matches -hide against the disk path of the file.
  for (const hidden of options.hide ?? []) args.push('-hide', path.join(folder, hidden), '-hide-joliet', path.join(folder, hidden));
  if (options.biosBoot) {
    if (options.hybrid ?? true) args.push('-isohybrid-mbr', path.join(ISOLINUX_DIR, 'isohdpfx.bin'));
    args.push('-c', `${path.dirname(options.biosBoot)}/boot.cat`, '-b', options.biosBoot, '-no-emul-boot', '-boot-load-size', '4', '-boot-info-table');
  }
  if (options.efiBoot) {
    if (options.biosBoot) args.push('-eltorito-alt-boot');
    else args.push('-c', 'boot.cat');
    args.push('-e', options.efiBoot, '-no-emul-boot');
    if (options.biosBoot && (options.hybrid ?? true)) args.push('-isohybrid-gpt-basdat');
  }
  if (!options.sparseOutput) {
    execFileSync('xorriso', [...args, '-o', out, folder], { stdio: ['ignore', 'ignore', 'pipe'] });
    return out;
  }
  // xorriso writes every zero; dd conv=sparse turns the zero blocks back into holes on the way to disk.
  await new Promise<void>((resolve, reject) => {
    const xorriso = spawn('xorriso', [...args, '-o', '-', folder], { stdio: ['ignore', 'pipe', 'ignore'] });
    const cp = spawn('dd', [`of=${out}`, 'bs=1M', 'iflag=fullblock', 'conv=sparse', 'status=none'], { stdio: [xorriso.stdout, 'inherit', 'inherit'] });
    let pending = 2;
    const done = (name: string) => (code: number | null) => {
      if (code !== 0) reject(new Error(`${name} exited with ${code}`));
      else if (--pending === 0) resolve();
    };
    xorriso.on('error', reject).on('exit', done('xorriso'));
    cp.on('error', reject).on('exit', done('dd'));
  });
  return out;
}

export interface InstallerIsoOptions extends Pick<IsoOptions, 'rockRidge' | 'joliet' | 'hybrid' | 'sparseOutput'> {
  /** `/nix-store.squashfs`: a file to copy or its bytes (default: a few bytes that look like a squashfs superblock). */
  store?: string | Buffer | SparseFile;
  /** `/boot/initrd`: a file to copy or its bytes. */
  initrd?: string | Buffer;
  /** Files of `/boot/efi.img` (default: `EFI/BOOT/BOOTX64.EFI`). */
  efi?: Tree;
  /** More files in the ISO tree. */
  extra?: Tree;
  /** Hide `boot/efi.img` from the directory trees (then only El Torito reaches it). */
  hideEfiImage?: boolean;
}

/** The tree folder and image of a NixOS-shaped installer ISO (isolinux BIOS boot, EFI boot image, hybrid MBR + GPT). */
export async function makeInstallerIso(dir: string, options: InstallerIsoOptions = {}): Promise<{ iso: string; folder: string; efiImage: string }> {
  const folder = path.join(dir, 'iso-root');
  await mkdir(path.join(folder, 'isolinux'), { recursive: true });
  await mkdir(path.join(folder, 'boot'), { recursive: true });
  await copyFile(path.join(ISOLINUX_DIR, 'isolinux.bin'), path.join(folder, 'isolinux/isolinux.bin'));
  await writeFile(path.join(folder, 'isolinux/isolinux.cfg'), 'DEFAULT boot\nLABEL boot\n  KERNEL /boot/bzImage\n  APPEND initrd=/boot/initrd init=/nix/store/x-nixos-system/init\n');
  await writeFile(path.join(folder, 'boot/bzImage'), Buffer.concat([Buffer.alloc(514), Buffer.from('HdrS')]));
  await writeFile(path.join(folder, 'version.txt'), '25.05.20260101.abcdef0\n');
  const place = async (relative: string, content: string | Buffer | SparseFile) => {
    if (typeof content === 'string') await copyFile(content, path.join(folder, relative));
    else await writeTree(folder, { [relative]: content });
  };
  await place('nix-store.squashfs', options.store ?? Buffer.concat([Buffer.from('hsqs'), Buffer.alloc(4092)]));
  await place('boot/initrd', options.initrd ?? Buffer.from('070701'));
  if (options.extra) await writeTree(folder, options.extra);
  const efiImage = path.join(folder, 'boot/efi.img');
  await makeFatImage(efiImage, options.efi ?? { 'EFI/BOOT/BOOTX64.EFI': Buffer.alloc(64 * 1024, 0x4d) }, { sizeKiB: 4096 });
  await removeStaging(efiImage);
  const iso = path.join(dir, 'nixos.iso');
  await makeIso(folder, iso, {
    ...options,
    biosBoot: 'isolinux/isolinux.bin',
    efiBoot: 'boot/efi.img',
    ...(options.hideEfiImage ? { hide: ['boot/efi.img'] } : {}),
  });
  return { iso, folder, efiImage };
}

async function removeStaging(fatImage: string): Promise<void> {
  await rm(`${fatImage}.tree`, { recursive: true, force: true });
}

/**
 * A stick image: `iso` at offset 0, then a FAT seed partition (label `label`, holding `seed`) appended
 * to the MBR with `sfdisk --append` after `gapMiB` of free space, as dubnium-seed writes a stick.
 */
export async function makeStick(dir: string, iso: string, seed: Tree, label = 'DUBNIUMSEED', gapMiB = 1): Promise<{ stick: string; seedOffset: number; seedBytes: number }> {
  const stick = path.join(dir, 'stick.img');
  await copyFile(iso, stick);
  const isoBytes = statSync(iso).size;
  const MiB = 1024 * 1024;
  const seedOffset = Math.ceil(isoBytes / MiB) * MiB + gapMiB * MiB;
  const seedBytes = 8 * MiB;
  await truncate(stick, seedOffset + seedBytes);
  execFileSync('sfdisk', ['--append', '--no-reread', '--no-tell-kernel', '-q', stick], { input: `start=${seedOffset / 512}, size=${seedBytes / 512}, type=c\n`, stdio: ['pipe', 'ignore', 'pipe'] });
  const fat = path.join(dir, 'seed.fat');
  if (existsSync(fat)) throw new Error(`${fat} already exists`);
  await makeFatImage(fat, seed, { sizeKiB: seedBytes / 1024, label, fatBits: 16, sectorsPerCluster: 1 });
  await removeStaging(fat);
  execFileSync('dd', [`if=${fat}`, `of=${stick}`, 'bs=1M', `seek=${seedOffset / MiB}`, 'conv=notrunc,fsync', 'status=none']);
  return { stick, seedOffset, seedBytes };
}

/** What a handler's walk gave: the members (their `stream()` not yet consumed), and what it reported. */
export interface Walk {
  /** The files (every member but the raw `(free space)` one). */
  members: Member[];
  /** The filesystem's `(free space)` member, when it has one (see formats/free-space.ts). */
  free?: Member;
  unreadable: { name: string | undefined; reason: UnscannedReason; message: string }[];
  problems: { name: string; message: string }[];
}

/**
 * Runs `handler.members` over `input` to the end and collects what it gave. Only for handlers whose
 * members are in-place slices (`source`), which stay readable after the walk moves on (iso9660, fat,
 * partitions); a streaming handler's member must be read before the next is asked for.
 */
export async function walkMembers(handler: FormatHandler, input: ByteSource, signal?: AbortSignal): Promise<Walk> {
  const walk: Walk = { members: [], unreadable: [], problems: [] };
  const context: FormatContext = {
    ...(signal ? { signal } : {}),
    unreadable: (name, reason, message) => walk.unreadable.push({ name, reason, message }),
    problem: (name, message) => walk.problems.push({ name, message }),
  };
  for await (const member of handler.members(input, context)) {
    if (member.raw) walk.free = member;
    else walk.members.push(member);
  }
  return walk;
}

/** All bytes of a member through its `stream()` (small members in tests only). */
export async function memberBytes(member: Member): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of member.stream()) chunks.push(chunk);
  return Buffer.concat(chunks);
}
