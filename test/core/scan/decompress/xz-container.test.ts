/**
 * The xz container as the real xz writes it, read by the parser in xz.ts that walks every stream ahead
 * of the WebAssembly decoder: 20+ MB single-block (xz -T1 -6) and multi-block (xz -T2, block headers
 * with sizes) streams of text and random data, every check type, concatenated streams with stream
 * padding, empty streams, an index of thousands of records, all fed in irregular pieces down to one
 * byte (a piece may hold nothing but a block's check); and unknown filters, bad checks, a bad index
 * and cut streams reported as FormatErrors, never passed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { decompressStream } from '../../../../src/core/scan/decompress/index.js';
import { FormatError } from '../../../../src/core/scan/formats/types.js';
import { tempDir } from '../../../helpers/tmp.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const xz = (args: string[], data: Buffer) => execFileSync('xz', ['-c', ...args], { input: data, maxBuffer: 1 << 30 });

/** `xz -c args in > out`, run asynchronously so two encoders use both cores. */
function xzFile(args: string[], input: string, output: string): Promise<void> {
  const fd = openSync(output, 'w');
  return new Promise<void>((resolve, reject) => {
    const child = spawn('xz', ['-c', ...args, input], { stdio: ['ignore', fd, 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`xz exited with ${code}`))));
  }).finally(() => closeSync(fd));
}

/** Pieces of irregular size from a seeded generator: a fifth of them 1 to 16 bytes, some up to 200 KB. */
async function* irregular(data: Buffer, seed: number, small = false): AsyncGenerator<Buffer> {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  for (let at = 0; at < data.length; ) {
    const r = next();
    const size = small || r < 0.2 ? 1 + Math.floor(next() * 16) : r < 0.5 ? 17 + Math.floor(next() * 5000) : 5000 + Math.floor(next() * 200_000);
    yield data.subarray(at, at + size);
    at += size;
  }
}

async function decode(input: AsyncIterable<Buffer>, options: { single?: boolean; signal?: AbortSignal } = {}) {
  const stream = decompressStream('xz', input, options);
  const hash = createHash('sha256');
  const parts: Buffer[] = [];
  let length = 0;
  for await (const part of stream) {
    hash.update(part);
    length += part.length;
    if (length < 8 << 20) parts.push(part);
  }
  return { sha: hash.digest('hex'), length, output: Buffer.concat(parts), consumed: stream.consumed };
}

async function failure(promise: Promise<unknown>): Promise<FormatError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FormatError);
  return error as FormatError;
}

/** Text lines and random runs, about `size` bytes. */
function mixed(size: number): Buffer {
  const parts: Buffer[] = [];
  let total = 0;
  for (let i = 0; total < size; i++) {
    const part =
      i % 3 === 2
        ? randomBytes(1000 + ((i * 7919) % 150_000))
        : Buffer.from(Array.from({ length: 2000 + (i % 50) * 100 }, (_, k) => `entry ${i}.${k} /nix/store/${(i * 31 + k).toString(36)}-pkg ok\n`).join(''));
    parts.push(part);
    total += part.length;
  }
  return Buffer.concat(parts);
}

/** Where a single-stream's last block check lies: just before the index (footer's backward size). */
function lastCheckOffset(packed: Buffer, checkSize: number): number {
  const indexSize = (packed.readUInt32LE(packed.length - 8) + 1) * 4;
  return packed.length - 12 - indexSize - checkSize;
}

