import { readdir, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { findSystemDisks } from '../../src/hardware/block-devices.js';
import { checkTargetDevice, classifyDrives, drivesToJson, formatDrives, type DriveClassification, type SafetyContext } from '../../src/hardware/drive-safety.js';
import { recordedSource } from '../../src/hardware/drives.js';
import { tempDir } from '../helpers/tmp.js';
import { mountTemp, partitionedLoop } from './loop-fixture.js';

const fixtures = path.resolve(import.meta.dirname, '../../fixtures/drivelist');

/** Recorded machines must not see this host's disks: systemDisks is pinned to []. */
async function classify(file: string, context: Partial<SafetyContext> = {}): Promise<DriveClassification> {
  const drives = await recordedSource(path.join(fixtures, file)).list();
  return classifyDrives(drives, { protectedPaths: [], systemDisks: [], ...context });
}

function summary(result: DriveClassification) {
  return {
    candidates: Object.fromEntries(result.candidates.map((verdict) => [verdict.drive.device, verdict.needsConfirmation])),
    excluded: Object.fromEntries(result.excluded.map((verdict) => [verdict.drive.device, verdict.reasons.map((reason) => reason.code)])),
  };
}

describe('classifyDrives over recorded machines', () => {
  it('laptop: the NVMe system disk is excluded, the SanDisk stick with the NixOS ISO is the candidate', async () => {
    const result = await classify('laptop-nvme-usb-iso.json');
    expect(summary(result)).toEqual({
      candidates: { '/dev/sda': [] },
      excluded: { '/dev/nvme0n1': ['system-drive', 'not-removable', 'too-large'] },
    });
    expect(result.excluded[0]!.reasons[0]!.message).toContain('/boot, /, /nix/store, [SWAP]');
  });

  it('SD card reader: the mmcblk card is a candidate, the SATA system disk is not', async () => {
    const result = await classify('sd-card-reader.json');
    expect(summary(result)).toEqual({
      candidates: { '/dev/mmcblk0': [] },
      excluded: { '/dev/sda': ['system-drive', 'not-removable', 'too-large'] },
    });
  });

  it('zram and a 1 TB USB SSD: zram is virtual although drivelist calls it removable; big drives need confirmation', async () => {
    const result = await classify('zram-usb-ssd.json');
    expect(summary(result)).toEqual({
      candidates: { '/dev/sda': ['not-removable', 'too-large'], '/dev/sdb': ['too-large'] },
      excluded: { '/dev/zram0': ['virtual-device'], '/dev/nvme0n1': ['system-drive', 'not-removable', 'too-large'] },
    });
    // Raising the threshold removes the size confirmation, never the fixed-disk one.
    const relaxed = await classify('zram-usb-ssd.json', { largeDriveBytes: 4e12 });
    expect(summary(relaxed).candidates).toEqual({ '/dev/sda': ['not-removable'], '/dev/sdb': [] });
  });

  it('a write-protected stick and an empty card reader are excluded', async () => {
    const result = await classify('read-only-usb.json');
    expect(summary(result)).toEqual({
      candidates: {},
      excluded: { '/dev/sda': ['system-drive', 'not-removable', 'too-large'], '/dev/sdb': ['read-only'], '/dev/sdc': ['no-medium'] },
    });
  });

  it('the USB disk holding the repository is refused; another stick stays a candidate', async () => {
    const repo = '/run/media/carol/WORK/src/dubnium-nixos';
    const model = '/home/carol/models/qwen2.5-7b-instruct';
    const result = await classify('workstation-repo-on-usb.json', { protectedPaths: [repo, model] });
    expect(summary(result)).toEqual({
      candidates: { '/dev/sdc': [] },
      excluded: { '/dev/nvme0n1': ['system-drive', 'holds-source-or-model', 'not-removable', 'too-large'], '/dev/sdb': ['holds-source-or-model'] },
    });
    const sdb = result.excluded.find((verdict) => verdict.drive.device === '/dev/sdb')!;
    expect(sdb.reasons[0]!.message).toContain(repo);
    // The longest mount wins: the repo is on the stick, not on the disk mounted at /.
    const nvme = result.excluded.find((verdict) => verdict.drive.device === '/dev/nvme0n1')!;
    expect(nvme.reasons[1]!.message).toContain(model);
    expect(nvme.reasons[1]!.message).not.toContain(repo);
  });

  it('a seed larger than a stick makes it too small', async () => {
    const result = await classify('workstation-repo-on-usb.json', { requiredBytes: 40e9 });
    expect(summary(result).excluded['/dev/sdc']).toEqual(['too-small']);
    expect(result.excluded.find((verdict) => verdict.drive.device === '/dev/sdc')!.reasons[0]!.message).toBe('too small: needs 40.0 GB, has 30.9 GB');
  });

  it('this VM: the vda system disk and zram0 leave no candidate', async () => {
    const result = await classify('this-vm.json');
    expect(summary(result)).toEqual({
      candidates: {},
      excluded: { '/dev/zram0': ['virtual-device'], '/dev/vda': ['system-drive', 'not-removable', 'too-large'] },
    });
  });

  it('trusts isSystem from native enumerators (macOS, Windows) but not from lsblk', async () => {
    const base = { device: '/dev/disk2', description: 'APPLE SSD', size: 500e9, isRemovable: false, isSystem: true, isVirtual: false, isReadOnly: false, mountpoints: [] };
    const native = await classifyDrives([{ ...base, enumerator: 'DiskArbitration', busType: 'PCI', isUSB: false, isCard: false, partitionTableType: 'gpt', raw: base }], { protectedPaths: [], systemDisks: [] });
    expect(native.excluded[0]!.reasons.map((reason) => reason.code)).toContain('system-drive');
    const linux = await classifyDrives([{ ...base, enumerator: 'lsblk:json', busType: 'SATA', isUSB: false, isCard: null, partitionTableType: 'gpt', raw: base }], { protectedPaths: [], systemDisks: [] });
    expect(linux.candidates[0]!.needsConfirmation).toEqual(['not-removable', 'too-large']);
  });
});

describe('formatDrives and drivesToJson', () => {
  it('lists candidates with size, bus, description and mounts, then excluded drives with reasons', async () => {
    const text = formatDrives(await classify('laptop-nvme-usb-iso.json'));
    const lines = text.split('\n');
    expect(lines[0]).toBe('Candidate drives:');
    expect(lines[2]).toMatch(/^ {2}\/dev\/sda +61\.5 GB +USB +SanDisk Ultra \(nixos-minimal-24\.11-x86_64, EFIBOOT\) +\/run\/media\/alice\/nixos-minimal-24\.11-x86_64 \[nixos-minimal-24\.11-x86_64\], \/run\/media\/alice\/EFIBOOT \[EFIBOOT\] +-$/);
    expect(text).toContain('\nExcluded:\n  /dev/nvme0n1  1.00 TB  Samsung SSD 980 PRO 1TB (ESP, nixos, swap)\n    - system drive: it holds /boot, /, /nix/store, [SWAP]');
    // Confirmation-only notes are not listed as exclusion reasons.
    expect(text).not.toContain('--allow-large; is this');
  });

  it('says what to do when nothing is eligible, and marks confirmations', async () => {
    expect(formatDrives(await classify('this-vm.json'))).toMatch(/^No candidate drives\. Plug in a USB stick or SD card, or pass --device PATH \/ --target DIR\.\n\nExcluded:\n {2}\/dev\/zram0 {2}no medium {2}virtual device\n {4}- virtual device/);
    const text = formatDrives(await classify('zram-usb-ssd.json'));
    expect(text).toMatch(/\/dev\/sda .*fixed disk: confirm \(--allow-fixed-disk\); large: confirm \(--allow-large\)/);
  });

  it('produces JSON without the raw drivelist object', async () => {
    const json = drivesToJson(await classify('sd-card-reader.json'));
    const parsed = JSON.parse(JSON.stringify(json)) as { candidates: Record<string, unknown>[]; excluded: Record<string, unknown>[] };
    expect(parsed.candidates[0]).toMatchObject({ device: '/dev/mmcblk0', isCard: true, eligible: true, needsConfirmation: [] });
    expect(parsed.candidates[0]).not.toHaveProperty('raw');
    expect(parsed.excluded[0]).toMatchObject({ device: '/dev/sda', eligible: false });
  });
});

describe('checkTargetDevice on real devices', () => {
  const permissive = { allowFixedDisk: true, allowLarge: true };

  it('accepts an explicitly named loop device and says what it is backed by', async () => {
    const loop = await partitionedLoop();
    const { info, warnings } = await checkTargetDevice(loop.device, { allowFixedDisk: false, allowLarge: false, context: { protectedPaths: [] } });
    expect(info.path).toBe(loop.device);
    expect(info.partitions).toHaveLength(2);
    expect(warnings).toEqual([`${loop.device} is a loop device backed by ${loop.image}; writing to it changes that file.`]);
  });

  it('reports mounted partitions as a warning naming them', async () => {
    const loop = await partitionedLoop();
    const target = await mountTemp(loop.partitions[0]!);
    const { warnings } = await checkTargetDevice(loop.device, { allowFixedDisk: false, allowLarge: false, context: { protectedPaths: [] } });
    expect(warnings[1]).toBe(`${loop.device} has mounted partitions: ${loop.partitions[0]} on ${target}. Unmount them first (umount ${loop.partitions[0]}), or eject them in the file manager.`);
  });

  it('refuses a read-only loop device', async () => {
    const loop = await partitionedLoop({ readOnly: true });
    await expect(checkTargetDevice(loop.device, { ...permissive, context: { protectedPaths: [] } })).rejects.toThrow(
      new UsageError(`Refusing ${loop.device}: the device is read-only (write-protect switch, or a loop device attached with -r).`),
    );
  });

  it('refuses the system disk even with --allow-fixed-disk and --allow-large', async () => {
    const systemDisks = await findSystemDisks();
    expect(systemDisks.length).toBeGreaterThan(0);
    for (const disk of systemDisks) {
      const attempt = checkTargetDevice(disk, { ...permissive, context: { protectedPaths: [] } });
      await expect(attempt).rejects.toThrow(UsageError);
      await expect(checkTargetDevice(disk, { ...permissive, context: { protectedPaths: [] } })).rejects.toThrow(/holds the running system/);
    }
  });

  it('refuses a partition path and names the whole disk to pass', async () => {
    const loop = await partitionedLoop();
    await expect(checkTargetDevice(loop.partitions[1]!, { ...permissive, context: { protectedPaths: [] } })).rejects.toThrow(
      `Refusing ${loop.partitions[1]}: it is a partition, and --device takes the whole disk. Pass --device ${loop.device}`,
    );
  });

  it('refuses the disk holding the repository or a model bundle', async () => {
    const loop = await partitionedLoop();
    const target = await mountTemp(loop.partitions[0]!);
    const repo = path.join(target, 'dubnium-nixos');
    await mkdir(repo);
    await writeFile(path.join(repo, 'flake.nix'), '{}\n');
    const elsewhere = await tempDir();
    await expect(checkTargetDevice(loop.device, { ...permissive, context: { protectedPaths: [elsewhere, repo] } })).rejects.toThrow(
      `Refusing ${loop.device}: it holds ${repo}, which is being copied.`,
    );
  });

  it('needs --allow-large above the threshold, and refuses a disk that is too small', async () => {
    const loop = await partitionedLoop();
    const context = { protectedPaths: [], largeDriveBytes: 32 * 1024 * 1024 };
    await expect(checkTargetDevice(loop.device, { allowFixedDisk: false, allowLarge: false, context })).rejects.toThrow(/more than 33\.6 MB.*pass --allow-large/);
    const { warnings } = await checkTargetDevice(loop.device, { allowFixedDisk: false, allowLarge: true, context });
    expect(warnings).toContain(`${loop.device} is larger than 33.6 MB (accepted because of --allow-large).`);
    await expect(checkTargetDevice(loop.device, { ...permissive, context: { protectedPaths: [], requiredBytes: 100e6 } })).rejects.toThrow(
      `Refusing ${loop.device}: too small, needs 100.0 MB, has 67.1 MB.`,
    );
  });

  it('refuses virtual devices and paths that are not block devices', async () => {
    const zram = (await readdir('/dev')).filter((name) => /^zram\d+$/.test(name));
    for (const name of zram) {
      await expect(checkTargetDevice(`/dev/${name}`, { ...permissive, context: { protectedPaths: [], systemDisks: [] } })).rejects.toThrow(/virtual memory-backed device/);
    }
    const file = path.join(await tempDir(), 'seed.img');
    await writeFile(file, '');
    await expect(checkTargetDevice(file, { ...permissive, context: { protectedPaths: [] } })).rejects.toThrow(UsageError);
    await expect(checkTargetDevice('/dev/null', { ...permissive, context: { protectedPaths: [] } })).rejects.toThrow(/not a block device/);
  });
});
