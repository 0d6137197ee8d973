import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open as openFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bufferSource, fileSource } from '../../../../src/core/scan/formats/byte-source.js';
import { fat, fatGeometry } from '../../../../src/core/scan/formats/fat.js';
import { iso9660 } from '../../../../src/core/scan/formats/iso9660.js';
import { HEAD_BYTES } from '../../../../src/core/scan/formats/types.js';
import { sshKey } from '../../../helpers/credentials.js';
import { makeFatImage, makeInstallerIso, memberBytes, walkMembers, type Tree } from '../../../helpers/installer-image.js';
import { tempDir } from '../../../helpers/tmp.js';

const MTOOLS_ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

function efiTree(key: string, big: Buffer): Tree {
  return {
    'EFI/BOOT/BOOTX64.EFI': Buffer.concat([Buffer.from('MZ'), Buffer.alloc(20_000, 0x90)]),
    'EFI/nixos/A very long file name with spaces.conf': 'title NixOS\n',
    'EFI/nixos/Schlüssel.pem': key,
    'loader/entries/nixos-generation-1.conf': 'linux /EFI/nixos/kernel\n',
    'readme.txt': 'lowercase 8.3 name',
    'boot/secrets/ssh_host_ed25519_key': key,
    'a/b/c/d/e/f/g/deep.txt': 'deep',
    'big/multi-cluster.bin': big,
    'empty.txt': '',
  };
}

