/**
 * EROFS read in place (formats/erofs.ts) against images mkfs.erofs makes from a known tree: every
 * regular file comes out with its exact bytes in each uncompressed layout (inline tails, plain
 * blocks, chunk tables with holes, compact and extended inodes; a file of nothing but holes in a
 * chunk table, as composefs writes every file, comes out empty), symlinks and fifos are not members,
 * a key is found and named, and a compressed file (lz4hc) is reported unscanned by name, never passed.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, linkSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { erofs } from '../../../../src/core/scan/formats/erofs.js';
import { detectFormat } from '../../../../src/core/scan/formats/index.js';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { sshKey } from '../../../helpers/credentials.js';
import { collect, compressibleText, fileSource, treeHashes } from '../../../helpers/squashfs-image.js';
import { tempDir } from '../../../helpers/tmp.js';

const KEY_PATH = '/nix/store/0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-etc/etc/ssh/ssh_host_ed25519_key';

/** A tree of awkward shapes: sizes around the block, a folder of many entries, links, a sparse file, a fifo. */
function makeTree(root: string, key: string): void {
  const put = (relative: string, content: Buffer | string) => {
    mkdirSync(path.dirname(path.join(root, relative)), { recursive: true });
    writeFileSync(path.join(root, relative), content);
  };
  put(KEY_PATH, key);
  put('empty', '');
  put('one', 'x');
  put('a/block-minus-one', randomBytes(4095));
  put('a/block', randomBytes(4096));
  put('a/b/c/deep.txt', 'deep\n');
  put('big', Buffer.concat([randomBytes(3 * 1024 * 1024), compressibleText(12345, 'tail')]));
  put('names/ünïcödé name.txt', 'utf-8 name\n');
  // A folder whose entries span several directory blocks.
  for (let index = 0; index < 600; index++) put(`many/file-with-a-longer-name-${String(index).padStart(4, '0')}`, `file ${index}\n`);
  // A sparse file: holes of whole chunks between data.
  const sparse = path.join(root, 'sparse.img');
  const fd = openSync(sparse, 'w');
  writeSync(fd, randomBytes(5000), 0, 5000, 0);
  writeSync(fd, randomBytes(5000), 0, 5000, 3 * 1024 * 1024);
  ftruncateSync(fd, 4 * 1024 * 1024 + 99);
  closeSync(fd);
  // Nothing but a hole, as composefs writes a file whose bytes live elsewhere.
  const holes = openSync(path.join(root, 'holes-only'), 'w');
  ftruncateSync(holes, 2 * 1024 * 1024);
  closeSync(holes);
  linkSync(path.join(root, 'a/block'), path.join(root, 'hardlink-to-block'));
  symlinkSync(`..${KEY_PATH}`, path.join(root, 'a/symlink-to-key'));
  execFileSync('mkfifo', [path.join(root, 'a-fifo')]);
}

async function image(options: string[]): Promise<{ dir: string; tree: string; img: string; key: string }> {
  const dir = await tempDir();
  const tree = path.join(dir, 'tree');
  const key = sshKey('ed25519').privateKey;
  makeTree(tree, key);
  const img = path.join(dir, 'store.erofs');
  execFileSync('mkfs.erofs', ['--quiet', ...options, img, tree], { stdio: 'ignore' });
  return { dir, tree, img, key };
}

