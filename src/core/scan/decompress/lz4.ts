/**
 * LZ4 in TypeScript: the raw block format (squashfs), the frame format (`lz4`) and the legacy format
 * (`lz4 -l`, the Linux kernel's initramfs). The format is small; a decoder of our own bounds every
 * call to one block and reports exactly where a frame ends.
 */
import { FormatError } from '../formats/types.js';
import type { ByteReader } from './input.js';
import { Xxh32, xxh32 } from './xxhash32.js';
import type { MemberCodec, StepDecoder, StepResult } from './driver.js';

export const LZ4_FRAME_MAGIC = 0x184d2204;
export const LZ4_LEGACY_MAGIC = 0x184c2102;
const LEGACY_BLOCK = 8 * 1024 * 1024;
/** LZ4_compressBound(8 MiB): a legacy block's compressed size is never above this. */
const LEGACY_BOUND = LEGACY_BLOCK + Math.floor(LEGACY_BLOCK / 255) + 16;
const WINDOW = 64 * 1024;

function corrupt(message: string): FormatError {
  return new FormatError('corrupt', `lz4: ${message}`);
}

/**
 * Decodes one raw LZ4 block from src[start, end) into dst at `at` (bytes of dst before `at`, from
 * `windowStart`, are the dictionary earlier blocks left). Returns the end of the output in dst.
 */
export function lz4DecodeBlockInto(src: Uint8Array, start: number, end: number, dst: Uint8Array, at: number, windowStart = at): number {
  let s = start;
  let d = at;
  const dEnd = dst.length;
  while (s < end) {
    const token = src[s++]!;
    let literals = token >>> 4;
    if (literals === 15) {
      let b: number;
      do {
        if (s >= end) throw corrupt('literal length runs past the block');
        b = src[s++]!;
        literals += b;
      } while (b === 255);
    }
    if (s + literals > end) throw corrupt('literals run past the block');
    if (d + literals > dEnd) throw corrupt('block decodes to more than its maximum size');
    if (literals < 32) for (let i = 0; i < literals; i++) dst[d++] = src[s++]!;
    else {
      dst.set(src.subarray(s, s + literals), d);
      s += literals;
      d += literals;
    }
    if (s === end) break; // the last sequence is literals only
    if (s + 2 > end) throw corrupt('match offset runs past the block');
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || d - offset < windowStart) throw corrupt('match offset points before the data');
    let length = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (s >= end) throw corrupt('match length runs past the block');
        b = src[s++]!;
        length += b;
      } while (b === 255);
    }
    if (d + length > dEnd) throw corrupt('block decodes to more than its maximum size');
    let m = d - offset;
    if (offset >= length && length >= 32) {
      dst.copyWithin(d, m, m + length);
      d += length;
    } else {
      for (let i = 0; i < length; i++) dst[d++] = dst[m++]!;
    }
  }
  return d;
}

/** A raw LZ4 block (no frame), as squashfs stores them. */
export function lz4DecodeBlock(input: Uint8Array, maxOutput: number): Buffer {
  const out = Buffer.allocUnsafe(maxOutput);
  const end = lz4DecodeBlockInto(input, 0, input.length, out, 0);
  return out.subarray(0, end);
}

const BLOCK_MAX: Record<number, number> = { 4: 64 * 1024, 5: 256 * 1024, 6: 1024 * 1024, 7: 4 * 1024 * 1024 };

/** One LZ4 frame (or one skippable frame before it). */
export class Lz4FrameStep implements StepDecoder {
  private state: 'header' | 'skip' | 'block' | 'checksum' = 'header';
  private skipLeft = 0;
  private independent = true;
  private blockChecksum = false;
  private contentChecksum = false;
  private blockMax = 0;
  /** Last 64 KiB of output, the dictionary of the next block when blocks are linked. */
  private window = Buffer.alloc(0);
  private content: Xxh32 | undefined;