describe('fat', () => {
  for (const [bits, sizeKiB, sectorsPerCluster] of [
    [12, 2048, 1],
    [16, 16 * 1024, 1],
    [32, 40 * 1024, 1],
  ] as const) {
    it(`reads FAT${bits}: long names, folders, cluster chains, deleted files left out`, async () => {
      const dir = await tempDir();
      const key = sshKey('ed25519').privateKey;
      const big = randomBytes(700_000);
      const tree = efiTree(key, big);
      const image = await makeFatImage(path.join(dir, `fat${bits}.img`), { ...tree, 'deleted.txt': 'gone but on disk' }, { sizeKiB, fatBits: bits, sectorsPerCluster });
      execFileSync('mdel', ['-i', image, '::/deleted.txt'], { env: MTOOLS_ENV });
      const source = await fileSource(image);
      try {
        const head = await source.read(0, HEAD_BYTES);
        expect(fat.detect(head, source.size)).toBe(true);
        expect(fatGeometry(head)!.bits).toBe(bits);
        const walk = await walkMembers(fat, source);
        expect(walk.unreadable).toEqual([]);
        expect(walk.members.map((member) => member.name).sort()).toEqual(Object.keys(tree).map((name) => `/${name}`).sort());
        for (const member of walk.members) {
          const expected = tree[member.name.slice(1)]!;
          const bytes = Buffer.isBuffer(expected) ? expected : Buffer.from(expected as string);
          expect(member.size).toBe(bytes.length);
          expect((await memberBytes(member)).equals(bytes)).toBe(true);
        }
        // Random access through the chain, across cluster boundaries, without streaming.
        const multi = walk.members.find((member) => member.name === '/big/multi-cluster.bin')!;
        expect((await multi.source!.read(300_001, 5000)).equals(big.subarray(300_001, 305_001))).toBe(true);
        expect((await memberBytes(walk.members.find((member) => member.name === '/boot/secrets/ssh_host_ed25519_key')!)).toString()).toContain('OPENSSH PRIVATE KEY');
      } finally {
        await source.close();
      }
    });
  }

  it('reports a file whose cluster chain loops, and still reads the others', async () => {
    const dir = await tempDir();
    const image = await makeFatImage(path.join(dir, 'loop.img'), { 'big.bin': randomBytes(20_000), 'other.txt': 'fine' }, { sizeKiB: 16 * 1024, fatBits: 16, sectorsPerCluster: 1 });
    const bytes = await readFile(image);
    const geometry = fatGeometry(bytes)!;
    // Find big.bin's short entry in the fixed root folder and make its second cluster point back to its first.
    const root = bytes.subarray(geometry.rootOffset, geometry.rootOffset + geometry.rootBytes);
    let first = -1;
    for (let offset = 0; offset < root.length; offset += 32) {
      if (root.toString('latin1', offset, offset + 11) === 'BIG     BIN') first = root.readUInt16LE(offset + 26);
    }
    expect(first).toBeGreaterThan(1);
    const second = bytes.readUInt16LE(geometry.fatOffset + first * 2);
    const handle = await openFile(image, 'r+');
    const pointer = Buffer.alloc(2);
    pointer.writeUInt16LE(first);
    await handle.write(pointer, 0, 2, geometry.fatOffset + second * 2);
    await handle.close();

    const source = await fileSource(image);
    try {
      const walk = await walkMembers(fat, source);
      expect(walk.members.map((member) => member.name)).toEqual(['/other.txt']);
      expect(walk.unreadable).toEqual([expect.objectContaining({ name: '/big.bin', reason: 'corrupt', message: expect.stringMatching(/loop/) })]);
    } finally {
      await source.close();
    }
  });

  it('reports a folder whose cluster chain loops, and still reads the rest', async () => {
    const dir = await tempDir();
    const image = await makeFatImage(path.join(dir, 'folder-loop.img'), { 'loopdir/a.txt': 'a', 'ok.txt': 'fine' }, { sizeKiB: 16 * 1024, fatBits: 16, sectorsPerCluster: 1 });
    const bytes = await readFile(image);
    const geometry = fatGeometry(bytes)!;
    const root = bytes.subarray(geometry.rootOffset, geometry.rootOffset + geometry.rootBytes);
    let cluster = -1;
    for (let offset = 0; offset < root.length; offset += 32) {
      if (root.toString('latin1', offset, offset + 11) === 'LOOPDIR    ') cluster = root.readUInt16LE(offset + 26);
    }
    expect(cluster).toBeGreaterThan(1);
    const handle = await openFile(image, 'r+');
    const pointer = Buffer.alloc(2);
    pointer.writeUInt16LE(cluster); // the folder's only cluster points at itself
    await handle.write(pointer, 0, 2, geometry.fatOffset + cluster * 2);
    await handle.close();

    const source = await fileSource(image);
    try {
      const walk = await walkMembers(fat, source);
      expect(walk.members.map((member) => member.name)).toEqual(['/ok.txt']);
      expect(walk.unreadable).toEqual([expect.objectContaining({ name: '/loopdir/', reason: 'corrupt' })]);
    } finally {
      await source.close();
    }
  });

  it('reads the EFI image inside a NixOS-shaped ISO in place, finding a key at its inner path', async () => {
    const dir = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const { iso } = await makeInstallerIso(dir, { efi: { 'EFI/BOOT/BOOTX64.EFI': 'efi', 'EFI/nixos/initrd-secrets/ssh_host_ed25519_key': key } });
    const source = await fileSource(iso);
    try {
      const outer = await walkMembers(iso9660, source);
      const efi = outer.members.find((member) => member.name === '/boot/efi.img')!;
      expect(fat.detect(await efi.source!.read(0, HEAD_BYTES), efi.size)).toBe(true);
      const inner = await walkMembers(fat, efi.source!);
      expect(inner.members.map((member) => member.name).sort()).toEqual(['/EFI/BOOT/BOOTX64.EFI', '/EFI/nixos/initrd-secrets/ssh_host_ed25519_key']);
      expect((await memberBytes(inner.members.find((member) => member.name.endsWith('_key'))!)).toString()).toBe(key);
    } finally {
      await source.close();
    }
  });

  it('detects FAT by its boot sector, not an MBR, an ISO or random bytes', async () => {
    const dir = await tempDir();
    const image = await makeFatImage(path.join(dir, 'plain.img'), { 'a.txt': 'a' }, { sizeKiB: 1024 });
    const head = (await readFile(image)).subarray(0, HEAD_BYTES);
    expect(fat.detect(head, undefined)).toBe(true);
    const noSignature = Buffer.from(head);
    noSignature[510] = 0;
    expect(fat.detect(noSignature, undefined)).toBe(false);
    const badSectorSize = Buffer.from(head);
    badSectorSize.writeUInt16LE(700, 11);
    expect(fat.detect(badSectorSize, undefined)).toBe(false);
    const mbr = Buffer.alloc(512);
    mbr.writeUInt32LE(2048, 446 + 8);
    mbr.writeUInt32LE(4096, 446 + 12);
    mbr[446 + 4] = 0x0c;
    mbr.writeUInt16LE(0xaa55, 510);
    expect(fat.detect(mbr, undefined)).toBe(false);
    const random = randomBytes(4096);
    random.writeUInt16LE(0xaa55, 510);
    expect(fat.detect(random, undefined)).toBe(false);
    // A boot sector that promises more than the image holds is truncated, reported as such.
    await expect(walkMembers(fat, bufferSource(head.subarray(0, 64 * 1024)))).rejects.toMatchObject({ reason: 'truncated' });
  });
});
