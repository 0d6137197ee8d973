/**
 * Initramfs images made with the real cpio and compressors, laid out as dracut and NixOS's make-initrd
 * lay them out (an uncompressed early cpio with microcode, then compressed main archives, zero padding
 * between): every regular file must come out byte for byte (sha256 against the source tree), a fake
 * host key must be found in the right member, and broken images must give FormatError.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpio } from '../../../../src/core/scan/formats/cpio.js';
import { bufferSource } from '../../../../src/core/scan/formats/byte-source.js';
import { FormatError } from '../../../../src/core/scan/formats/types.js';
import { sshKey } from '../../../helpers/credentials.js';
import { collect, compressibleText, treeHashes } from '../../../helpers/squashfs-image.js';
import { tempDir } from '../../../helpers/tmp.js';

function put(root: string, relative: string, content: Buffer | string): void {
  mkdirSync(path.dirname(path.join(root, relative)), { recursive: true });
  writeFileSync(path.join(root, relative), content);
}

/** `find . | cpio -o -H <format>` run in `root`. */
function cpioArchive(root: string, format: 'newc' | 'odc' | 'crc'): Buffer {
  return execFileSync('sh', ['-c', `find . | LC_ALL=C sort | cpio --quiet -o -H ${format}`], { cwd: root, maxBuffer: 1 << 28 });
}

function compress(bytes: Buffer, command: string, args: string[]): Buffer {
  return execFileSync(command, args, { input: bytes, maxBuffer: 1 << 28 });
}

const compressors: Record<string, [string, string[]]> = {
  zstd: ['zstd', ['-q', '-c']],
  xz: ['xz', ['-c', '--check=crc32']],
  gzip: ['gzip', ['-c', '-9']],
  'lz4 legacy': ['lz4', ['-l', '-q', '-c']],
  bzip2: ['bzip2', ['-c']],
  // boot.initrd.compressor = "lzop"
  lzop: ['lzop', ['-q', '-c', '-9']],
  // boot.initrd.compressor = "lzma"
  lzma: ['xz', ['--format=lzma', '-c']],
};

/** The padding make-initrd and dracut put between archives: zeros up to a multiple of 4 (and then some). */
function pad(bytes: Buffer, extra = 0): Buffer {
  return Buffer.concat([bytes, Buffer.alloc(((4 - (bytes.length % 4)) % 4) + extra)]);
}

async function initrdTrees() {
  const dir = await tempDir();
  const key = sshKey('ed25519').privateKey;
  const early = path.join(dir, 'early');
  put(early, 'kernel/x86/microcode/AuthenticAMD.bin', randomBytes(40_000));
  const main = path.join(dir, 'main');
  put(main, 'etc/ssh/ssh_host_ed25519_key', key);
  put(main, 'init', '#!/bin/sh\nexec /sbin/init\n');
  put(main, 'lib/modules/big.ko', compressibleText(1536 * 1024 + 3, 'module'));
  put(main, 'empty', '');
  for (let index = 0; index < 200; index++) put(main, `share/small-${index}.txt`, compressibleText((index * 37) % 900, `small${index}`));
  linkSync(path.join(main, 'init'), path.join(main, 'init-hardlink'));
  symlinkSync('/etc/ssh/ssh_host_ed25519_key', path.join(main, 'key-symlink'));
  mkdirSync(path.join(main, 'empty-dir'));
  const secrets = path.join(dir, 'secrets');
  put(secrets, 'etc/secrets/initrd/network-key', key);
  return { dir, key, early, main, secrets };
}

function expectSameFiles(got: Awaited<ReturnType<typeof collect>>, ...roots: string[]) {
  const want = new Map<string, string>();
  for (const root of roots) for (const [name, hash] of treeHashes(root)) want.set(name, hash);
  expect(got.unreadable).toEqual([]);
  expect([...got.hashes.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, hash] of want) expect(got.hashes.get(name), name).toBe(hash);
}

