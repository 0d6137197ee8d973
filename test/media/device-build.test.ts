import { stat } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CancelledError, UsageError } from '../../src/errors.js';
import { verifySeed } from '../../src/core/verify-seed.js';
import { buildOnDevice, type DeviceBuildOptions } from '../../src/media/device-build.js';
import { withSeedFolder } from '../../src/media/seed-access.js';
import { attach, detach, nodes, hybridIso, installerArea, loopDisk, mountsOf, seedInputs, sh } from './media-fixture.js';
import { mountTemp } from '../hardware/loop-fixture.js';

interface SfdiskEntry {
  node: string;
  start: number;
  size: number;
  type: string;
}
function table(device: string): { label: string; partitions: SfdiskEntry[] } {
  return (JSON.parse(sh('sfdisk', ['--json', device])) as { partitiontable: { label: string; partitions: SfdiskEntry[] } }).partitiontable;
}

async function options(device: string, extra: Partial<DeviceBuildOptions> = {}, spec?: { shards?: number; shardBytes?: number }): Promise<DeviceBuildOptions> {
  return { device, label: 'DUBNIUM-SEED', filesystem: 'ext4', allowFixedDisk: false, allowLarge: false, build: await seedInputs(spec), ...extra };
}

const verifyOn = (device: string) => withSeedFolder(device, async (root, info) => ({ report: await verifySeed({ root, scan: { allowlist: [], operatorSecrets: false } }), info }));

