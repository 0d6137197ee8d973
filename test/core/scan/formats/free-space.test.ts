/**
 * A filesystem's free space is scanned (formats/free-space.ts): a key in a deleted file, or left on a
 * reused stick under a freshly made filesystem, is found and named `(free space)`; the blocks files
 * hold are not read twice; the free bytes are read raw, never opened as a container. Real mkfs.ext4,
 * debugfs, mkfs.vfat, mtools, mkfs.exfat and exfat-fuse; keys made at test time.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { openSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FREE_SPACE, FreeRuns } from '../../../../src/core/scan/formats/free-space.js';
import { bufferSource } from '../../../../src/core/scan/formats/byte-source.js';
import { fat } from '../../../../src/core/scan/formats/fat.js';
import { scanPaths } from '../../../../src/core/scan/index.js';
import type { Finding } from '../../../../src/core/types.js';
import { sshKey } from '../../../helpers/credentials.js';
import { memberBytes, walkMembers } from '../../../helpers/installer-image.js';
import { tempDir } from '../../../helpers/tmp.js';

const MiB = 1024 * 1024;

async function scan(image: string): Promise<Finding[]> {
  const report = await scanPaths([image], { operatorSecrets: false });
  return report.findings;
}

const inFreeSpace = (findings: Finding[]) => findings.filter((finding) => finding.chain?.at(-1) === FREE_SPACE);

/** Writes `bytes` into `image` at `offset` (the old content of a reused stick). */
function plant(image: string, offset: number, bytes: Buffer): void {
  const handle = openSync(image, 'r+');
  try {
    writeSync(handle, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(handle);
  }
}

/** An exFAT image (16 MiB) made over `image`'s old bytes; `fill` runs on it through exfat-fuse. */
async function exfatOver(dir: string, image: string, fill: (root: string) => Promise<void>): Promise<void> {
  execFileSync('mkfs.exfat', ['-L', 'SEED', image], { stdio: 'ignore' });
  const mountPoint = path.join(dir, 'mnt');
  await mkdir(mountPoint, { recursive: true });
  const loop = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
  try {
    execFileSync('mount.exfat-fuse', [loop, mountPoint], { stdio: 'ignore' });
    try {
      await fill(mountPoint);
    } finally {
      execFileSync('fusermount3', ['-u', mountPoint]);
    }
  } finally {
    execFileSync('losetup', ['-d', loop]);
  }
}

describe('free space', () => {
  it('ext4: a deleted key file is found in the free blocks, and a kept one only in its file', async () => {
    const dir = await tempDir();
    const tree = path.join(dir, 'tree');
    await mkdir(path.join(tree, 'etc/ssh'), { recursive: true });
    await writeFile(path.join(tree, 'etc/ssh/ssh_host_ed25519_key'), sshKey('ed25519').privateKey);
    await writeFile(path.join(tree, 'readme.txt'), 'nothing here\n');
    const image = path.join(dir, 'fs.img');
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', tree, image, '16M'], { stdio: 'ignore' });

    const kept = await scan(image);
    expect(kept.map((finding) => finding.inner)).toEqual(['/etc/ssh/ssh_host_ed25519_key']);
    expect(inFreeSpace(kept)).toEqual([]);

    execFileSync('debugfs', ['-w', '-R', 'rm /etc/ssh/ssh_host_ed25519_key', image], { stdio: 'ignore' });
    const deleted = await scan(image);
    expect(deleted.length).toBeGreaterThan(0);
    expect(deleted.every((finding) => finding.chain?.at(-1) === FREE_SPACE && finding.kind === 'private-key')).toBe(true);
  });

  it.each([
    ['ext4 (mkfs.ext4, no discard)', (image: string) => execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', image], { stdio: 'ignore' })],
    ['FAT32 (mkfs.vfat)', (image: string) => execFileSync('mkfs.vfat', ['-F', '32', image], { stdio: 'ignore' })],
  ])('a reused stick: a key the old bytes held is found under a fresh %s', async (_, makeFilesystem) => {
    const dir = await tempDir();
    const image = path.join(dir, 'stick.img');
    execFileSync('truncate', ['-s', '40M', image]);
    plant(image, 0, randomBytes(MiB)); // whatever was at the start is overwritten by mkfs
    plant(image, 23 * MiB + 1234, Buffer.from(sshKey('ed25519').privateKey));
    makeFilesystem(image);
    const findings = await scan(image);
    expect(findings.length).toBeGreaterThan(0);
    expect(findings.every((finding) => finding.chain?.at(-1) === FREE_SPACE && finding.kind === 'private-key')).toBe(true);
  });

  it('FAT16: a deleted file is in the free space (mtools), and its bytes are read raw, never as a container', async () => {
    const dir = await tempDir();
    const image = path.join(dir, 'efi.img');
    execFileSync('mkfs.vfat', ['-C', '-F', '16', image, String(16 * 1024)], { stdio: 'ignore' });
    // The first file takes the first clusters: a broken gzip stream, then a key.
    const broken = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), randomBytes(4000)]);
    await writeFile(path.join(dir, 'broken.gz'), broken);
    await writeFile(path.join(dir, 'key'), sshKey('ed25519').privateKey);
    await writeFile(path.join(dir, 'kept.txt'), 'kept\n');
    for (const name of ['broken.gz', 'key', 'kept.txt']) execFileSync('mcopy', ['-i', image, path.join(dir, name), `::/${name}`]);
    execFileSync('mdel', ['-i', image, '::/broken.gz', '::/key']);

    const { default: fs } = await import('node:fs');
    const walk = await walkMembers(fat, bufferSource(fs.readFileSync(image)));
    expect(walk.members.map((member) => member.name)).toEqual(['/kept.txt']);
    const free = await memberBytes(walk.free!);
    // Starts with the deleted gzip's bytes: the walker must not take it for a (broken) container.
    expect(free.subarray(0, broken.length).equals(broken)).toBe(true);

    const findings = await scan(image);
    expect(findings.filter((finding) => finding.kind.startsWith('unscanned'))).toEqual([]);
    expect(findings.length).toBeGreaterThan(0);
    expect(findings.every((finding) => finding.chain?.at(-1) === FREE_SPACE && finding.kind === 'private-key')).toBe(true);
  });

  it('exFAT: a key written and deleted, and one from before the volume, are found in the free clusters', async () => {
    const dir = await tempDir();
    const image = path.join(dir, 'fs.img');
    execFileSync('truncate', ['-s', '16M', image]);
    plant(image, 12 * MiB + 77, Buffer.from(sshKey('ed25519').privateKey));
    await exfatOver(dir, image, async (root) => {
      await writeFile(path.join(root, 'kept.txt'), 'kept\n');
      await writeFile(path.join(root, 'id_ed25519'), sshKey('ed25519').privateKey);
      await rm(path.join(root, 'id_ed25519'));
    });
    const findings = await scan(image);
    const offsets = findings.map((finding) => finding.offset);
    expect(findings.length).toBeGreaterThanOrEqual(2);
    expect(new Set(offsets).size).toBe(offsets.length);
    expect(findings.every((finding) => finding.chain?.at(-1) === FREE_SPACE && finding.kind === 'private-key')).toBe(true);
  });

  it('FreeRuns: the zero bits of a bitmap, merged into runs, read back as a plain bit loop finds them', async () => {
    const context = { unreadable: () => undefined, problem: () => undefined };
    for (const bits of [1, 7, 8, 9, 63, 64, 65, 1000, 4099]) {
      for (const density of [0, 0.02, 0.5, 0.98, 1]) {
        const bitmap = Buffer.alloc(Math.ceil(bits / 8) + 1);
        for (let bit = 0; bit < bitmap.length * 8; bit++) if (Math.random() < density) bitmap[bit >> 3]! |= 1 << (bit & 7);
        const expected: number[] = [];
        for (let bit = 0; bit < bits; bit++) if (((bitmap[bit >> 3]! >> (bit & 7)) & 1) === 0) expected.push(100 + bit);
        const runs = new FreeRuns();
        runs.addZeroBits(bitmap, 100, bits);
        // Units of one byte whose value is their number: the member's bytes are the free units.
        const image = Buffer.alloc(100 + bits);
        for (let index = 0; index < image.length; index++) image[index] = index & 0xff;
        const member = runs.member(bufferSource(image), 0, 1, context);
        if (expected.length === 0) {
          expect(member).toBeUndefined();
          continue;
        }
        let gaps = 1;
        for (let index = 1; index < expected.length; index++) if (expected[index] !== expected[index - 1]! + 1) gaps++;
        expect(runs.runs, `${bits} bits at ${density}`).toBe(gaps);
        expect(member!.size).toBe(expected.length);
        const bytes = await member!.source!.read(0, expected.length);
        expect(bytes.equals(Buffer.from(expected.map((unit) => unit & 0xff))), `${bits} bits at ${density}`).toBe(true);
      }
    }
  });
});
