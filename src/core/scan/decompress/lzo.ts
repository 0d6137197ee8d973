/**
 * LZO1X, as squashfs (`mksquashfs -comp lzo`) stores its blocks and lzop (`boot.initrd.compressor =
 * "lzop"`, a `.lzo` file) its stream: the decoder after the kernel's lzo1x_decompress_safe (bitstream
 * versions 0 and 1, the latter's zero runs), every copy checked against the input, the output and the
 * window, so damaged data is a 'corrupt' error and never a read out of bounds.
 *
 * lzop's stream: a 9-byte magic, a header (versions, method, flags, mode, times, name, checksum),
 * then blocks of `uncompressed length, compressed length, checksums, data` (stored when both lengths
 * are equal) until a zero length.
 */
import zlib from 'node:zlib';
import { FormatError } from '../formats/types.js';
import type { ByteReader } from './input.js';
import type { MemberCodec, StepDecoder, StepResult } from './driver.js';

const corrupt = (message: string) => new FormatError('corrupt', `lzo: ${message}`);
const truncated = () => new FormatError('truncated', 'lzo: the data ends inside a block');

/**
 * Decodes the LZO1X block `src[start, end)` into `dst` from `at`, at most `limit` bytes of output;
 * returns where the output ends. The whole block must be consumed up to its end marker.
 */
function lzo1xDecodeInto(src: Uint8Array, start: number, end: number, dst: Uint8Array, at: number, limit: number): number {
  let ip = start;
  let op = at;
  const opEnd = Math.min(dst.length, at + limit);
  let state = 0;
  let version = 0;
  const needIn = (count: number) => {
    if (end - ip < count) throw truncated();
  };
  const needOut = (count: number) => {
    if (opEnd - op < count) throw corrupt(`a block decodes to more than ${limit} bytes`);
  };
  const literals = (count: number) => {
    needIn(count);
    needOut(count);
    dst.set(src.subarray(ip, ip + count), op);
    ip += count;
    op += count;
  };
  /** Lengths over their field: zero bytes count 255 each, then one byte more. */
  const extended = (base: number): number => {
    let zeros = 0;
    for (;;) {
      needIn(1);
      if (src[ip] !== 0) break;
      ip++;
      if (++zeros > 0x1000000) throw corrupt('a length runs away');
    }
    return base + zeros * 255 + src[ip++]!;
  };
  const copyMatch = (distance: number, length: number) => {
    const from = op - distance;
    if (from < at || distance <= 0) throw corrupt('a match reaches before the start of the block');
    needOut(length);
    // Byte by byte: a match may overlap the bytes it produces (a run).
    for (let index = 0; index < length; index++) dst[op + index] = dst[from + index]!;
    op += length;
  };

  needIn(1);
  if (end - start >= 5 && src[ip] === 17) {
    version = src[ip + 1]!;
    ip += 2;
  }
  needIn(1);
  if (src[ip]! > 17) {
    const count = src[ip++]! - 17;
    literals(count);
    state = count < 4 ? count : 4;
  }
  for (;;) {
    needIn(1);
    const t = src[ip++]!;
    let next: number;
    if (t < 16) {
      if (state === 0) {
        // A run of four or more literals.
        literals(t === 0 ? extended(15) + 3 : t + 3);
        state = 4;
        continue;
      }
      needIn(1);
      next = t & 3;
      if (state !== 4) {
        copyMatch(1 + (t >> 2) + (src[ip++]! << 2), 2);
      } else {
        copyMatch(1 + 0x800 + (t >> 2) + (src[ip++]! << 2), 3);
      }
    } else if (t >= 64) {
      needIn(1);
      next = t & 3;
      copyMatch(1 + ((t >> 2) & 7) + (src[ip++]! << 3), (t >> 5) + 1);
    } else if (t >= 32) {
      const length = (t & 31) === 0 ? extended(31) + 2 : (t & 31) + 2;
      needIn(2);
      const word = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
      next = word & 3;
      copyMatch((word >> 2) + 1, length);
    } else {
      needIn(2);
      const peek = src[ip]! | (src[ip + 1]! << 8);
      if (version !== 0 && (peek & 0xfffc) === 0xfffc && (t & 0xf8) === 0x18) {
        // Version 1's run of zeros.
        needIn(3);
        const length = ((t & 7) | (src[ip + 2]! << 3)) + 4;
        needOut(length);
        dst.fill(0, op, op + length);
        op += length;
        next = peek & 3;
        ip += 3;
      } else {
        const length = (t & 7) === 0 ? extended(7) + 2 : (t & 7) + 2;
        needIn(2);
        const word = src[ip]! | (src[ip + 1]! << 8);
        ip += 2;
        next = word & 3;
        const distance = ((t & 8) << 11) + (word >> 2);
        if (distance === 0) {
          // The end marker (0x11 0x00 0x00): it must close the block exactly.
          if (length !== 3) throw corrupt('a bad end marker');
          if (ip !== end) throw corrupt(`${end - ip} bytes after the end marker`);
          return op;
        }
        copyMatch(distance + 0x4000, length);
      }
    }
    state = next;
    if (next > 0) literals(next);
  }
}

