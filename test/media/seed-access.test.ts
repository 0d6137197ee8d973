import { createHash } from 'node:crypto';
import { open, readFile, writeFile, truncate } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError, VerificationError } from '../../src/errors.js';
import { verifySeed } from '../../src/core/verify-seed.js';
import { buildImage } from '../../src/media/image-build.js';
import { buildOnDevice } from '../../src/media/device-build.js';
import { withSeedFolder } from '../../src/media/seed-access.js';
import { tempDir } from '../helpers/tmp.js';
import { attach, detach, hybridIso, loopDisk, loopsOf, mountsOf, nodes, seedInputs, sh } from './media-fixture.js';

const sha = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');
const check = (target: string, options = {}) => withSeedFolder(target, async (root, info) => ({ report: await verifySeed({ root, scan: false }), info }), options);

async function ext4Image(): Promise<string> {
  const image = path.join(await tempDir(), 'seed.img');
  await buildImage({ image, label: 'DUBNIUM-SEED', filesystem: 'ext4', build: { ...(await seedInputs()), verify: false } });
  return image;
}

describe('withSeedFolder', () => {
  it('reads a partition image read-only: the image bytes do not change, nothing stays mounted or attached', async () => {
    const image = await ext4Image();
    const before = await sha(image);
    const { report, info } = await check(image);
    expect(report.ok).toBe(true);
    expect(info).toMatchObject({ access: 'mount', readOnly: true });
    expect(await sha(image)).toBe(before);
    expect(loopsOf(image)).toEqual([]);
  });

  it('writes are impossible inside the callback, and cleanup happens when the callback throws', async () => {
    const image = await ext4Image();
    await expect(withSeedFolder(image, (root) => writeFile(path.join(root, 'x'), 'y'))).rejects.toThrow(/EROFS|read-only/);
    await expect(withSeedFolder(image, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(loopsOf(image)).toEqual([]);
  });

  it('reads an ext4 image without mounting through debugfs', async () => {
    const image = await ext4Image();
    const { report, info } = await check(image, { withoutMount: true });
    expect(info.access).toBe('copy');
    expect(report.ok).toBe(true);
  });

  it('finds the seed partition on a whole disk by label, on a partition node, and in a whole-disk image', async () => {
    const iso = await hybridIso();
    const { image, device } = await loopDisk(128, iso);
    await buildOnDevice({ device, label: 'DUBNIUM-SEED', filesystem: 'ext4', allowFixedDisk: false, allowLarge: false, build: { ...(await seedInputs()), verify: false } });
    expect((await check(device)).info.partition).toBe(`${device}p3`);
    expect((await check(`${device}p3`)).report.ok).toBe(true);
    detach(device);
    const before = await sha(image);
    const whole = await check(image);
    expect(whole.report.ok).toBe(true);
    expect(whole.info.label).toBe('DUBNIUM-SEED');
    expect(await sha(image)).toBe(before);
    expect(loopsOf(image)).toEqual([]);
  });

  it('refuses a partition that is mounted elsewhere, pointing at its folder', async () => {
    const image = await ext4Image();
    const device = attach(image);
    const target = await tempDir();
    sh('mount', ['-o', 'ro', device, target]);
    try {
      await expect(check(device)).rejects.toThrow(new RegExp(`mounted on ${target}.*verify ${target}`));
    } finally {
      sh('umount', [target]);
    }
  });

  describe('hostile and broken media', () => {
    it('an empty partition is unusable input (exit 2)', async () => {
      const { device } = await loopDisk(64);
      sh('sfdisk', ['-q', device], 'label: dos\n,32MiB,L\n');
      const [partition] = await nodes(device, 1);
      const error = await check(partition!).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(UsageError);
      expect((error as Error).message).toMatch(/holds no filesystem/);
      await expect(check(device)).rejects.toThrow(/has no seed partition/);
    });

    it('another filesystem (swap, squashfs) is unusable input (exit 2)', async () => {
      const dir = await tempDir();
      const swap = path.join(dir, 'swap.img');
      await writeFile(swap, '');
      await truncate(swap, 16 * 1024 * 1024);
      sh('mkswap', [swap]);
      await expect(check(swap)).rejects.toThrow(/holds a swap filesystem, not a seed/);
      const squash = path.join(dir, 'root.squashfs');
      await writeFile(path.join(dir, 'file'), 'x');
      sh('mksquashfs', [path.join(dir, 'file'), squash, '-quiet', '-no-progress']);
      const error = await check(squash).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(UsageError);
      expect((error as Error).message).toMatch(/squashfs/);
    });

    it('an empty file and a missing path are unusable input', async () => {
      const empty = path.join(await tempDir(), 'empty.img');
      await writeFile(empty, '');
      await expect(check(empty)).rejects.toThrow(/empty file/);
      await expect(check('/nonexistent/seed.img')).rejects.toThrow(UsageError);
    });

    it('a damaged ext4 seed filesystem is a media problem (exit 3), with nothing left mounted', async () => {
      const image = await ext4Image();
      // Overwrite the block group descriptors (after the superblock): blkid still says ext4, mounting fails.
      const handle = await open(image, 'r+');
      await handle.write(Buffer.alloc(8192, 0xa5), 0, 8192, 2048);
      await handle.close();
      const error = await check(image).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(VerificationError);
      expect((error as VerificationError).exitCode).toBe(3);
      expect((error as Error).message).toMatch(/cannot be mounted read-only/);
      expect(loopsOf(image)).toEqual([]);
    });

    it('a seed partition without a manifest reads as incomplete, not as an error', async () => {
      const { device } = await loopDisk(64);
      sh('sfdisk', ['-q', device], 'label: dos\n,,L\n');
      const [partition] = await nodes(device, 1);
      sh('mkfs.ext4', ['-q', '-F', '-L', 'DUBNIUM-SEED', partition!]);
      const { report } = await check(device);
      expect(report.ok).toBe(false);
      expect(report.complete).toBe(false);
      expect(mountsOf(device)).toEqual([]);
    });
  });
});