describe('cpio', () => {
  it.each(['newc', 'odc', 'crc'] as const)('reads a plain %s archive byte for byte', async (format) => {
    const { key, main } = await initrdTrees();
    const archive = cpioArchive(main, format);
    expect(cpio.detect(archive.subarray(0, 65536), archive.length)).toBe(true);
    const got = await collect(cpio, bufferSource(archive), { needle: key });
    expectSameFiles(got, main);
    expect(got.containing).toEqual(['/etc/ssh/ssh_host_ed25519_key']);
    expect(got.order).not.toContain('/key-symlink');
    expect(got.order).not.toContain('/empty-dir');
  });

  it.each(Object.keys(compressors))('reads an early cpio followed by a %s compressed main cpio', async (label) => {
    const { key, early, main } = await initrdTrees();
    const [command, args] = compressors[label]!;
    const image = Buffer.concat([pad(cpioArchive(early, 'newc')), compress(cpioArchive(main, 'newc'), command, args)]);
    const got = await collect(cpio, bufferSource(image), { needle: key });
    expectSameFiles(got, early, main);
    expect(got.containing).toEqual(['/etc/ssh/ssh_host_ed25519_key']);
    expect(got.order[0]).toBe('/kernel/x86/microcode/AuthenticAMD.bin');
  });

  it('reads raw, xz, bzip2, zstd and gzip segments back to back with padding, like an initrd with appended secrets', async () => {
    const { dir, key, early, main, secrets } = await initrdTrees();
    const more = path.join(dir, 'more');
    put(more, 'etc/more/notes.txt', compressibleText(70_000, 'more'));
    const last = path.join(dir, 'last');
    put(last, 'etc/last/key', key);
    const image = Buffer.concat([
      pad(cpioArchive(early, 'newc'), 512),
      pad(compress(cpioArchive(main, 'newc'), 'xz', ['-c', '--check=crc32']), 4096),
      pad(compress(cpioArchive(more, 'newc'), 'bzip2', ['-c'])),
      compress(cpioArchive(secrets, 'newc'), 'zstd', ['-q', '-c']),
      pad(compress(cpioArchive(last, 'newc'), 'gzip', ['-c']), 7),
    ]);
    const got = await collect(cpio, bufferSource(image), { needle: key });
    expectSameFiles(got, early, main, more, secrets, last);
    expect(got.containing.sort()).toEqual(['/etc/last/key', '/etc/secrets/initrd/network-key', '/etc/ssh/ssh_host_ed25519_key']);
  });

  it('offers the bytes of an uncompressed archive for reading in place', async () => {
    const { early, main } = await initrdTrees();
    const image = Buffer.concat([pad(cpioArchive(early, 'newc'), 100), cpioArchive(main, 'newc'), compress(cpioArchive(main, 'newc'), 'zstd', ['-q', '-c'])]);
    const context = { unreadable: () => undefined, problem: () => undefined };
    let inPlace = 0;
    let total = 0;
    for await (const member of cpio.members(bufferSource(image), context)) {
      const streamed: Buffer[] = [];
      for await (const chunk of member.stream()) streamed.push(chunk);
      total += 1;
      if (member.source === undefined) continue;
      inPlace += 1;
      expect(member.source.size).toBe(member.size);
      expect((await member.source.read(0, member.source.size)).equals(Buffer.concat(streamed)), member.name).toBe(true);
    }
    // Everything but the compressed copy of the main archive (and hard links, held in memory).
    const mainFiles = treeHashes(main).size;
    expect(total).toBe(treeHashes(early).size + 2 * mainFiles);
    expect(inPlace).toBe(treeHashes(early).size + mainFiles - 2);
  });

  it('gives hard-linked names the bytes stored with the last of them', async () => {
    const { main } = await initrdTrees();
    const archive = cpioArchive(main, 'newc');
    const got = await collect(cpio, bufferSource(archive));
    const init = readFileSync(path.join(main, 'init'));
    expect(init.length).toBeGreaterThan(0);
    expect(got.sizes.get('/init')).toBe(init.length);
    expect(got.sizes.get('/init-hardlink')).toBe(init.length);
    expect(got.hashes.get('/init')).toBe(got.hashes.get('/init-hardlink'));
  });

  it('rejects truncated, junk-padded and broken images with FormatError', async () => {
    const { early, main } = await initrdTrees();
    const raw = cpioArchive(main, 'newc');
    const zstd = compress(raw, 'zstd', ['-q', '-c']);
    const earlyArchive = pad(cpioArchive(early, 'newc'));
    const attempt = async (bytes: Buffer) => {
      try {
        await collect(cpio, bufferSource(bytes));
        return undefined;
      } catch (error) {
        return error;
      }
    };
    const cases: Array<[string, Buffer, string]> = [
      ['raw archive cut in a member', raw.subarray(0, Math.floor(raw.length / 2)), 'truncated'],
      ['raw archive cut in a header', raw.subarray(0, 50), 'truncated'],
      ['junk after the early archive', Buffer.concat([earlyArchive, Buffer.from('this is not an archive')]), 'corrupt'],
      ['a header with a field that is not hex', Buffer.concat([Buffer.from('070701zzzzzzzz'), raw.subarray(14)]), 'corrupt'],
      ['a compressed segment cut short', Buffer.concat([earlyArchive, zstd.subarray(0, Math.floor(zstd.length / 2))]), 'truncated'],
      ['junk inside a compressed segment', Buffer.concat([earlyArchive, compress(Buffer.concat([raw, Buffer.from('junk')]), 'zstd', ['-q', '-c'])]), 'corrupt'],
    ];
    for (const [label, bytes, reason] of cases) {
      const error = await attempt(bytes);
      expect(error, label).toBeInstanceOf(FormatError);
      expect((error as FormatError).reason, label).toBe(reason);
    }
  });

  it('does not claim compressed or other files', () => {
    expect(cpio.detect(compress(Buffer.from('hello'), 'zstd', ['-q', '-c']), undefined)).toBe(false);
    expect(cpio.detect(Buffer.from('07070'), undefined)).toBe(false);
    expect(cpio.detect(Buffer.from('0707010000'), undefined)).toBe(true);
  });
});
