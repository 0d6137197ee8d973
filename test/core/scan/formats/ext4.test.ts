/**
 * ext2/3/4 read in place (formats/ext4.ts) against images mkfs.ext4 -d makes from a known tree: every
 * regular file comes out with its exact bytes (extents and extent trees, ext2/3 block maps with single, double and
 * triple indirect blocks, holes, a folder large enough for an htree index), symlinks and devices are
 * not members, and what cannot be read is reported, never passed.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, symlink, link, writeFile, open } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileSource } from '../../../../src/core/scan/formats/byte-source.js';
import { ext4 } from '../../../../src/core/scan/formats/ext4.js';
import { detectFormat } from '../../../../src/core/scan/formats/index.js';
import type { FormatContext } from '../../../../src/core/scan/formats/types.js';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { sshKey } from '../../../helpers/credentials.js';
import { tempDir } from '../../../helpers/tmp.js';

const KiB = 1024;
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** A tree of files of awkward sizes; returns name -> sha256 of each regular file. */
async function makeTree(root: string): Promise<Record<string, string>> {
  const files: Record<string, Buffer> = {
    'empty': Buffer.alloc(0),
    'one': Buffer.from('x'),
    'a/block-minus-one': randomBytes(4095),
    'a/block': randomBytes(4096),
    'a/b/c/deep.txt': Buffer.from('deep\n'),
    'direct-and-more': randomBytes(13 * KiB + 5),
    // With 1 KiB blocks: past the single indirect block (12 + 256 blocks) into the double one.
    'double-indirect': randomBytes(300 * KiB + 7),
    'big': randomBytes(3 * 1024 * KiB + 1),
    'names/ünïcödé name.txt': Buffer.from('utf-8 name\n'),
  };
  for (let index = 0; index < 400; index++) files[`many/file-${index}`] = Buffer.from(`file ${index}\n`);
  const sums: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), bytes);
    sums[`/${name}`] = sha(bytes);
  }
  // A sparse file: 1 MiB hole, 5 bytes, 1 MiB hole.
  const sparse = await open(path.join(root, 'sparse'), 'w');
  await sparse.write(Buffer.from('HELLO'), 0, 5, 1024 * KiB);
  await sparse.truncate(2 * 1024 * KiB + 5);
  await sparse.close();
  const expected = Buffer.alloc(2 * 1024 * KiB + 5);
  expected.write('HELLO', 1024 * KiB, 'latin1');
  sums['/sparse'] = sha(expected);
  // Twelve islands of data 1 MiB apart: twelve extents, more than the inode holds (an extent tree
  // of depth 1 in ext4; holes inside indirect blocks in ext2/3).
  const islands = Buffer.alloc(11 * 1024 * KiB + 1000);
  const islandsFile = await open(path.join(root, 'islands'), 'w');
  for (let index = 0; index < 12; index++) {
    const text = Buffer.from(`island ${index} `.repeat(100).slice(0, 1000));
    text.copy(islands, index * 1024 * KiB);
    await islandsFile.write(text, 0, text.length, index * 1024 * KiB);
  }
  await islandsFile.close();
  sums['/islands'] = sha(islands);
  await symlink('a/block', path.join(root, 'link-to-block'));
  await link(path.join(root, 'one'), path.join(root, 'hard-link-to-one'));
  sums['/hard-link-to-one'] = sums['/one']!;
  execFileSync('mkfifo', [path.join(root, 'fifo')]);
  return sums;
}

async function members(image: string): Promise<{ sums: Record<string, string>; unreadable: string[]; problems: string[] }> {
  const source = await fileSource(image);
  const unreadable: string[] = [];
  const problems: string[] = [];
  const context: FormatContext = { unreadable: (name, reason, message) => unreadable.push(`${name}: ${reason}: ${message}`), problem: (name, message) => problems.push(`${name}: ${message}`) };
  const sums: Record<string, string> = {};
  try {
    for await (const member of ext4.members(source, context)) {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of member.stream()) {
        hash.update(chunk);
        size += chunk.length;
      }
      expect(size, member.name).toBe(member.size);
      // The free blocks (a raw member) are not a file: free-space.test.ts checks them.
      if (!member.raw) sums[member.name] = hash.digest('hex');
    }
  } finally {
    await source.close?.();
  }
  return { sums, unreadable, problems };
}