/** One LZO1X block (a squashfs block): its output, at most `maxOutput` bytes. */
export function lzoDecodeBlock(input: Uint8Array, maxOutput: number): Buffer {
  const out = Buffer.allocUnsafe(maxOutput);
  const end = lzo1xDecodeInto(input, 0, input.length, out, 0, maxOutput);
  return out.subarray(0, end);
}

export const LZOP_MAGIC = Buffer.from([0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a]);

const F_ADLER32_D = 0x1;
const F_ADLER32_C = 0x2;
const F_H_EXTRA_FIELD = 0x40;
const F_H_FILTER = 0x800;
const F_H_CRC32 = 0x1000;
const F_CRC32_D = 0x100;
const F_CRC32_C = 0x200;
/** lzop writes 256 KiB blocks (the kernel reads no others). A block is held whole in memory, so a far larger one is refused. */
const MAX_BLOCK = 8 * 1024 * 1024;

function adler32(bytes: Uint8Array, start = 1): number {
  let a = start & 0xffff;
  let b = start >>> 16;
  for (let index = 0; index < bytes.length; ) {
    // 5552 bytes at most between reductions keep the sums below 2^32.
    const stop = Math.min(bytes.length, index + 5552);
    for (; index < stop; index++) {
      a += bytes[index]!;
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}

function crc32(bytes: Uint8Array): number {
  return zlib.crc32(bytes) >>> 0;
}

/** One lzop stream: its header, then blocks until the zero length. */
export class LzopStep implements StepDecoder {
  private flags = 0;
  private started = false;

  step(input: Buffer, _eof: boolean): StepResult {
    if (!this.started) return this.header(input);
    if (input.length < 4) return { used: 0, need: 4 };
    const length = input.readUInt32BE(0);
    if (length === 0) return { used: 4, done: true };
    if (length > MAX_BLOCK) throw new FormatError('unsupported', `lzop: a block of ${length} bytes is larger than lzop writes (256 KiB)`);
    if (input.length < 8) return { used: 0, need: 8 };
    const stored = input.readUInt32BE(4);
    if (stored === 0 || stored > length) throw corrupt(`a block of ${stored} compressed bytes for ${length}`);
    const checks = (this.flags & F_ADLER32_D ? 1 : 0) + (this.flags & F_CRC32_D ? 1 : 0) + (stored < length ? (this.flags & F_ADLER32_C ? 1 : 0) + (this.flags & F_CRC32_C ? 1 : 0) : 0);
    const dataAt = 8 + checks * 4;
    const total = dataAt + stored;
    if (input.length < total) return { used: 0, need: total };
    const data = input.subarray(dataAt, total);
    const output = stored === length ? Buffer.from(data) : lzoDecodeBlock(data, length);
    if (output.length !== length) throw corrupt(`a block decodes to ${output.length} bytes, not ${length}`);
    let check = 8;
    if (this.flags & F_ADLER32_D) {
      if (input.readUInt32BE(check) !== adler32(output)) throw corrupt('block checksum mismatch');
      check += 4;
    }
    if (this.flags & F_CRC32_D && input.readUInt32BE(check) !== crc32(output)) throw corrupt('block checksum mismatch');
    return { used: total, output, busy: true };
  }

  private header(input: Buffer): StepResult {
    if (input.length < 9) return { used: 0, need: 9 };
    if (!input.subarray(0, 9).equals(LZOP_MAGIC)) throw corrupt('not an lzop stream');
    // At most 9 + 7 + 1 + 8 + 8 + 4 + 1 + 255 + 4 bytes, plus an extra field (a length first).
    const need = (count: number): StepResult | undefined => (input.length < count ? { used: 0, need: count } : undefined);
    let at = 9;
    const fixed = need(at + 16);
    if (fixed) return fixed;
    const version = input.readUInt16BE(at);
    at += 4; // version, library version
    if (version >= 0x0940) at += 2; // version needed to extract
    const method = input[at++]!;
    if (version >= 0x0940) at++; // level
    if (method < 1 || method > 3) throw new FormatError('unsupported', `lzop: method ${method} is not LZO1X`);
    const flags = input.readUInt32BE(at);
    at += 4;
    if (flags & F_H_FILTER) throw new FormatError('unsupported', 'lzop: streams with a filter are not supported');
    at += 8; // mode, mtime low
    if (version >= 0x0940) at += 4; // mtime high
    const nameLength = need(at + 1);
    if (nameLength) return nameLength;
    at += 1 + input[at]!;
    const checksum = need(at + 4);
    if (checksum) return checksum;
    const header = input.subarray(9, at);
    const expected = input.readUInt32BE(at);
    if ((flags & F_H_CRC32 ? crc32(header) : adler32(header)) !== expected) throw corrupt('header checksum mismatch');
    at += 4;
    if (flags & F_H_EXTRA_FIELD) {
      const extra = need(at + 4);
      if (extra) return extra;
      const length = input.readUInt32BE(at);
      if (length > 1 << 20) throw corrupt('an extra field larger than any lzop writes');
      const whole = need(at + 4 + length + 4);
      if (whole) return whole;
      at += 4 + length + 4;
    }
    this.flags = flags;
    this.started = true;
    return { used: at, busy: true };
  }

  dispose(): void {}
}

export const lzopCodec: MemberCodec = {
  label: 'lzop',
  open: () => new LzopStep(),
  async another(reader: ByteReader) {
    const head = await reader.peek(9);
    return head.length === 9 && head.equals(LZOP_MAGIC);
  },
};
