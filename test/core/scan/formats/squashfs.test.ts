/**
 * SquashFS images made by the real mksquashfs, read back by the handler: every regular file must come
 * out byte for byte (compared by sha256 with the source tree), in every compression and block size,
 * with fragments, sparse files, hard links, uncompressed blocks and deep Nix-store paths, and a fake
 * host key must be found inside the right members.
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { squashfs } from '../../../../src/core/scan/formats/squashfs.js';
import { FormatError } from '../../../../src/core/scan/formats/types.js';
import { sshKey } from '../../../helpers/credentials.js';
import { collect, fileSource, mksquashfs, nixLikeTree, treeHashes } from '../../../helpers/squashfs-image.js';
import { tempDir } from '../../../helpers/tmp.js';

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

async function roundTrip(args: string[]) {
  const dir = await tempDir();
  const root = path.join(dir, 'root');
  const key = sshKey('ed25519').privateKey;
  const { keyPath, bigPath } = nixLikeTree(root, key);
  const image = path.join(dir, 'image.squashfs');
  mksquashfs(root, image, args);
  expect(squashfs.detect(readFileSync(image).subarray(0, 65536), undefined)).toBe(true);
  const source = await fileSource(image);
  try {
    const got = await collect(squashfs, source, { needle: key });
    const want = treeHashes(root);
    expect(got.unreadable).toEqual([]);
    expect([...got.hashes.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, hash] of want) expect(got.hashes.get(name), name).toBe(hash);
    expect(got.containing.sort()).toEqual([keyPath, bigPath, '/hardlink-to-big.txt'].sort());
    expect(got.sizes.get(bigPath)).toBe(readFileSync(path.join(root, bigPath)).length);
    return { got, image, root };
  } finally {
    await source.close();
  }
}

describe('squashfs: members a .sops.yaml may govern', () => {
  it('marks every member ungoverned when no file in the image is named .sops.yaml or .sops.yml, and none otherwise', async () => {
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    nixLikeTree(root, sshKey('ed25519').privateKey);
    const names = async (image: string) => {
      const source = await fileSource(image);
      try {
        const seen: [string, boolean | undefined][] = [];
        for await (const member of squashfs.members(source, { unreadable: () => undefined, problem: () => undefined })) {
          seen.push([member.name, member.sopsGoverned]);
          for await (const chunk of member.stream()) void chunk;
        }
        return seen;
      } finally {
        await source.close();
      }
    };
    const plain = path.join(dir, 'plain.squashfs');
    mksquashfs(root, plain, ['-comp', 'zstd']);
    const ungoverned = await names(plain);
    expect(ungoverned.length).toBeGreaterThan(3);
    expect(ungoverned.every(([, governed]) => governed === false)).toBe(true);

    for (const config of ['.sops.yaml', '.sops.yml']) {
      const deep = path.join(root, 'nix/store/deep/a/b');
      mkdirSync(deep, { recursive: true });
      writeFileSync(path.join(deep, config), 'creation_rules:\n  - path_regex: .*\n');
      const image = path.join(dir, `${config}.squashfs`);
      mksquashfs(root, image, ['-comp', 'zstd']);
      const governed = await names(image);
      expect(governed.map(([name]) => name)).toContain(`/nix/store/deep/a/b/${config}`);
      expect(governed.every(([, flag]) => flag === undefined)).toBe(true);
      rmSync(path.join(deep, config));
    }
  });
});

describe('squashfs', () => {
  it.each([
    ['zstd, 128K blocks', ['-comp', 'zstd']],
    ['xz, 1M blocks', ['-comp', 'xz', '-b', '1M']],
    ['gzip, 128K blocks', ['-comp', 'gzip']],
    ['gzip, 4K blocks, uncompressed inodes', ['-comp', 'gzip', '-b', '4K', '-noI']],
    ['lz4, 1M blocks', ['-comp', 'lz4', '-b', '1M']],
    ['lzo (lzo1x_999), 128K blocks', ['-comp', 'lzo']],
    ['lzo (lzo1x_1), 1M blocks', ['-comp', 'lzo', '-Xalgorithm', 'lzo1x_1', '-b', '1M']],
    ['legacy lzma', ['-comp', 'lzma']],
    ['nothing compressed', ['-comp', 'gzip', '-noI', '-noD', '-noF', '-noX']],
    ['no fragments', ['-comp', 'zstd', '-no-fragments']],
    ['every tail in a fragment', ['-comp', 'zstd', '-always-use-fragments']],
  ])('reads every file of a %s image byte for byte', async (_label, args) => {
    await roundTrip(args);
  });

  // NixOS ISOs use `xz -Xdict-size 100% -Xbcj x86`: mksquashfs keeps the x86 (or ARM) filter for
  // the blocks it shrinks (machine code). Every member must come out whole.
  it.each([['x86'], ['arm,x86']])('reads an xz image with -Xbcj %s byte for byte', async (bcj) => {
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    const key = sshKey('ed25519').privateKey;
    const { keyPath } = nixLikeTree(root, key);
    mkdirSync(path.join(root, 'bin'));
    for (const tool of ['ls', 'cp', 'tar', 'bash']) copyFileSync(path.join('/usr/bin', tool), path.join(root, 'bin', tool));
    copyFileSync('/usr/lib/x86_64-linux-gnu/libc.so.6', path.join(root, 'bin', 'libc.so.6'));
    const image = path.join(dir, 'image.squashfs');
    mksquashfs(root, image, ['-comp', 'xz', '-Xbcj', bcj, '-Xdict-size', '100%']);
    // Each block is an xz stream; the first filter of its first block header says whether mksquashfs
    // kept the x86 filter (ID 4) for it: the machine code above must have made some such blocks.
    const bytes = readFileSync(image);
    let filtered = 0;
    for (let at = bytes.indexOf(XZ_MAGIC); at >= 0; at = bytes.indexOf(XZ_MAGIC, at + 1)) {
      const flags = bytes[at + 13]!;
      let p = at + 14;
      // Compressed and uncompressed sizes (VLIs) come before the filters when the flags say so.
      for (const bit of [0x40, 0x80]) if (flags & bit) while (bytes[p++]! & 0x80);
      if ((flags & 3) === 1 && bytes[p] === 0x04) filtered++;
    }
    expect(filtered).toBeGreaterThan(0);
    const source = await fileSource(image);
    try {
      const got = await collect(squashfs, source, { needle: key });
      const want = treeHashes(root);
      expect(got.unreadable).toEqual([]);
      expect([...got.hashes.keys()].sort()).toEqual([...want.keys()].sort());
      for (const [name, hash] of want) expect(got.hashes.get(name), name).toBe(hash);
      expect(got.containing).toContain(keyPath);
    } finally {
      await source.close();
    }
  });

  it('yields members in directory order with absolute paths, symlinks and fifos left out', async () => {
    const { got } = await roundTrip(['-comp', 'gzip']);
    expect(got.order.every((name) => name.startsWith('/'))).toBe(true);
    expect(got.order).not.toContain('/nix/symlink-to-key');
    expect(got.order).not.toContain('/a-fifo');
    expect(got.order.indexOf('/empty')).toBeLessThan(got.order.indexOf('/sparse.img'));
  });

  it('rejects a truncated image, an unknown compression and a broken inode table with FormatError', async () => {
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    const { bigPath } = nixLikeTree(root, 'not a key');
    const image = path.join(dir, 'image.squashfs');
    mksquashfs(root, image, ['-comp', 'gzip']);
    const bytes = readFileSync(image);

    const attempt = async (variant: Buffer) => {
      const file = path.join(dir, `variant-${Math.random()}.squashfs`);
      writeFileSync(file, variant);
      const source = await fileSource(file);
      try {
        return await collect(squashfs, source);
      } catch (error) {
        return error;
      } finally {
        await source.close();
      }
    };

    const truncated = await attempt(bytes.subarray(0, Math.floor(bytes.length / 2)));
    expect(truncated).toBeInstanceOf(FormatError);
    expect((truncated as FormatError).reason).toBe('truncated');

    const unknown = Buffer.from(bytes);
    unknown.writeUInt16LE(99, 20);
    const unknownResult = await attempt(unknown);
    expect(unknownResult).toBeInstanceOf(FormatError);
    expect((unknownResult as FormatError).reason).toBe('unknown-compression');

    // Garbage over the whole inode table: nothing past the root can be trusted.
    const broken = Buffer.from(bytes);
    const inodeTable = Number(broken.readBigUInt64LE(64));
    const directoryTable = Number(broken.readBigUInt64LE(72));
    broken.fill(0x5a, inodeTable, directoryTable);
    const brokenResult = await attempt(broken);
    expect(brokenResult).toBeInstanceOf(FormatError);
    expect((brokenResult as FormatError).reason).toBe('corrupt');

    // A damaged data block spoils one member (reported), not the others.
    const damaged = Buffer.from(bytes);
    damaged.fill(0xff, 200_000, 200_064);
    const damagedResult = await attempt(damaged);
    expect(damagedResult).not.toBeInstanceOf(Error);
    const { unreadable, hashes } = damagedResult as Awaited<ReturnType<typeof collect>>;
    // The damaged block is early in the big file, which has a second name (a hard link).
    expect(unreadable.map((entry) => entry.name).sort()).toEqual([bigPath, '/hardlink-to-big.txt'].sort());
    expect(unreadable.every((entry) => entry.reason === 'corrupt' && entry.message.startsWith('squashfs: '))).toBe(true);
    expect(hashes.size).toBe(treeHashes(root).size);
  });

  it('stops promptly when the signal is aborted', async () => {
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    nixLikeTree(root, 'not a key');
    const image = path.join(dir, 'image.squashfs');
    mksquashfs(root, image, ['-comp', 'gzip']);
    const source = await fileSource(image);
    const controller = new AbortController();
    const context = { signal: controller.signal, unreadable: () => undefined, problem: () => undefined };
    let seen = 0;
    const run = async () => {
      for await (const member of squashfs.members(source, context)) {
        for await (const chunk of member.stream()) void chunk;
        seen += 1;
        if (seen === 3) controller.abort(new Error('cancelled'));
      }
    };
    await expect(run()).rejects.toThrow('cancelled');
    expect(seen).toBe(3);
    await source.close();
  });
});
