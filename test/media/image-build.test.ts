import { readFile, stat, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { verifySeed } from '../../src/core/verify-seed.js';
import { buildImage, defaultImageBytes } from '../../src/media/image-build.js';
import { withSeedFolder } from '../../src/media/seed-access.js';
import { tempDir } from '../helpers/tmp.js';
import { loopsOf, seedInputs, sh } from './media-fixture.js';

const MiB = 1024 * 1024;
const verifyImage = (image: string) => withSeedFolder(image, async (root, info) => ({ report: await verifySeed({ root, scan: { allowlist: [], operatorSecrets: false } }), info }));

describe('buildImage', () => {
  it('makes an ext4 partition image with mkfs.ext4 -d, labelled, verified, renamed from .partial', async () => {
    const dir = await tempDir();
    const image = path.join(dir, 'seed.img');
    const steps: string[] = [];
    const result = await buildImage({ image, label: 'DUBNIUM-SEED', filesystem: 'ext4', build: await seedInputs(), onStep: (step, state) => steps.push(`${step}:${state}`) });
    expect(result.image).toBe(image);
    expect(result.verify?.ok).toBe(true);
    expect(steps).toContain('format:done');
    const size = (await stat(image)).size;
    expect(size).toBe(result.size);
    expect(size % MiB).toBe(0);
    await expect(stat(`${image}.partial`)).rejects.toThrow();
    expect(sh('blkid', ['-p', '-o', 'value', '-s', 'TYPE', image]).trim()).toBe('ext4');
    expect(sh('blkid', ['-p', '-o', 'value', '-s', 'LABEL', image]).trim()).toBe('DUBNIUM-SEED');
    // Files belong to root on the image, whoever built it.
    expect(sh('debugfs', ['-R', 'stat /dubnium-seed.json', image])).toMatch(/User:\s+0\s+Group:\s+0/);

    const { report, info } = await verifyImage(image);
    expect(report.ok).toBe(true);
    expect(report.files).toBe(result.manifest.files.length);
    expect(info).toMatchObject({ partition: image, filesystem: 'ext4', label: 'DUBNIUM-SEED', readOnly: true });
    expect(loopsOf(image)).toEqual([]);
  });

  it('makes a FAT partition image with mkfs.vfat and mtools, without mounting', async () => {
    const image = path.join(await tempDir(), 'seed-fat.img');
    const result = await buildImage({ image, size: '48M', label: 'SEEDFAT', filesystem: 'fat', build: await seedInputs() });
    expect((await stat(image)).size).toBe(48 * MiB);
    expect(result.verify?.ok).toBe(true);
    expect(sh('blkid', ['-p', '-o', 'value', '-s', 'TYPE', image]).trim()).toBe('vfat');
    const { report, info } = await verifyImage(image);
    expect(info).toMatchObject({ filesystem: 'vfat', label: 'SEEDFAT', access: 'copy' });
    expect(report.ok).toBe(true);
  });

  it('makes an exFAT image as root through a loop device and exfat-fuse', async () => {
    const image = path.join(await tempDir(), 'seed-exfat.img');
    const result = await buildImage({ image, label: 'SEEDX', filesystem: 'exfat', build: await seedInputs() });
    expect(result.verify?.ok).toBe(true);
    expect(sh('blkid', ['-p', '-o', 'value', '-s', 'TYPE', image]).trim()).toBe('exfat');
    expect(loopsOf(image)).toEqual([]);
    expect((await verifyImage(image)).report.ok).toBe(true);
  });

  it('refuses a --size too small with what it needs and has, leaving no file behind', async () => {
    const image = path.join(await tempDir(), 'small.img');
    const error = await buildImage({ image, size: '4M', label: 'DUBNIUM-SEED', filesystem: 'ext4', build: await seedInputs() }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toMatch(/needs \d+(\.\d)? MiB, has 4\.0 MiB/);
    await expect(stat(image)).rejects.toThrow();
    await expect(stat(`${image}.partial`)).rejects.toThrow();
  });

  it('refuses a bad --size, a long FAT label, and a folder as image path', async () => {
    const dir = await tempDir();
    const build = await seedInputs();
    await expect(buildImage({ image: path.join(dir, 'a.img'), size: 'lots', label: 'X', filesystem: 'ext4', build })).rejects.toThrow(/not a size/);
    await expect(buildImage({ image: path.join(dir, 'b.img'), label: 'DUBNIUM-SEED', filesystem: 'fat', build })).rejects.toThrow(/fat allows 11/);
    await expect(buildImage({ image: dir, label: 'X', filesystem: 'ext4', build })).rejects.toThrow(/not a regular file/);
  });

  it('replaces an existing image only once the new one is complete', async () => {
    const image = path.join(await tempDir(), 'seed.img');
    await writeFile(image, 'old image');
    const build = await seedInputs();
    await expect(buildImage({ image, size: '1M', label: 'S', filesystem: 'ext4', build })).rejects.toThrow(UsageError);
    expect(await readFile(image, 'utf8')).toBe('old image');
    await buildImage({ image, label: 'S', filesystem: 'ext4', build });
    expect(execFileSync('blkid', ['-p', '-o', 'value', '-s', 'TYPE', image], { encoding: 'utf8' }).trim()).toBe('ext4');
  });

  it('sizes the default image as content + 10% + 16 MiB, rounded to MiB', () => {
    expect(defaultImageBytes(100 * MiB)).toBe(126 * MiB);
    expect(defaultImageBytes(1)).toBe(17 * MiB);
  });
});