describe('buildOnDevice on a stick holding a hybrid installer image', () => {
  it('appends an ext4 seed partition after the image, builds, and leaves the installer byte for byte', async () => {
    const iso = await hybridIso();
    const isoBytes = (await stat(iso)).size;
    const { image, device } = await loopDisk(256, iso);
    const before = table(device);
    expect(before.label).toBe('dos');
    const areaBefore = await installerArea(image, isoBytes);
    const gptBefore = sh('sh', ['-c', `grep -c -a "EFI PART" ${image}`]).trim();

    const steps: string[] = [];
    const result = await buildOnDevice(await options(device, { onStep: (step, state) => steps.push(`${step}:${state}`) }));
    expect(result.created).toBe(true);
    expect(result.partition).toBe(`${device}p3`);
    expect(result.filesystem).toBe('ext4');
    expect(result.verify?.ok).toBe(true);
    expect(steps).toEqual(expect.arrayContaining(['partition:done', 'format:done', 'mount:done', 'copy:done', 'unmount:done']));
    expect(mountsOf(device)).toEqual([]);

    const after = table(device);
    expect(after.partitions.slice(0, before.partitions.length)).toEqual(before.partitions);
    const seed = after.partitions[before.partitions.length]!;
    expect(seed.type).toBe('83');
    expect(seed.start * 512).toBeGreaterThanOrEqual(isoBytes);
    expect(seed.start % 2048).toBe(0);
    sh('sync', []);
    expect(await installerArea(image, isoBytes)).toEqual(areaBefore);
    // The GPT's primary and backup headers are still there, untouched.
    expect(sh('sh', ['-c', `grep -c -a "EFI PART" ${image}`]).trim()).toBe(gptBefore);
    expect(sh('blkid', ['-p', '-o', 'value', '-s', 'LABEL', `${device}p3`]).trim()).toBe('DUBNIUM-SEED');

    const { report, info } = await verifyOn(device);
    expect(report.ok).toBe(true);
    expect(report.files).toBe(result.manifest.files.length);
    expect(info).toMatchObject({ partition: `${device}p3`, filesystem: 'ext4', label: 'DUBNIUM-SEED', readOnly: true });
  });

  it('resumes after an interruption: the partition is reused and finished files are kept', async () => {
    const iso = await hybridIso();
    const { device } = await loopDisk(256, iso);
    const controller = new AbortController();
    const first = await options(device, { signal: controller.signal, onProgress: (progress) => progress.phase === 'copy' && progress.bytes > 20 * 1024 * 1024 && controller.abort() }, { shards: 3, shardBytes: 12 * 1024 * 1024 });
    await expect(buildOnDevice(first)).rejects.toBeInstanceOf(CancelledError);
    expect(mountsOf(device)).toEqual([]);
    const partitions = table(device).partitions.length;
    await expect(verifyOn(device)).resolves.toMatchObject({ report: { ok: false, complete: false } });

    const second = await buildOnDevice({ ...first, signal: undefined, onProgress: undefined });
    expect(second.created).toBe(false);
    expect(second.reused.length).toBeGreaterThan(0);
    expect(second.verify?.ok).toBe(true);
    expect(table(device).partitions.length).toBe(partitions);
    expect((await verifyOn(device)).report.ok).toBe(true);
  });

  it('refuses a stick too small for the seed, naming what it needs and has, and changes nothing', async () => {
    const iso = await hybridIso();
    const { image, device } = await loopDisk(40, iso);
    const isoBytes = (await stat(iso)).size;
    const areaBefore = await installerArea(image, isoBytes);
    const before = sh('sfdisk', ['--dump', device]);
    const error = await buildOnDevice(await options(device, {}, { shards: 2, shardBytes: 24 * 1024 * 1024 })).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).exitCode).toBe(2);
    expect((error as Error).message).toMatch(/too small.*needs \d+(\.\d)? MiB, has \d+(\.\d)? MiB/);
    expect(sh('sfdisk', ['--dump', device])).toBe(before);
    expect(await installerArea(image, isoBytes)).toEqual(areaBefore);
  });

  it('writes the installer image first with --iso, verified by reading back, then adds the seed', async () => {
    const iso = await hybridIso();
    const isoBytes = (await stat(iso)).size;
    const { image, device } = await loopDisk(128);
    const result = await buildOnDevice(await options(device, { iso }));
    expect(result.installer).toMatchObject({ bytes: isoBytes, written: true });
    expect(result.partition).toBe(`${device}p3`);
    const { createHash } = await import('node:crypto');
    const { readFile } = await import('node:fs/promises');
    const isoBytesRead = await readFile(iso);
    const disk = await readFile(image);
    // Apart from MBR entries 3-4 (the seed partition), the disk starts with the ISO exactly.
    isoBytesRead.copy(disk, 478, 478, 510);
    expect(createHash('sha256').update(disk.subarray(0, isoBytes)).digest('hex')).toBe(createHash('sha256').update(isoBytesRead).digest('hex'));

    // Again with the same image: the installer is recognised and kept, the seed partition reused.
    const again = await buildOnDevice(await options(device, { iso }));
    expect(again.installer?.written).toBe(false);
    expect(again.created).toBe(false);
    expect(again.verify?.ok).toBe(true);
  });

  it('refuses --iso on a stick too small for the image and the seed, before writing anything', async () => {
    const iso = await hybridIso();
    const { image, device } = await loopDisk(16);
    const error = await buildOnDevice(await options(device, { iso })).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toMatch(/installer image and the seed need .* has 16\.0 MiB/);
    expect(sh('sh', ['-c', `tr -d '\\0' < ${image} | wc -c`]).trim()).toBe('0');
  });

  it('reuses a partition already labelled for the seed, even on a GPT disk, without changing the table', async () => {
    const { image, device } = await loopDisk(96);
    sh('sfdisk', ['-q', device], 'label: gpt\n,16MiB\n,,L\n');
    detach(device);
    const again = attach(image);
    const [, seedPartition] = await nodes(again, 2);
    sh('mkfs.ext4', ['-q', '-F', '-L', 'DUBNIUM-SEED', seedPartition!]);
    const before = sh('sfdisk', ['--dump', again]);
    const result = await buildOnDevice(await options(again));
    expect(result).toMatchObject({ created: false, partition: seedPartition, filesystem: 'ext4' });
    expect(result.verify?.ok).toBe(true);
    expect(sh('sfdisk', ['--dump', again])).toBe(before);
  });

  it('builds an exFAT seed partition through exfatprogs and exfat-fuse', async () => {
    const iso = await hybridIso();
    const { device } = await loopDisk(256, iso);
    const result = await buildOnDevice(await options(device, { filesystem: 'exfat', label: 'DUBNIUMSEED' }));
    expect(result.filesystem).toBe('exfat');
    expect(table(device).partitions.at(-1)?.type).toBe('7');
    // No partition carries the default label: the seed partition is found by its manifest.
    const { report, info } = await verifyOn(device);
    expect(info.filesystem).toBe('exfat');
    expect(report.ok).toBe(true);
  });

  it('builds a FAT seed partition through mtools and reads it back', async () => {
    const { device } = await loopDisk(128);
    const result = await buildOnDevice(await options(device, { filesystem: 'fat', label: 'SEEDFAT' }));
    expect(result.filesystem).toBe('fat');
    expect(result.verify?.ok).toBe(true);
    const { report, info } = await withSeedFolder(device, async (root, access) => ({ report: await verifySeed({ root, scan: false }), info: access }), { label: 'SEEDFAT' });
    expect(info).toMatchObject({ filesystem: 'vfat', access: 'copy' });
    expect(report.ok).toBe(true);
  });

  it('gives a blank stick a fresh MBR with only the seed partition', async () => {
    const { device } = await loopDisk(96);
    const result = await buildOnDevice(await options(device));
    expect(result.created).toBe(true);
    const fresh = table(device);
    expect(fresh.label).toBe('dos');
    expect(fresh.partitions).toHaveLength(1);
    expect(fresh.partitions[0]).toMatchObject({ node: `${device}p1`, start: 2048, type: '83' });
    expect((await verifyOn(device)).report.ok).toBe(true);
  });

  it('refuses a label longer than the filesystem allows before touching the stick', async () => {
    const { device } = await loopDisk(96);
    await expect(buildOnDevice(await options(device, { filesystem: 'exfat', label: 'DUBNIUM-SEED' }))).rejects.toThrow(/exfat allows 11/);
    expect(() => sh('sfdisk', ['--dump', device])).toThrow();
  });

  it('refuses a stick with a partition mounted elsewhere, naming it and how to unmount', async () => {
    const { image, device } = await loopDisk(96);
    sh('sfdisk', ['-q', device], 'label: dos\n,32MiB,L\n');
    detach(device);
    const again = attach(image);
    await nodes(again, 1);
    sh('mkfs.ext4', ['-q', '-F', `${again}p1`]);
    const where = await mountTemp(`${again}p1`);
    await expect(buildOnDevice(await options(again))).rejects.toThrow(new RegExp(`${again}p1 on ${where}.*umount ${again}p1`));
  });

  it('refuses layouts it does not understand: GPT, extended partitions, a filesystem on the bare device', async () => {
    const gpt = await loopDisk(96);
    sh('sfdisk', ['-q', gpt.device], 'label: gpt\n,16MiB\n');
    await expect(buildOnDevice(await options(gpt.device))).rejects.toThrow(/gpt partition table/);

    const extended = await loopDisk(96);
    sh('sfdisk', ['-q', extended.device], 'label: dos\n,16MiB,L\n,,E\n');
    await expect(buildOnDevice(await options(extended.device))).rejects.toThrow(/extended partition/);

    const bare = await loopDisk(96);
    sh('mkfs.ext4', ['-q', '-F', bare.device]);
    await expect(buildOnDevice(await options(bare.device))).rejects.toThrow(/ext4 filesystem without a partition table/);
  });

  it('refuses a partition path and a read-only device (drive safety runs first)', async () => {
    const { image, device } = await loopDisk(96);
    sh('sfdisk', ['-q', device], 'label: dos\n,32MiB,L\n');
    detach(device);
    const again = attach(image);
    await nodes(again, 1);
    await expect(buildOnDevice(await options(`${again}p1`))).rejects.toThrow(/it is a partition/);
    detach(again);
    const readOnly = attach(image, true);
    await expect(buildOnDevice(await options(readOnly))).rejects.toThrow(/read-only/);
  });
});