  step(input: Buffer, _eof: boolean): StepResult {
    switch (this.state) {
      case 'header': {
        if (input.length < 7) return { used: 0, need: 7 };
        const magic = input.readUInt32LE(0);
        if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) {
          if (input.length < 8) return { used: 0, need: 8 };
          this.skipLeft = input.readUInt32LE(4);
          this.state = 'skip';
          return { used: 8, busy: true };
        }
        if (magic !== LZ4_FRAME_MAGIC) throw corrupt('not an LZ4 frame');
        const flg = input[4]!;
        const bd = input[5]!;
        if (flg >> 6 !== 1) throw new FormatError('unsupported', `lz4: frame version ${flg >> 6} is not supported`);
        if (flg & 1) throw new FormatError('unsupported', 'lz4: frames that need a dictionary are not supported');
        const headerLength = 4 + 2 + (flg & 8 ? 8 : 0) + (flg & 1 ? 4 : 0) + 1;
        if (input.length < headerLength) return { used: 0, need: headerLength };
        this.independent = (flg & 0x20) !== 0;
        this.blockChecksum = (flg & 0x10) !== 0;
        this.contentChecksum = (flg & 4) !== 0;
        if (this.contentChecksum) this.content = new Xxh32();
        // The header checksum: second byte of XXH32 of the descriptor (FLG to before HC).
        if (input[headerLength - 1] !== ((xxh32(input.subarray(4, headerLength - 1)) >>> 8) & 0xff)) throw corrupt('frame header checksum mismatch');
        const max = BLOCK_MAX[(bd >> 4) & 7];
        if (!max) throw corrupt('bad block size in frame header');
        this.blockMax = max;
        this.state = 'block';
        return { used: headerLength, busy: true };
      }
      case 'skip': {
        const n = Math.min(this.skipLeft, input.length);
        this.skipLeft -= n;
        if (this.skipLeft === 0) this.state = 'header';
        return { used: n, busy: n > 0 };
      }
      case 'block': {
        if (input.length < 4) return { used: 0, need: 4 };
        const word = input.readUInt32LE(0);
        if (word === 0) {
          if (this.contentChecksum) {
            this.state = 'checksum';
            return { used: 4, busy: true };
          }
          return { used: 4, done: true };
        }
        const size = word & 0x7fffffff;
        if (size > this.blockMax) throw corrupt('block larger than the frame allows');
        const total = 4 + size + (this.blockChecksum ? 4 : 0);
        if (input.length < total) return { used: 0, need: total };
        if (this.blockChecksum && input.readUInt32LE(4 + size) !== xxh32(input.subarray(4, 4 + size))) throw corrupt('block checksum mismatch');
        let output: Buffer;
        if (word & 0x80000000) output = Buffer.from(input.subarray(4, 4 + size));
        else if (this.independent) output = lz4DecodeBlock(input.subarray(4, 4 + size), this.blockMax);
        else {
          const dst = Buffer.allocUnsafe(this.window.length + this.blockMax);
          this.window.copy(dst, 0);
          const end = lz4DecodeBlockInto(input, 4, 4 + size, dst, this.window.length, 0);
          output = Buffer.from(dst.subarray(this.window.length, end));
        }
        if (!this.independent) {
          const joined = output.length >= WINDOW ? output : Buffer.concat([this.window, output]);
          this.window = Buffer.from(joined.subarray(Math.max(0, joined.length - WINDOW)));
        }
        this.content?.update(output);
        return { used: total, output, busy: true };
      }
      case 'checksum':
        if (input.length < 4) return { used: 0, need: 4 };
        if (input.readUInt32LE(0) !== this.content!.digest()) throw corrupt('content checksum mismatch');
        return { used: 4, done: true };
    }
  }

  dispose(): void {}
}

function isLz4FrameMagic(value: number): boolean {
  return value === LZ4_FRAME_MAGIC || (value & 0xfffffff0) >>> 0 === 0x184d2a50;
}

export const lz4Codec: MemberCodec = {
  label: 'lz4',
  open: () => new Lz4FrameStep(),
  async another(reader: ByteReader) {
    const head = await reader.peek(4);
    return head.length === 4 && isLz4FrameMagic(head.readUInt32LE(0));
  },
};

/**
 * The legacy format: a magic, then blocks of a 4-byte compressed size and an independent block of
 * 8 MiB output (the last one shorter). It has no end mark: the stream ends at the end of the input, at a
 * size word no block can have (the `0707` of a following cpio archive, zero padding), or, with
 * `single`, after a short block, which only the last one is.
 */
export class Lz4LegacyStep implements StepDecoder {
  private started = false;

  constructor(private readonly single: boolean) {}

  step(input: Buffer, eof: boolean): StepResult {
    if (!this.started) {
      if (input.length < 4) return { used: 0, need: 4 };
      if (input.readUInt32LE(0) !== LZ4_LEGACY_MAGIC) throw corrupt('not an LZ4 legacy stream');
      this.started = true;
      return { used: 4, busy: true };
    }
    if (input.length === 0 && eof) return { used: 0, done: true };
    if (input.length < 4) {
      // Fewer than 4 bytes at the end of the input cannot be a block; leave them to the caller.
      return eof ? { used: 0, done: true } : { used: 0, need: 4 };
    }
    const size = input.readUInt32LE(0);
    if (size === LZ4_LEGACY_MAGIC) return { used: 4, busy: true }; // lz4 -l output concatenated
    if (size === 0 || size > LEGACY_BOUND) return { used: 0, done: true };
    if (input.length < 4 + size) return { used: 0, need: 4 + size };
    const output = lz4DecodeBlock(input.subarray(4, 4 + size), LEGACY_BLOCK);
    return { used: 4 + size, output, busy: true, done: this.single && output.length < LEGACY_BLOCK };
  }

  dispose(): void {}
}
