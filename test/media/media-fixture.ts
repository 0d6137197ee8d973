/**
 * Real media for the media tests: a small hybrid installer image made with xorriso (MBR plus a GPT
 * covering only the image, like a NixOS ISO), disk images attached with `losetup -P`, and small
 * seed inputs. Every loop device attached here, and anything still mounted from it, is released
 * after each test.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach } from 'vitest';
import type { BuildOptions } from '../../src/core/build-seed.js';
import { writeBundle } from '../helpers/bundles.js';
import { gitRepo, tempDir } from '../helpers/tmp.js';

const attached: string[] = [];

export function sh(command: string, args: string[], input?: string): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], input });
}

/** Mount points currently backed by `device` or one of its partitions. */
export function mountsOf(device: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[0] === device || fields[0]?.startsWith(`${device}p`))
    .map((fields) => fields[1]!);
}

/** Loop devices attached to `image` (empty when none). */
export function loopsOf(image: string): string[] {
  return sh('losetup', ['-j', image, '-n', '-O', 'NAME']).split('\n').map((line) => line.trim()).filter(Boolean);
}

/** Mounts under the temp folders this tool creates for itself. */
export function toolMounts(): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((target) => /dubnium-seed-mnt-/.test(target));
}

afterEach(() => {
  while (attached.length > 0) {
    const device = attached.pop()!;
    for (const target of mountsOf(device)) {
      try {
        sh('umount', ['-l', target]);
      } catch {
        // gone already
      }
    }
    try {
      sh('losetup', ['-d', device]);
    } catch {
      // detached by the test
    }
  }
});

if (!existsSync('/dev/loop-control')) {
  throw new Error('Loop devices are unavailable (no /dev/loop-control). The media tests need root and loop devices; run them where losetup works (CI allows it).');
}

/** A ~5 MiB hybrid ISO: MBR (whole-image partition 1, EFI partition 2) plus a GPT with its backup at the image's end. */
export async function hybridIso(): Promise<string> {
  const dir = await tempDir('dubnium-seed-iso-');
  const root = path.join(dir, 'root');
  await mkdir(path.join(root, 'boot'), { recursive: true });
  await writeFile(path.join(root, 'readme.txt'), 'installer\n');
  await writeFile(path.join(root, 'boot', 'blob'), createHash('sha256').update('x').digest().toString('hex').repeat(20000));
  const efi = path.join(root, 'boot', 'efi.img');
  await writeFile(efi, '');
  await truncate(efi, 2 * 1024 * 1024);
  sh('mkfs.vfat', [efi]);
  const mbr = path.join(dir, 'mbr.bin');
  await writeFile(mbr, Buffer.alloc(432));
  const iso = path.join(dir, 'installer.iso');
  sh('xorriso', ['-as', 'mkisofs', '-quiet', '-o', iso, '-V', 'NIXOS_ISO', '-J', '-R', '-isohybrid-mbr', mbr, '-e', 'boot/efi.img', '-no-emul-boot', '-isohybrid-gpt-basdat', root]);
  return iso;
}

/** A zeroed image of `sizeMiB`, optionally with `iso` written at its start, attached with -P. */
export async function loopDisk(sizeMiB: number, iso?: string): Promise<{ image: string; device: string }> {
  const dir = await tempDir('dubnium-seed-disk-');
  const image = path.join(dir, 'stick.img');
  await writeFile(image, '');
  await truncate(image, sizeMiB * 1024 * 1024);
  if (iso) sh('dd', [`if=${iso}`, `of=${image}`, 'conv=notrunc', 'status=none']);
  const device = attach(image);
  return { image, device };
}

/** Attaches `image` with partition scanning; detached after the test. */
export function attach(image: string, readOnly = false): string {
  const device = sh('losetup', ['-f', '--show', '-P', ...(readOnly ? ['-r'] : []), image]).trim();
  attached.push(device);
  return device;
}

/** Waits for partition nodes after attach or sfdisk (partx -u where devtmpfs lags). */
export async function nodes(device: string, count: number): Promise<string[]> {
  const wanted = Array.from({ length: count }, (_unused, index) => `${device}p${index + 1}`);
  for (let attempt = 0; attempt < 50; attempt += 1) {
    if (wanted.every((node) => existsSync(node))) return wanted;
    if (attempt % 10 === 2) sh('partx', ['-u', device]);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`partition nodes ${wanted.join(', ')} did not appear`);
}

/** Detaches now (the afterEach hook then skips it). */
export function detach(device: string): void {
  sh('losetup', ['-d', device]);
  attached.splice(attached.indexOf(device), 1);
}

/** sha256 of `length` bytes of `file` from `start`. */
export async function hashRange(file: string, start: number, length: number): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, start);
    return createHash('sha256').update(buffer).digest('hex');
  } finally {
    await handle.close();
  }
}

/**
 * The installer's area of a disk image, hashed: the boot code, disk id and MBR entries 1-2 of
 * sector 0, the boot signature, and every byte after sector 0 up to the ISO's end. (MBR entries
 * 3-4 at bytes 478-509 are where the seed partition is recorded.)
 */
export async function installerArea(image: string, isoBytes: number): Promise<string[]> {
  return [await hashRange(image, 0, 478), await hashRange(image, 510, 2), await hashRange(image, 512, isoBytes - 512)];
}

/** Build options over a tiny git repository and a generated bundle of `shards` × `shardBytes`. */
export async function seedInputs(spec: { shards?: number; shardBytes?: number } = {}): Promise<Omit<BuildOptions, 'target' | 'label'>> {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'hosts/dubnium.nix': '{ ... }: { networking.hostName = "dubnium"; }\n' });
  const models = await tempDir('dubnium-seed-models-');
  const bundle = path.join(models, 'tiny-demo');
  await writeBundle(bundle, { shards: spec.shards ?? 2, ...(spec.shardBytes ? { shardBytes: spec.shardBytes } : {}) });
  return {
    profile: null,
    source: { repo, includeUntracked: false, plainFolder: false, submodules: 'refuse' },
    models: [{ path: bundle }],
    modelStore: '/var/lib/dubnium/models',
    scan: { allowlist: [], operatorSecrets: false },
    verify: true,
  };
}