describe('xz container', () => {
  let dir: string;
  let big: Buffer;
  let bigSha: string;
  let single: Buffer;
  let multi: Buffer;

  beforeAll(async () => {
    dir = await tempDir('dubnium-xz-container-');
    big = mixed(21 << 20);
    bigSha = sha(big);
    const plain = path.join(dir, 'big.bin');
    writeFileSync(plain, big);
    await Promise.all([xzFile(['-T1', '-6'], plain, path.join(dir, 'single.xz')), xzFile(['-T2', '--block-size=1MiB'], plain, path.join(dir, 'multi.xz'))]);
    single = readFileSync(path.join(dir, 'single.xz'));
    multi = readFileSync(path.join(dir, 'multi.xz'));
  }, 300_000);

  it('reads a 20 MB single-block stream (xz -T1 -6) and a multi-block one (xz -T2) byte for byte in irregular pieces', async () => {
    // The shape of each stream, as xz itself lists it: one block, then many with sizes in their headers.
    const blocks = (file: string) => Number(execFileSync('xz', ['--robot', '--list', file], { encoding: 'utf8' }).split('\n').find((line) => line.startsWith('totals'))!.split('\t')[2]);
    expect(blocks(path.join(dir, 'single.xz'))).toBe(1);
    expect(blocks(path.join(dir, 'multi.xz'))).toBeGreaterThan(15);
    // xz -dc agrees with the original, and so must we.
    expect(sha(execFileSync('xz', ['-dc'], { input: multi, maxBuffer: 1 << 30 }))).toBe(bigSha);
    for (const [packed, seed] of [
      [single, 1],
      [single, 77],
      [multi, 2],
      [multi, 99],
    ] as const) {
      const got = await decode(irregular(packed, seed));
      expect(got.length).toBe(big.length);
      expect(got.sha).toBe(bigSha);
      expect(got.consumed).toBe(packed.length);
    }
  }, 300_000);

  it('reads every check type, plain and with --x86, in pieces of 1 to 16 bytes', async () => {
    const data = big.subarray(0, 600_000);
    for (const check of ['none', 'crc32', 'crc64', 'sha256']) {
      for (const filters of [[], ['--x86', '--lzma2'], ['--delta=dist=4', '--lzma2']]) {
        const packed = xz([`--check=${check}`, '--block-size=200KiB', ...filters], data);
        const got = await decode(irregular(packed, check.length * 13 + filters.length, true));
        expect(got.output.equals(data), `${check} ${filters.join(' ')}`).toBe(true);
        expect(got.consumed).toBe(packed.length);
      }
    }
  }, 120_000);

  it('reads concatenated streams with stream padding and empty streams between them, and single stops after the first', async () => {
    const a = big.subarray(0, 300_000);
    const b = big.subarray(5_000_000, 5_400_000);
    const empty = xz([], Buffer.alloc(0));
    const packedA = xz(['--x86', '--lzma2', '--check=crc32'], a);
    const packedB = xz(['--check=sha256', '--block-size=64KiB'], b);
    const packed = Buffer.concat([empty, Buffer.alloc(4), packedA, Buffer.alloc(8), empty, packedB, empty, Buffer.alloc(12)]);
    // The real xz reads it the same way.
    expect(execFileSync('xz', ['-dc'], { input: packed }).equals(Buffer.concat([a, b]))).toBe(true);
    for (const seed of [3, 4]) {
      const got = await decode(irregular(packed, seed, seed === 3));
      expect(got.output.equals(Buffer.concat([a, b]))).toBe(true);
      expect(got.consumed).toBe(packed.length);
    }
    expect((await decode(irregular(empty, 5, true))).length).toBe(0);
    const first = await decode(irregular(Buffer.concat([packedA, packedB]), 6), { single: true });
    expect(first.output.equals(a)).toBe(true);
    expect(first.consumed).toBe(packedA.length);
    // Stream padding that is not a multiple of four bytes is not padding.
    const odd = Buffer.concat([packedA, Buffer.alloc(3), packedB]);
    await failure(decode(irregular(odd, 7)));
  }, 120_000);

  it('reads an index of thousands of records, in one-byte to 16-byte pieces', async () => {
    const data = big.subarray(0, 1_500_000);
    const local = await tempDir();
    for (const filters of [[], ['--arm64', '--lzma2']]) {
      const packed = xz(['--block-size=500', ...filters], data);
      const file = path.join(local, 'many.xz');
      writeFileSync(file, packed);
      const blocks = Number(execFileSync('xz', ['--robot', '--list', file], { encoding: 'utf8' }).split('\n').find((line) => line.startsWith('totals'))!.split('\t')[2]);
      expect(blocks).toBeGreaterThan(2500);
      const got = await decode(irregular(packed, 8, true));
      expect(got.output.equals(data)).toBe(true);
      expect(got.consumed).toBe(packed.length);
    }
  }, 120_000);

  it('reports a filter it does not know as unsupported, a bad check, index or header as corrupt, and cut streams as truncated', async () => {
    const data = big.subarray(0, 400_000);
    // A future filter: the Delta filter's ID changed to one no xz has, header CRC-32 made right.
    const delta = xz(['--delta=dist=4', '--lzma2', '--check=crc32'], data);
    const unknown = Buffer.from(delta);
    const headerSize = (unknown[12]! + 1) * 4;
    expect(unknown[14]).toBe(0x03);
    unknown[14] = 0x4a;
    unknown.writeUInt32LE(zlib.crc32(unknown.subarray(12, 12 + headerSize - 4)) >>> 0, 12 + headerSize - 4);
    const error = await failure(decode(irregular(unknown, 9)));
    expect(error.reason).toBe('unsupported');
    expect(error.message).toContain('0x4a');

    for (const [args, checkSize] of [
      [['--x86', '--lzma2', '--check=crc32'], 4],
      [['--check=crc64'], 8],
      [['--powerpc', '--lzma2', '--check=sha256'], 32],
    ] as const) {
      const packed = xz([...args], data);
      // The last block's check, one bit off.
      const badCheck = Buffer.from(packed);
      badCheck[lastCheckOffset(packed, checkSize)]! ^= 0x01;
      expect((await failure(decode(irregular(badCheck, 10)))).reason, `${args.join(' ')} check`).toBe('corrupt');
      // The index's CRC-32 (the 4 bytes before the footer).
      const badIndex = Buffer.from(packed);
      badIndex[packed.length - 13]! ^= 0x80;
      expect((await failure(decode(irregular(badIndex, 11)))).reason, `${args.join(' ')} index`).toBe('corrupt');
      // The block header's CRC-32.
      const badHeader = Buffer.from(packed);
      badHeader[12 + (packed[12]! + 1) * 4 - 1]! ^= 0x01;
      expect((await failure(decode(irregular(badHeader, 12)))).reason, `${args.join(' ')} header`).toBe('corrupt');
      for (const cut of [6, 12, 13, 40, packed.length >> 1, lastCheckOffset(packed, checkSize) + 1, packed.length - 20, packed.length - 12, packed.length - 1]) {
        const got = await failure(decode(irregular(packed.subarray(0, cut), cut)));
        expect(got.reason, `${args.join(' ')} cut at ${cut}`).toBe('truncated');
      }
    }
  }, 120_000);

  it('stops a filtered stream when the signal is aborted', async () => {
    const packed = xz(['--x86', '--lzma2', '--block-size=1MiB'], big.subarray(0, 6 << 20));
    const controller = new AbortController();
    const reason = new Error('stop here');
    let chunks = 0;
    const stream = decompressStream('xz', irregular(packed, 13), { signal: controller.signal });
    const run = (async () => {
      for await (const _ of stream) {
        chunks++;
        if (chunks === 3) controller.abort(reason);
      }
    })();
    await expect(run).rejects.toBe(reason);
    expect(stream.consumed).toBeLessThan(packed.length);
  }, 60_000);
});