describe('erofs', () => {
  it.each([
    ['inline tails (the default)', []],
    ['plain blocks (noinline_data)', ['-Enoinline_data']],
    ['extended inodes', ['-Eforce-inode-extended']],
    ['chunk tables (--chunksize)', ['--chunksize=4096']],
    ['large chunks (--chunksize=1M)', ['--chunksize=1048576']],
  ])('reads every regular file with its exact bytes: %s', async (_, options) => {
    const { tree, img } = await image(options);
    const source = await fileSource(img);
    try {
      expect(detectFormat(await source.read(0, 65536), source.size)?.name).toBe('erofs');
      const walk = await collect(erofs, source, { needle: 'OPENSSH PRIVATE KEY' });
      expect(walk.unreadable).toEqual([]);
      expect(walk.hashes).toEqual(treeHashes(tree));
      // Both names of the hard link; the key in its store path only (a symlink is not a member).
      expect(walk.containing).toEqual([KEY_PATH]);
    } finally {
      await source.close();
    }
  });

  it('reads a file of nothing but null chunks (as composefs writes every file) as empty, in an image fsck.erofs accepts', async () => {
    // mkfs.erofs 1.5 writes holes as zero blocks; the chunk table of one file is turned into null
    // chunks here, where dump.erofs says the inode lies, and fsck.erofs checks the result.
    const { tree, img } = await image(['--chunksize=4096']);
    const info = execFileSync('dump.erofs', ['--path=/holes-only', img], { encoding: 'utf8' });
    const nid = Number(/NID: (\d+)/.exec(info)![1]);
    const inodeSize = Number(/Inode size: (\d+)/.exec(info)![1]);
    const xattrSize = Number(/Xattr size: (\d+)/.exec(info)![1]);
    const bytes = readFileSync(img);
    const blockBits = bytes[1024 + 12]!;
    const table = Math.ceil((bytes.readUInt32LE(1024 + 40) * 2 ** blockBits + nid * 32 + inodeSize + xattrSize) / 4) * 4;
    bytes.fill(0xff, table, table + ((2 * 1024 * 1024) / 4096) * 4);
    writeFileSync(img, bytes);
    execFileSync('fsck.erofs', [img], { stdio: 'ignore' });
    const source = await fileSource(img);
    try {
      const walk = await collect(erofs, source);
      const expected = treeHashes(tree);
      expected.set('/holes-only', createHash('sha256').digest('hex'));
      expect(walk.hashes).toEqual(expected);
    } finally {
      await source.close();
    }
  });

  it('finds the key by scan, naming the file inside the image, and passes the image without it', async () => {
    const { img, tree, dir } = await image([]);
    const report = await scanPaths([img], { operatorSecrets: false });
    expect(report.findings.map((finding) => [finding.rule, finding.inner])).toEqual([['openssh-private-key', KEY_PATH]]);
    execFileSync('rm', [path.join(tree, KEY_PATH)]);
    const clean = path.join(dir, 'clean.erofs');
    execFileSync('mkfs.erofs', ['--quiet', clean, tree], { stdio: 'ignore' });
    const cleanReport = await scanPaths([clean], { operatorSecrets: false });
    expect(cleanReport.findings).toEqual([]);
    expect(cleanReport.files).toBeGreaterThan(600);
  });

  it('reports a cut image unscanned, never passed, and reads what lies before the cut', async () => {
    const { img } = await image([]);
    const bytes = readFileSync(img);
    writeFileSync(img, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const report = await scanPaths([img], { operatorSecrets: false });
    const unscanned = report.findings.filter((finding) => finding.kind === 'unscanned');
    expect(unscanned.length).toBeGreaterThan(0);
    for (const finding of unscanned) expect(finding.rule).toMatch(/^unscanned-(truncated|corrupt)$/);
    expect(report.files).toBeGreaterThan(1);
  });

  it('reports each compressed file unscanned by name, never passed, and still reads the stored ones', async () => {
    const { img, tree } = await image(['-zlz4hc']);
    const source = await fileSource(img);
    try {
      const walk = await collect(erofs, source);
      const compressed = walk.unreadable.map((entry) => entry.name).sort();
      // Files that compression shortens by a block are compressed (the big file's text tail, the
      // sparse file's zeros); files under a block (the key among them) are stored as they are.
      expect(compressed).toEqual(['/big', '/holes-only', '/sparse.img']);
      for (const entry of walk.unreadable) {
        expect(entry.reason).toBe('unsupported');
        expect(entry.message).toMatch(/an EROFS compressed file, which this scan does not decode\. Mount the image read-only/);
      }
      const all = treeHashes(tree);
      for (const [name, hash] of walk.hashes) expect(all.get(name), name).toBe(hash);
      expect(walk.hashes.size + compressed.length).toBe(all.size);
    } finally {
      await source.close();
    }
    const report = await scanPaths([img], { operatorSecrets: false });
    expect(report.findings.map((finding) => [finding.rule, finding.inner]).sort()).toEqual([
      ['openssh-private-key', KEY_PATH],
      ['unscanned-unsupported', '/big'],
      ['unscanned-unsupported', '/holes-only'],
      ['unscanned-unsupported', '/sparse.img'],
    ]);
  });
});
