import { stat, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { describeMounted, diskHoldingPath, disksHoldingPath, findSystemDisks, inspectBlockDevice, mountedPartitions, splitDevno } from '../../src/hardware/block-devices.js';
import { tempDir } from '../helpers/tmp.js';
import { mountTemp, partitionedLoop } from './loop-fixture.js';

describe('inspectBlockDevice on real loop devices', () => {
  it('describes a partitioned loop disk: size, backing file, table, partitions with filesystem and label', async () => {
    const loop = await partitionedLoop();
    const info = await inspectBlockDevice(loop.device);
    expect(info.path).toBe(loop.device);
    expect(info.kernelName).toBe(path.basename(loop.device));
    expect(info.type).toBe('loop');
    expect(info.isLoop).toBe(true);
    expect(info.isVirtual).toBe(false);
    expect(info.readOnly).toBe(false);
    expect(info.size).toBe(64 * 1024 * 1024);
    expect(info.backingFile).toBe(loop.image);
    expect(info.partitionTableType).toBe('dos');
    expect(info.parentDisk).toBeUndefined();
    expect(info.mountpoints).toEqual([]);
    expect(info.partitions).toHaveLength(2);
    const [first, second] = info.partitions;
    expect(first).toMatchObject({ path: loop.partitions[0], size: 32 * 1024 * 1024, fstype: 'ext4', label: 'SEEDTEST', mountpoints: [], partNumber: 1 });
    expect(second).toMatchObject({ path: loop.partitions[1], fstype: null, label: null, partNumber: 2 });
    expect(second!.size).toBe(64 * 1024 * 1024 - 32 * 1024 * 1024 - 1024 * 1024);
    expect(mountedPartitions(info)).toEqual([]);
    expect(describeMounted(info)).toBeNull();
  });

  it('resolves a partition path to its parent disk', async () => {
    const loop = await partitionedLoop();
    const info = await inspectBlockDevice(loop.partitions[0]!);
    expect(info.type).toBe('part');
    expect(info.parentDisk).toBe(loop.device);
    expect(info.size).toBe(32 * 1024 * 1024);
  });

  it('sees a read-only loop device as read-only', async () => {
    const loop = await partitionedLoop({ readOnly: true });
    const info = await inspectBlockDevice(loop.device);
    expect(info.readOnly).toBe(true);
  });

  it('reports mounted partitions and how to unmount them; a file on them is held by the loop disk', async () => {
    const loop = await partitionedLoop();
    const target = await mountTemp(loop.partitions[0]!);
    const info = await inspectBlockDevice(loop.device);
    expect(info.partitions[0]!.mountpoints).toEqual([target]);
    expect(mountedPartitions(info)).toEqual([{ path: loop.partitions[0], mountpoints: [target] }]);
    expect(describeMounted(info)).toContain(`umount ${loop.partitions[0]}`);
    await mkdir(path.join(target, 'repo'));
    await writeFile(path.join(target, 'repo', 'flake.nix'), '{}\n');
    expect(await diskHoldingPath(path.join(target, 'repo', 'flake.nix'))).toBe(loop.device);
    // A path that does not exist yet is held by the disk of its nearest existing folder.
    expect(await diskHoldingPath(path.join(target, 'repo', 'not', 'yet'))).toBe(loop.device);
  });

  it('refuses paths that are not block devices with a usage error', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'seed.img');
    await writeFile(file, 'x');
    await expect(inspectBlockDevice(file)).rejects.toThrow(UsageError);
    await expect(inspectBlockDevice(file)).rejects.toThrow(/not a block device.*--image FILE/);
    await expect(inspectBlockDevice('/dev/null')).rejects.toThrow(/not a block device/);
    await expect(inspectBlockDevice(dir)).rejects.toThrow(/not a block device/);
    await expect(inspectBlockDevice(path.join(dir, 'missing'))).rejects.toThrow(/does not exist/);
  });
});

describe('system disks and the disk holding a path', () => {
  it('finds the disk holding / and swap, and a file in /tmp lives on it', async () => {
    const systemDisks = await findSystemDisks();
    expect(systemDisks.length).toBeGreaterThan(0);
    for (const disk of systemDisks) expect((await stat(disk)).isBlockDevice()).toBe(true);
    const root = await diskHoldingPath('/');
    expect(root).not.toBeNull();
    expect(systemDisks).toContain(root);
    const file = path.join(await tempDir(), 'note.txt');
    await writeFile(file, 'hello');
    expect(systemDisks).toContain(await diskHoldingPath(file));
    // A whole disk, never a partition: no trailing partition number on nvme/mmc-style names.
    expect(root).not.toMatch(/p\d+$/);
  });

  it('returns nothing for memory filesystems', async () => {
    expect(await disksHoldingPath('/proc/self')).toEqual([]);
    expect(await diskHoldingPath('/dev/shm')).toBeNull();
  });

  it('splits Linux device numbers', () => {
    // 259:0 (an NVMe or loop partition) and 8:17 (sdb1); 254:300 uses the extended minor bits.
    expect(splitDevno((259 << 8) | 0)).toEqual({ major: 259, minor: 0 });
    expect(splitDevno((8 << 8) | 17)).toEqual({ major: 8, minor: 17 });
    const encoded = (300 & 0xff) | (254 << 8) | ((300 & ~0xff) << 12);
    expect(splitDevno(encoded)).toEqual({ major: 254, minor: 300 });
  });
});
