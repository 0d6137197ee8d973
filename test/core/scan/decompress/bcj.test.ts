/**
 * xz with BCJ and Delta filters before LZMA2, made by the real xz from real machine code (ELF
 * binaries and libraries of this machine), several blocks: decoded byte for byte in odd chunk sizes,
 * with `single` stopping exactly at the stream's end, as squashfs blocks, and damaged or cut streams
 * reported, never passed.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decompressBlock, decompressStream } from '../../../../src/core/scan/decompress/index.js';
import { FormatError } from '../../../../src/core/scan/formats/types.js';

const elf = Buffer.concat(['/usr/bin/ls', '/usr/bin/cp', '/usr/bin/tar', '/usr/lib/x86_64-linux-gnu/libc.so.6'].map((f) => readFileSync(f)));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const xz = (args: string[], data: Buffer) => execFileSync('xz', ['-c', ...args], { input: data, maxBuffer: 1 << 30 });

async function* chunks(data: Buffer, size: number) {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function decode(packed: Buffer, size: number, single = false) {
  const stream = decompressStream('xz', chunks(packed, size), { single });
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part);
  return { output: Buffer.concat(parts), consumed: stream.consumed };
}

describe('xz filters', () => {
  it.each([
    ['--x86'],
    ['--arm64'],
    ['--arm'],
    ['--armthumb'],
    ['--powerpc'],
    ['--sparc'],
    ['--ia64'],
    ['--delta=dist=4'],
    ['--x86=start=4096'],
    ['--delta=dist=2', '--x86'],
  ])('%s: round-trips in odd chunks, multi-block, every check type', async (...filter) => {
    const checks = filter[0] === '--x86' ? ['crc32', 'crc64', 'sha256', 'none'] : ['crc64'];
    for (const check of checks) {
      const packed = xz([...filter, '--lzma2=preset=6', `--check=${check}`, '--block-size=1MiB'], elf);
      const { output, consumed } = await decode(packed, 77_777);
      expect(sha(output), check).toBe(sha(elf));
      expect(consumed).toBe(packed.length);
    }
  }, 120_000);

  it('single stops exactly at the end of a filtered stream with bytes after it', async () => {
    const packed = xz(['--x86', '--lzma2', '--block-size=1MiB'], elf);
    const after = Buffer.from('070701 not xz at all');
    const { output, consumed } = await decode(Buffer.concat([packed, after]), 4093, true);
    expect(sha(output)).toBe(sha(elf));
    expect(consumed).toBe(packed.length);
  }, 60_000);

  it('decodes a filtered squashfs-style block, and reports cut and damaged streams', async () => {
    const part = elf.subarray(0, 1 << 20);
    const packed = xz(['--arm64', '--lzma2', '--check=crc32'], part);
    expect((await decompressBlock('xz', packed, 1 << 20)).equals(part)).toBe(true);
    await expect(decompressBlock('xz', packed, (1 << 20) - 1)).rejects.toMatchObject({ reason: 'corrupt' });
    const cut = packed.subarray(0, packed.length - 40);
    await expect(decompressBlock('xz', cut, 1 << 20)).rejects.toMatchObject({ reason: 'truncated' });
    await expect(decode(cut, 5000)).rejects.toMatchObject({ reason: 'truncated' });
    for (const at of [14, 40, packed.length >> 1, packed.length - 30, packed.length - 14, packed.length - 3]) {
      const bad = Buffer.from(packed);
      bad[at]! ^= 0x10;
      const error = await decode(bad, 3000).catch((e: unknown) => e);
      expect(error, `byte ${at}`).toBeInstanceOf(FormatError);
      expect((error as FormatError).reason, `byte ${at}`).toBe('corrupt');
    }
  }, 60_000);
});
