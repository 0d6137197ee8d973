/**
 * decompressBlock and the worker pool, with blocks made by the real tools the way squashfs stores
 * them: a zlib stream, an xz stream (CRC-32 check), a zstd frame, a raw LZ4 block, an LZO1X block
 * (from lzop), an LZMA-alone stream with its size written in (as mksquashfs -comp lzma does).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createBlockPool, decompressBlock, type BlockCompression } from '../../../../src/core/scan/decompress/index.js';
import { FormatError } from '../../../../src/core/scan/formats/types.js';

const BLOCK = 128 * 1024;

/** A squashfs-sized block: text with some random bytes, compressible but not trivially. */
function content(size = BLOCK): Buffer {
  const text = Buffer.from(Array.from({ length: 4000 }, (_, i) => `/nix/store/${i.toString(36)}-pkg/lib/file-${i}.so\n`).join(''));
  const out = Buffer.alloc(size);
  for (let at = 0; at < size; at += text.length) text.copy(out, at, 0, Math.min(text.length, size - at));
  randomBytes(2000).copy(out, 5000);
  return out;
}

/** The single raw LZ4 block inside an `lz4` frame of independent blocks without checksums. */
function lz4Block(data: Buffer): Buffer {
  const frame = execFileSync('lz4', ['-q', '-c', '-B7', '-BI', '--no-frame-crc'], { input: data });
  expect(frame.readUInt32LE(0)).toBe(0x184d2204);
  const word = frame.readUInt32LE(7);
  expect(word >>> 31).toBe(0); // compressed, not stored (squashfs stores those uncompressed itself)
  return frame.subarray(11, 11 + word);
}

/** The first LZO1X block of an lzop stream (of at most 256 KiB, lzop's block size). */
function lzoBlock(data: Buffer): Buffer {
  const stream = execFileSync('lzop', ['-q', '-c', '--no-name'], { input: data });
  // Magic 9, versions 6, method and level 2, flags 4, mode 4, mtime 8, name length 1 (0), checksum 4.
  const flags = stream.readUInt32BE(17);
  const nameAt = 9 + 6 + 2 + 4 + 4 + 8;
  let at = nameAt + 1 + stream[nameAt]! + 4;
  const length = stream.readUInt32BE(at);
  const stored = stream.readUInt32BE(at + 4);
  expect(length).toBe(data.length);
  expect(stored).toBeLessThan(length); // compressed, not stored
  at += 8 + 4 + (flags & 2 ? 4 : 0);
  return stream.subarray(at, at + stored);
}

/** An LZMA-alone stream with the uncompressed size in its header, as mksquashfs writes a block. */
function lzmaBlock(data: Buffer): Buffer {
  const stream = Buffer.from(execFileSync('xz', ['--format=lzma', '-c'], { input: data }));
  stream.writeUInt32LE(data.length, 5);
  stream.writeUInt32LE(0, 9);
  return stream;
}

function make(kind: BlockCompression, data: Buffer): Buffer {
  switch (kind) {
    case 'zlib':
      return zlib.deflateSync(data);
    case 'gzip':
      return execFileSync('gzip', ['-c'], { input: data });
    case 'xz':
      return execFileSync('xz', ['--format=xz', '--check=crc32', '-c'], { input: data });
    case 'zstd':
      return execFileSync('zstd', ['-q', '-c', '-12'], { input: data });
    case 'lz4-block':
      return lz4Block(data);
    case 'lzo':
      return lzoBlock(data);
    case 'lzma':
      return lzmaBlock(data);
    default:
      throw new Error(kind);
  }
}

async function failure(promise: Promise<unknown>): Promise<FormatError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FormatError);
  return error as FormatError;
}

const KINDS: BlockCompression[] = ['zlib', 'gzip', 'xz', 'zstd', 'lz4-block', 'lzo', 'lzma'];
/** Formats with no checksum: damage may decode to other bytes (squashfs checks the length it expects). */
const UNCHECKED: BlockCompression[] = ['lz4-block', 'lzo', 'lzma'];