describe('ext4', () => {
  it.each([
    ['ext4, 4 KiB blocks (extents and an extent tree, htree folder)', ['-t', 'ext4', '-b', '4096']],
    ['ext4, 1 KiB blocks, 64bit and metadata checksums', ['-t', 'ext4', '-b', '1024', '-O', '64bit,metadata_csum']],
    ['ext3, 1 KiB blocks (block maps, double indirect)', ['-t', 'ext3', '-b', '1024']],
    ['ext2, 4 KiB blocks', ['-t', 'ext2', '-b', '4096']],
  ])('%s: every regular file with its exact bytes, nothing else', async (_, options) => {
    const dir = await tempDir();
    const tree = path.join(dir, 'tree');
    await mkdir(tree);
    const expected = await makeTree(tree);
    const image = path.join(dir, 'fs.img');
    execFileSync('mkfs.ext4', ['-q', '-F', ...options, '-d', tree, image, '16M'], { stdio: 'ignore' });
    const head = Buffer.alloc(64 * KiB);
    const handle = await open(image, 'r');
    await handle.read(head, 0, head.length, 0);
    await handle.close();
    expect(detectFormat(head)?.name).toBe('ext4');
    const found = await members(image);
    expect(found.unreadable).toEqual([]);
    // lost+found is an empty folder: no member.
    expect(found.sums).toEqual(expected);
  });

  it('inline data: files kept in the inode (i_block and the system.data attribute) are read whole', async () => {
    const dir = await tempDir();
    const tree = path.join(dir, 'tree');
    await mkdir(path.join(tree, 'small-folder'), { recursive: true });
    const tiny = Buffer.from('fits in i_block\n');
    const longer = Buffer.from('x'.repeat(60) + ' and this goes on into the system.data attribute\n');
    const regular = randomBytes(8192);
    await writeFile(path.join(tree, 'tiny'), tiny);
    await writeFile(path.join(tree, 'small-folder/longer'), longer);
    await writeFile(path.join(tree, 'regular'), regular);
    const image = path.join(dir, 'fs.img');
    execFileSync('mkfs.ext4', ['-q', '-F', '-O', 'inline_data', '-I', '512', '-d', tree, image, '8M'], { stdio: 'ignore' });
    // The longer file really is inline (debugfs stat shows no blocks): else this test proves nothing.
    expect(execFileSync('debugfs', ['-R', 'stat /small-folder/longer', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).toMatch(/Size of inline data: \d+/);
    const found = await members(image);
    expect(found.unreadable).toEqual([]);
    expect(found.sums).toEqual({ '/tiny': sha(tiny), '/small-folder/longer': sha(longer), '/regular': sha(regular) });
  });

  it('a key in a file and in a .tar.gz on it is found under its path; a cut image is unscanned', async () => {
    const dir = await tempDir();
    const tree = path.join(dir, 'tree');
    await mkdir(path.join(tree, 'etc/ssh'), { recursive: true });
    await writeFile(path.join(tree, 'etc/ssh/ssh_host_ed25519_key'), sshKey('ed25519').privateKey);
    await writeFile(path.join(tree, 'keys.tar.gz'), execFileSync('tar', ['-cz', '-C', tree, 'etc']));
    const image = path.join(dir, 'seed.img');
    execFileSync('mkfs.ext4', ['-q', '-F', '-d', tree, image, '8M'], { stdio: 'ignore' });
    const report = await scanPaths([image], { operatorSecrets: false });
    const places = report.findings.map((finding) => [finding.rule, ...(finding.chain ?? [])].join(' › ')).sort();
    expect(places).toEqual(['openssh-private-key › /etc/ssh/ssh_host_ed25519_key', 'openssh-private-key › /keys.tar.gz › etc/ssh/ssh_host_ed25519_key']);

    const cut = path.join(dir, 'cut.img');
    await writeFile(cut, readFileSync(image).subarray(0, 600 * KiB));
    const cutReport = await scanPaths([cut], { operatorSecrets: false });
    expect(cutReport.findings.some((finding) => finding.kind === 'unscanned')).toBe(true);
  });
});
