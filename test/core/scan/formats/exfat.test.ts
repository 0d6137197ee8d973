/**
 * exFAT read in place (formats/exfat.ts) against images made with mkfs.exfat and filled through
 * exfat-fuse on a loop device: every regular file comes out with its exact bytes (contiguous ones,
 * fragmented ones along the FAT, empty ones, names longer than one name entry, a folder of many
 * clusters), and a damaged chain is reported, never passed.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileSource } from '../../../../src/core/scan/formats/byte-source.js';
import { exfat, exfatGeometry } from '../../../../src/core/scan/formats/exfat.js';
import { detectFormat } from '../../../../src/core/scan/formats/index.js';
import type { FormatContext } from '../../../../src/core/scan/formats/types.js';
import { tempDir } from '../../../helpers/tmp.js';

const KiB = 1024;
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** An exFAT image (`clusterKiB` clusters) filled by `fill(mountPoint)` through exfat-fuse on a loop device. */
async function exfatImage(dir: string, clusterKiB: number, fill: (root: string) => Promise<void>): Promise<string> {
  const image = path.join(dir, 'fs.img');
  execFileSync('truncate', ['-s', '32M', image]);
  execFileSync('mkfs.exfat', ['-c', `${clusterKiB}K`, '-L', 'SEED', image], { stdio: 'ignore' });
  const mountPoint = path.join(dir, 'mnt');
  await mkdir(mountPoint);
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
  return image;
}

async function members(image: string): Promise<{ sums: Record<string, string>; unreadable: string[]; problems: string[] }> {
  const source = await fileSource(image);
  const unreadable: string[] = [];
  const problems: string[] = [];
  const context: FormatContext = { unreadable: (name, reason, message) => unreadable.push(`${name}: ${reason}: ${message}`), problem: (name, message) => problems.push(`${name}: ${message}`) };
  const sums: Record<string, string> = {};
  try {
    for await (const member of exfat.members(source, context)) {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of member.stream()) {
        hash.update(chunk);
        size += chunk.length;
      }
      expect(size, member.name).toBe(member.size);
      // The free clusters (a raw member) are not a file: free-space.test.ts checks them.
      if (!member.raw) sums[member.name] = hash.digest('hex');
    }
  } finally {
    await source.close?.();
  }
  return { sums, unreadable, problems };
}

describe('exFAT', () => {
  it.each([4, 32])('%i KiB clusters: every file with its exact bytes', async (clusterKiB) => {
    const dir = await tempDir();
    const expected: Record<string, string> = {};
    const image = await exfatImage(dir, clusterKiB, async (root) => {
      const put = async (name: string, bytes: Buffer) => {
        await mkdir(path.dirname(path.join(root, name)), { recursive: true });
        await writeFile(path.join(root, name), bytes);
        expected[`/${name}`] = sha(bytes);
      };
      await put('empty', Buffer.alloc(0));
      await put('one', Buffer.from('x'));
      await put('a/b/c/deep.txt', Buffer.from('deep\n'));
      await put('a name longer than one fifteen-character name entry, ünïcödé.txt', Buffer.from('long name\n'));
      await put('big', randomBytes(2 * 1024 * KiB + 3));
      for (let index = 0; index < 300; index++) await put(`many/file-${index}`, Buffer.from(`file ${index}\n`));
      // Two files grown in turns: their clusters interleave, so each follows the FAT.
      const first: Buffer[] = [];
      const second: Buffer[] = [];
      for (let round = 0; round < 6; round++) {
        const a = randomBytes(clusterKiB * KiB + 100);
        const b = randomBytes(clusterKiB * KiB + 200);
        await appendFile(path.join(root, 'fragmented-a'), a);
        await appendFile(path.join(root, 'fragmented-b'), b);
        first.push(a);
        second.push(b);
      }
      expected['/fragmented-a'] = sha(Buffer.concat(first));
      expected['/fragmented-b'] = sha(Buffer.concat(second));
    });
    const head = readFileSync(image).subarray(0, 64 * KiB);
    expect(detectFormat(head)?.name).toBe('exfat');
    const found = await members(image);
    expect(found.unreadable).toEqual([]);
    expect(found.problems).toEqual([]);
    expect(found.sums).toEqual(expected);
  });

  it('a FAT chain cut short is unscanned for that file; the others are still read', async () => {
    const dir = await tempDir();
    let fragmentedFirst = 0;
    const image = await exfatImage(dir, 4, async (root) => {
      await writeFile(path.join(root, 'intact'), 'intact\n');
      for (let round = 0; round < 3; round++) {
        await appendFile(path.join(root, 'fragmented'), randomBytes(5000));
        await appendFile(path.join(root, 'spacer'), randomBytes(5000));
      }
    });
    // Find the fragmented file's first cluster through the reader, then end its chain there.
    const bytes = readFileSync(image);
    const geometry = exfatGeometry(bytes)!;
    const source = await fileSource(image);
    for await (const member of exfat.members(source, { unreadable: () => undefined, problem: () => undefined })) {
      if (member.name !== '/fragmented') continue;
      const start = bytes.indexOf((await member.source!.read(0, 64)));
      fragmentedFirst = (start - geometry.dataOffset) / geometry.clusterBytes + 2;
    }
    await source.close?.();
    expect(fragmentedFirst).toBeGreaterThanOrEqual(2);
    bytes.writeUInt32LE(0xffffffff, geometry.fatOffset + fragmentedFirst * 4);
    writeFileSync(image, bytes);
    const found = await members(image);
    expect(found.unreadable.join('\n')).toMatch(/^\/fragmented: corrupt: .*cluster chain ends after 1 clusters/);
    expect(Object.keys(found.sums).sort()).toEqual(['/intact', '/spacer']);
  });
});