describe.each(KINDS)('decompressBlock %s', (kind) => {
  it('decodes a block, empty and full-size ones too', async () => {
    // Raw LZ4 blocks of incompressible data are not made: squashfs stores such blocks uncompressed.
    // LZO blocks are lzop's, 256 KiB at most.
    const samples =
      kind === 'lz4-block'
        ? [content(), content(1 << 20), Buffer.from('x'.repeat(100))]
        : kind === 'lzo'
          ? [content(), content(256 * 1024), Buffer.from('x'.repeat(100))]
          : [content(), content(1 << 20), Buffer.from('x'), randomBytes(50_000)];
    for (const data of samples) {
      const block = make(kind, data);
      expect((await decompressBlock(kind, block, 1 << 20)).equals(data)).toBe(true);
    }
  });

  it('refuses output larger than maxOutput as corrupt', async () => {
    const block = make(kind, content());
    expect((await failure(decompressBlock(kind, block, BLOCK - 1))).reason).toBe('corrupt');
    expect((await decompressBlock(kind, block, BLOCK)).length).toBe(BLOCK);
  });

  it('reports a cut or damaged block (a raw LZ4 block has no checksum: its damage shows in the output)', async () => {
    const data = content();
    const block = make(kind, data);
    const half = block.subarray(0, Math.floor(block.length / 2));
    if (kind === 'lz4-block') {
      // A raw LZ4 block carries no length: cut where a literal run ends, it decodes to a valid
      // shorter output. Either it fails, or what comes out is not the data (the caller, squashfs,
      // knows the block's size and checks it).
      const cut = await decompressBlock(kind, half, 1 << 20).then(
        (output) => output,
        (e: unknown) => e,
      );
      if (Buffer.isBuffer(cut)) expect(cut.length).toBeLessThan(data.length);
      else expect(['truncated', 'corrupt']).toContain((cut as FormatError).reason);
    } else {
      const cut = await failure(decompressBlock(kind, half, 1 << 20));
      expect(['truncated', 'corrupt']).toContain(cut.reason);
    }
    const damaged = Buffer.from(block);
    for (let i = 20; i < damaged.length - 20; i += 97) damaged[i] = damaged[i]! ^ 0xa5;
    const result = await decompressBlock(kind, damaged, 1 << 20).then(
      (output) => output,
      (e: unknown) => e,
    );
    if (UNCHECKED.includes(kind) && Buffer.isBuffer(result)) expect(result.equals(data)).toBe(false);
    else expect(['corrupt', 'truncated']).toContain((result as FormatError).reason);
  });
});

const root = path.resolve(import.meta.dirname, '../../../..');
const built = path.join(root, 'dist/core/scan/decompress/index.js');

describe('block pool', () => {
  it('from TypeScript sources (no worker script) decodes on the calling thread', async () => {
    const pool = createBlockPool(2);
    expect(pool.threads).toBe(0);
    const data = content();
    expect((await pool.decompress('zstd', make('zstd', data), 1 << 20)).equals(data)).toBe(true);
    await pool.close();
  });

  it('built, runs workers on every core, keeps results in order of request and errors with their reason', async () => {
    expect(existsSync(built), 'run npm run build first (npm test does)').toBe(true);
    const mod = (await import(pathToFileURL(built).href)) as typeof import('../../../../src/core/scan/decompress/index.js');
    const pool = mod.createBlockPool(2);
    expect(pool.threads).toBe(2);
    const datas = Array.from({ length: 12 }, (_, i) => Buffer.concat([content(), Buffer.from(`block ${i}`)]));
    for (const kind of KINDS) {
      const blocks = datas.map((data) => make(kind, data));
      const outputs = await Promise.all(blocks.map((block) => pool.decompress(kind, block, 1 << 20)));
      outputs.forEach((output, i) => expect(output.equals(datas[i]!), `${kind} block ${i}`).toBe(true));
      // The caller's buffers are left intact (inputs are copied before transfer).
      expect(blocks.every((block) => block.length > 0)).toBe(true);
    }
    // The error comes from the built module: its FormatError class, the same reason.
    const error = (await pool.decompress('zstd', make('zstd', content()), 10).catch((e: unknown) => e)) as FormatError;
    expect(error.name).toBe('FormatError');
    expect(error.reason).toBe('corrupt');
    await pool.close();
    expect(pool.threads).toBe(0);
    // After close, blocks are still decoded (on this thread).
    const data = content();
    expect((await pool.decompress('zlib', make('zlib', data), 1 << 20)).equals(data)).toBe(true);
  }, 600_000);

  it('built, does not keep the process alive when not closed', () => {
    expect(existsSync(built), 'run npm run build first (npm test does)').toBe(true);
    const script = `
      import { createBlockPool } from ${JSON.stringify(pathToFileURL(built).href)};
      import zlib from 'node:zlib';
      const pool = createBlockPool(2);
      const out = await pool.decompress('zlib', zlib.deflateSync(Buffer.from('hello')), 100);
      console.log(pool.threads, out.toString());
    `;
    const started = Date.now();
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(result.stdout.trim()).toBe('2 hello');
    expect(result.status).toBe(0);
    expect(Date.now() - started).toBeLessThan(60_000);
  });
});
