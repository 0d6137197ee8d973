import { execFileSync } from 'node:child_process';
import { readFile, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileSource, type FileSource } from '../../../../src/core/scan/formats/byte-source.js';
import { fat } from '../../../../src/core/scan/formats/fat.js';
import { iso9660, isoVolumeBytes } from '../../../../src/core/scan/formats/iso9660.js';
import { partitions } from '../../../../src/core/scan/formats/partitions.js';
import { HEAD_BYTES } from '../../../../src/core/scan/formats/types.js';
import { sshKey } from '../../../helpers/credentials.js';
import { makeFatImage, makeInstallerIso, makeStick, memberBytes, walkMembers } from '../../../helpers/installer-image.js';
import { tempDir } from '../../../helpers/tmp.js';

const MiB = 1024 * 1024;

async function open(file: string): Promise<{ source: FileSource; head: Buffer }> {
  const source = await fileSource(file);
  return { source, head: await source.read(0, HEAD_BYTES) };
}

function sfdisk(disk: string, script: string): void {
  execFileSync('sfdisk', ['--no-reread', '--no-tell-kernel', '-q', disk], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
}

function blank(file: string, bytes: number): string {
  execFileSync('truncate', ['-s', String(bytes), file]);
  return file;
}

function place(image: string, disk: string, offset: number): void {
  execFileSync('dd', [`if=${image}`, `of=${disk}`, 'bs=512', `seek=${offset / 512}`, 'conv=notrunc', 'status=none']);
}

describe('partitions', () => {
  it('reads a stick: the hybrid installer image as one member, the seed partition after it as another', async () => {
    const dir = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const { iso } = await makeInstallerIso(dir, { extra: { 'etc/leaked_host_key': key } });
    const { stick, seedOffset, seedBytes } = await makeStick(dir, iso, { 'seed/config/ssh_host_ed25519_key': key, 'seed/SHA256SUMS': 'x' });

    const plain = await open(iso);
    try {
      // The hybrid ISO alone: its MBR and GPT partitions lie inside the ISO, so the ISO handler reads it.
      expect(partitions.detect(plain.head, plain.source.size)).toBe(false);
      expect(iso9660.detect(plain.head, plain.source.size)).toBe(true);
    } finally {
      await plain.source.close();
    }

    const { source, head } = await open(stick);
    try {
      expect(partitions.detect(head, source.size)).toBe(true);
      expect(iso9660.detect(head, source.size)).toBe(false);
      expect(fat.detect(head, source.size)).toBe(false);
      const walk = await walkMembers(partitions, source);
      expect(walk.unreadable).toEqual([]);
      expect(walk.members.map((member) => [member.name, member.size])).toEqual([
        ['(installer image)', (await stat(iso)).size],
        ['(partition 3 DUBNIUMSEED)', seedBytes],
      ]);
      const [image, seed] = walk.members as [(typeof walk.members)[0], (typeof walk.members)[0]];
      // The installer image member is the ISO again, byte for byte, and reads as an ISO.
      const imageHead = await image.source!.read(0, HEAD_BYTES);
      expect(isoVolumeBytes(imageHead)).toBe(image.size);
      expect(iso9660.detect(imageHead, image.size)).toBe(true);
      expect(partitions.detect(imageHead, image.size)).toBe(false);
      const inner = await walkMembers(iso9660, image.source!);
      expect((await memberBytes(inner.members.find((member) => member.name === '/etc/leaked_host_key')!)).toString()).toBe(key);
      // The seed partition is its slice of the stick, a FAT filesystem with the key at its path.
      expect((await seed.source!.read(0, 512)).equals((await readFile(stick)).subarray(seedOffset, seedOffset + 512))).toBe(true);
      const files = await walkMembers(fat, seed.source!);
      expect(files.members.map((member) => member.name).sort()).toEqual(['/seed/SHA256SUMS', '/seed/config/ssh_host_ed25519_key']);
      expect((await memberBytes(files.members.find((member) => member.name.endsWith('_key'))!)).toString()).toBe(key);
    } finally {
      await source.close();
    }
  });

  it('names GPT partitions by their GPT names and reports one that runs past the end of the disk', async () => {
    const dir = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const disk = blank(path.join(dir, 'gpt.img'), 40 * MiB);
    sfdisk(
      disk,
      'label: gpt\nstart=2048, size=16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system"\nstart=20480, size=40960, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="DUBNIUM-SEED"\n',
    );
    const seedFat = await makeFatImage(path.join(dir, 'seed.fat'), { 'keys/id_ed25519': key }, { sizeKiB: 20 * 1024, fatBits: 16, sectorsPerCluster: 1 });
    place(seedFat, disk, 20480 * 512);

    let { source, head } = await open(disk);
    try {
      expect(partitions.detect(head, source.size)).toBe(true);
      expect(fat.detect(head, source.size)).toBe(false);
      const walk = await walkMembers(partitions, source);
      expect(walk.members.map((member) => [member.name, member.size])).toEqual([
        ['(partition 1 EFI system)', 16384 * 512],
        ['(partition 2 DUBNIUM-SEED)', 40960 * 512],
      ]);
      const files = await walkMembers(fat, walk.members[1]!.source!);
      expect((await memberBytes(files.members.find((member) => member.name === '/keys/id_ed25519')!)).toString()).toBe(key);
    } finally {
      await source.close();
    }

    await truncate(disk, 25 * MiB);
    ({ source, head } = await open(disk));
    try {
      const walk = await walkMembers(partitions, source);
      expect(walk.members.map((member) => member.name)).toEqual(['(partition 1 EFI system)']);
      expect(walk.unreadable).toEqual([expect.objectContaining({ name: '(partition 2)', reason: 'truncated' })]);
    } finally {
      await source.close();
    }
  });

  it('follows an MBR extended partition to its logical partitions, named by filesystem label or type', async () => {
    const dir = await tempDir();
    const disk = blank(path.join(dir, 'mbr.img'), 32 * MiB);
    sfdisk(disk, 'label: dos\nstart=2048, size=4096, type=83\nstart=8192, size=40960, type=5\nstart=10240, size=8192, type=83\nstart=20480, size=4096, type=c\n');
    const ext4 = blank(path.join(dir, 'logical.ext4'), 4 * MiB);
    execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'LOGICAL-EXT4', ext4], { stdio: 'ignore' });
    place(ext4, disk, 10240 * 512);

    const { source, head } = await open(disk);
    try {
      expect(partitions.detect(head, source.size)).toBe(true);
      const walk = await walkMembers(partitions, source);
      expect(walk.unreadable).toEqual([]);
      expect(walk.members.map((member) => [member.name, member.size])).toEqual([
        ['(partition 1 type 83)', 4096 * 512],
        ['(partition 5 LOGICAL-EXT4)', 8192 * 512],
        ['(partition 6 type 0c)', 4096 * 512],
      ]);
      expect((await walk.members[1]!.source!.read(1024 + 56, 2)).readUInt16LE(0)).toBe(0xef53);
    } finally {
      await source.close();
    }
  });

  it('leaves a FAT volume without a partition table, and a blank disk, alone', async () => {
    const dir = await tempDir();
    const image = await makeFatImage(path.join(dir, 'superfloppy.img'), { 'a.txt': 'a' }, { sizeKiB: 8 * 1024, fatBits: 16, sectorsPerCluster: 1 });
    const head = (await readFile(image)).subarray(0, HEAD_BYTES);
    expect(fat.detect(head, undefined)).toBe(true);
    expect(partitions.detect(head, undefined)).toBe(false);
    expect(partitions.detect(Buffer.alloc(HEAD_BYTES), undefined)).toBe(false);
    const mbrOnlySignature = Buffer.alloc(512);
    mbrOnlySignature.writeUInt16LE(0xaa55, 510);
    expect(partitions.detect(mbrOnlySignature, undefined)).toBe(false);
  });
});
