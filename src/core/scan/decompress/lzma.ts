/**
 * Legacy .lzma ("LZMA alone"): `lzma`/`xz --format=lzma` files, initrd segments
 * (`boot.initrd.compressor = "lzma"`) and squashfs's `-comp lzma` blocks. A 13-byte header (the
 * lc/lp/pb properties byte, the dictionary size, the uncompressed size or all ones when unknown) and
 * one LZMA1 range-coded stream, ended by its size or by an end marker. The decoder follows the LZMA
 * specification's reference decoder (LzmaSpec.cpp); every distance is checked against the window,
 * so damaged data is a 'corrupt' error. lzip members (below) are the same LZMA1 in a checked wrapper. Input comes in pieces: a symbol needs at most 20 bytes, so
 * decoding pauses when fewer are left until more come (or the input ends).
 */
import zlib from 'node:zlib';
import { FormatError } from '../formats/types.js';
import type { MemberCodec, StepDecoder, StepResult } from './driver.js';
import { PIECE, type ByteReader } from './input.js';

const corrupt = (message: string) => new FormatError('corrupt', `lzma: ${message}`);
/** The most input one symbol can read (LzmaDec's LZMA_REQUIRED_INPUT_MAX). */
const SYMBOL_INPUT = 20;
/** Output handed out per step. */
const STEP_OUTPUT = 256 * 1024;
/** Dictionaries larger than this would be held in memory whole; `lzma -9` uses 64 MiB. */
const MAX_DICTIONARY = 128 * 1024 * 1024;
const HEADER = 13;
const STATES = 12;
const PROB_INIT = 1024;

interface LzmaHeader {
  lc: number;
  lp: number;
  pb: number;
  dictionary: number;
  /** Undefined when the header says it is not known (the stream then ends with a marker). */
  size: number | undefined;
}

/**
 * Legacy .lzma has no magic, only a 13-byte header: recognized where that is unambiguous, i.e. the
 * properties byte every encoder writes by default (0x5d: lc=3, lp=0, pb=2), a dictionary size of 2^n
 * or 2^n + 2^(n-1) between 4 KiB and 1.5 GiB, an uncompressed size that is unknown (all ones) or
 * below 2^40, and the zero byte every range coder starts with.
 */
export function looksLikeLzmaAlone(head: Buffer): boolean {
  if (head.length < 14 || head[0] !== 0x5d || head[13] !== 0) return false;
  const dict = head.readUInt32LE(1);
  let pow = false;
  for (let n = 12; n <= 30; n++) if (dict === 2 ** n || dict === 2 ** n + 2 ** (n - 1)) pow = true;
  if (!pow) return false;
  const low = head.readUInt32LE(5);
  const high = head.readUInt32LE(9);
  if (low === 0xffffffff && high === 0xffffffff) return true;
  return high < 0x100;
}

export function parseLzmaHeader(head: Uint8Array): LzmaHeader {
  if (head.length < HEADER) throw new FormatError('truncated', 'lzma: the header is cut short');
  let props = head[0]!;
  if (props >= 9 * 5 * 5) throw corrupt(`bad properties byte ${props}`);
  const lc = props % 9;
  props = Math.floor(props / 9);
  const lp = props % 5;
  const pb = Math.floor(props / 5);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const dictionary = Math.max(view.getUint32(1, true), 4096);
  const low = view.getUint32(5, true);
  const high = view.getUint32(9, true);
  const size = low === 0xffffffff && high === 0xffffffff ? undefined : high * 2 ** 32 + low;
  if (size !== undefined && !Number.isSafeInteger(size)) throw corrupt('an uncompressed size beyond 2^53');
  return { lc, lp, pb, dictionary, size };
}

/** One LZMA1 stream's decoder state; `decode` resumes where the last call paused. */
class Lzma1 {
  private range = 0xffffffff;
  private code = 0;
  private src: Uint8Array = new Uint8Array(0);
  private ip = 0;
  private end = 0;
  private readonly window: Uint8Array;
  private pos = 0;
  private full = false;
  private out: Buffer = Buffer.alloc(0);
  private outAt = 0;
  private total = 0;
  private state = 0;
  private rep0 = 0;
  private rep1 = 0;
  private rep2 = 0;
  private rep3 = 0;
  private remaining: number | undefined;
  private finished = false;
  private readonly literal: Uint16Array;
  private readonly isMatch = new Uint16Array(STATES << 4).fill(PROB_INIT);
  private readonly isRep = new Uint16Array(STATES).fill(PROB_INIT);
  private readonly isRepG0 = new Uint16Array(STATES).fill(PROB_INIT);
  private readonly isRepG1 = new Uint16Array(STATES).fill(PROB_INIT);
  private readonly isRepG2 = new Uint16Array(STATES).fill(PROB_INIT);
  private readonly isRep0Long = new Uint16Array(STATES << 4).fill(PROB_INIT);
  private readonly posSlot = new Uint16Array(4 << 6).fill(PROB_INIT);
  private readonly posDecoders = new Uint16Array(1 + 128 - 14).fill(PROB_INIT);
  private readonly align = new Uint16Array(1 << 4).fill(PROB_INIT);
  private readonly lengths = lengthProbs();
  private readonly repLengths = lengthProbs();

  constructor(
    private readonly header: LzmaHeader,
    /** Starting bytes of the range coder (5) already taken from the input. */
    init: Uint8Array,
  ) {
    this.literal = new Uint16Array(0x300 << (header.lc + header.lp)).fill(PROB_INIT);
    const windowSize = header.size !== undefined ? Math.min(header.dictionary, Math.max(header.size, 1)) : header.dictionary;
    this.window = new Uint8Array(windowSize);
    this.remaining = header.size;
    if (init[0] !== 0) throw corrupt('the range coder does not start with a zero byte');
    this.code = ((init[1]! << 24) | (init[2]! << 16) | (init[3]! << 8) | init[4]!) >>> 0;
    if (this.code === this.range) throw corrupt('a bad range coder start');
  }

  get done(): boolean {
    return this.finished;
  }

  /**
   * Decodes from `src[ip, end)` until about `outLimit` bytes are out, the stream ends, or (unless
   * `eof`) fewer than 20 input bytes are left. Returns the input used and the bytes decoded.
   */
  decode(src: Uint8Array, ip: number, end: number, eof: boolean, outLimit: number): { used: number; output: Buffer } {
    this.src = src;
    this.ip = ip;
    this.end = end;
    // Room for one more match (273 bytes at most) past the limit.
    this.out = Buffer.allocUnsafe(outLimit + 273);
    this.outAt = 0;
    while (!this.finished && this.outAt < outLimit) {
      if (!eof && this.end - this.ip < SYMBOL_INPUT) break;
      this.symbol();
    }
    return { used: this.ip - ip, output: this.out.subarray(0, this.outAt) };
  }

  private byte(): number {
    // Only at the end of the input can a symbol run out of bytes: the stream is cut short.
    if (this.ip >= this.end) throw new FormatError('truncated', 'lzma: the data ends inside the stream');
    return this.src[this.ip++]!;
  }

  private bit(probs: Uint16Array, index: number): number {
    const prob = probs[index]!;
    const bound = (this.range >>> 11) * prob;
    let bit: number;
    if (this.code < bound) {
      probs[index] = prob + ((2048 - prob) >>> 5);
      this.range = bound;
      bit = 0;
    } else {
      probs[index] = prob - (prob >>> 5);
      this.code = (this.code - bound) >>> 0;
      this.range = (this.range - bound) >>> 0;
      bit = 1;
    }
    if (this.range < 0x1000000) {
      this.range = (this.range << 8) >>> 0;
      this.code = ((this.code << 8) | this.byte()) >>> 0;
    }
    return bit;
  }

  private direct(count: number): number {
    let result = 0;
    for (let index = 0; index < count; index++) {
      this.range >>>= 1;
      let bit = 0;
      if (this.code >= this.range) {
        this.code = (this.code - this.range) >>> 0;
        bit = 1;
      }
      if (this.code === this.range) throw corrupt('damaged direct bits');
      result = result * 2 + bit;
      if (this.range < 0x1000000) {
        this.range = (this.range << 8) >>> 0;
        this.code = ((this.code << 8) | this.byte()) >>> 0;
      }
    }
    return result;
  }

  private tree(probs: Uint16Array, offset: number, bits: number): number {
    let m = 1;
    for (let index = 0; index < bits; index++) m = (m << 1) + this.bit(probs, offset + m);
    return m - (1 << bits);
  }

  private reverseTree(probs: Uint16Array, offset: number, bits: number): number {
    let m = 1;
    let symbol = 0;
    for (let index = 0; index < bits; index++) {
      const bit = this.bit(probs, offset + m);
      m = (m << 1) + bit;
      symbol |= bit << index;
    }
    return symbol;
  }

  private length(probs: Uint16Array, posState: number): number {
    // [choice, choice2, low (16 states × 8), mid (16 × 8), high (256)]
    if (this.bit(probs, 0) === 0) return this.tree(probs, 2 + (posState << 3), 3);
    if (this.bit(probs, 1) === 0) return 8 + this.tree(probs, 2 + 128 + (posState << 3), 3);
    return 16 + this.tree(probs, 2 + 256, 8);
  }

  private distance(length: number): number {
    const lenState = Math.min(length, 3);
    const slot = this.tree(this.posSlot, lenState << 6, 6);
    if (slot < 4) return slot;
    const directBits = (slot >>> 1) - 1;
    let dist = (2 | (slot & 1)) * 2 ** directBits;
    if (slot < 14) return dist + this.reverseTree(this.posDecoders, dist - slot, directBits);
    dist += this.direct(directBits - 4) * 16;
    return dist + this.reverseTree(this.align, 0, 4);
  }

  private put(byte: number): void {
    this.window[this.pos++] = byte;
    if (this.pos === this.window.length) {
      this.pos = 0;
      this.full = true;
    }
    this.out[this.outAt++] = byte;
    this.total++;
    if (this.remaining !== undefined) this.remaining--;
  }

  private back(distance: number): number {
    const at = this.pos - distance;
    return this.window[at >= 0 ? at : at + this.window.length]!;
  }

  /** One literal, match or rep, or the end. */
  private symbol(): void {
    const { lc, lp, pb } = this.header;
    if (this.remaining === 0 && this.code === 0) {
      // The size is reached and the coder is flushed: no end marker follows.
      this.finished = true;
      return;
    }
    const posState = this.total & ((1 << pb) - 1);
    const state = this.state;
    if (this.bit(this.isMatch, (state << 4) + posState) === 0) {
      if (this.remaining === 0) throw corrupt('more data than the header says');
      const prev = this.total > 0 ? this.back(1) : 0;
      const base = 0x300 * (((this.total & ((1 << lp) - 1)) << lc) + (prev >>> (8 - lc)));
      let symbol = 1;
      if (state >= 7) {
        let match = this.back(this.rep0 + 1);
        do {
          const matchBit = (match >>> 7) & 1;
          match <<= 1;
          const bit = this.bit(this.literal, base + ((1 + matchBit) << 8) + symbol);
          symbol = (symbol << 1) | bit;
          if (matchBit !== bit) break;
        } while (symbol < 0x100);
      }
      while (symbol < 0x100) symbol = (symbol << 1) | this.bit(this.literal, base + symbol);
      this.put(symbol - 0x100);
      this.state = state < 4 ? 0 : state < 10 ? state - 3 : state - 6;
      return;
    }
    let length: number;
    if (this.bit(this.isRep, state) !== 0) {
      if (this.remaining === 0) throw corrupt('more data than the header says');
      if (this.total === 0) throw corrupt('a repeat before any data');
      if (this.bit(this.isRepG0, state) === 0) {
        if (this.bit(this.isRep0Long, (state << 4) + posState) === 0) {
          this.state = state < 7 ? 9 : 11;
          this.put(this.back(this.rep0 + 1));
          return;
        }
      } else {
        let dist: number;
        if (this.bit(this.isRepG1, state) === 0) dist = this.rep1;
        else {
          if (this.bit(this.isRepG2, state) === 0) dist = this.rep2;
          else {
            dist = this.rep3;
            this.rep3 = this.rep2;
          }
          this.rep2 = this.rep1;
        }
        this.rep1 = this.rep0;
        this.rep0 = dist;
      }
      length = this.length(this.repLengths, posState);
      this.state = state < 7 ? 8 : 11;
    } else {
      this.rep3 = this.rep2;
      this.rep2 = this.rep1;
      this.rep1 = this.rep0;
      length = this.length(this.lengths, posState);
      this.state = state < 7 ? 7 : 10;
      this.rep0 = this.distance(length);
      if (this.rep0 === 0xffffffff) {
        if (this.code !== 0) throw corrupt('a damaged end marker');
        if (this.remaining !== undefined && this.remaining !== 0) throw new FormatError('truncated', 'lzma: the end marker comes before the size the header says');
        this.finished = true;
        return;
      }
      if (this.remaining === 0) throw corrupt('more data than the header says');
      if (this.rep0 >= this.header.dictionary || (!this.full && this.rep0 >= this.pos)) throw corrupt('a match reaches before the start of the data');
    }
    length += 2;
    if (this.remaining !== undefined && this.remaining < length) throw corrupt('a match runs past the size the header says');
    // Byte by byte: a match may overlap the bytes it produces (a run), and cross the window's end.
    for (let index = 0; index < length; index++) this.put(this.back(this.rep0 + 1));
  }
}

function lengthProbs(): Uint16Array {
  return new Uint16Array(2 + 128 + 128 + 256).fill(PROB_INIT);
}

/** A whole LZMA-alone stream (a squashfs block: header, known size, no end marker) at once. */
export function lzmaDecodeAll(input: Buffer, maxOutput: number): Buffer {
  const header = parseLzmaHeader(input);
  if (header.size !== undefined && header.size > maxOutput) throw corrupt(`a block of ${header.size} bytes is larger than ${maxOutput}`);
  const step = new LzmaStep();
  const chunks: Buffer[] = [];
  let length = 0;
  let piece = input;
  for (;;) {
    const result = step.step(piece, true);
    if (result.output && result.output.length > 0) {
      length += result.output.length;
      if (length > maxOutput) throw corrupt(`a block decodes to more than ${maxOutput} bytes`);
      chunks.push(result.output);
    }
    piece = piece.subarray(result.used);
    if (result.done) break;
    if (result.used === 0 && !(result.output && result.output.length > 0) && !result.busy) throw new FormatError('truncated', 'lzma: the data ends inside the stream');
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
}

/** One LZMA-alone stream as a step decoder (see driver.ts). */
export class LzmaStep implements StepDecoder {
  private decoder: Lzma1 | undefined;

  step(input: Buffer, eof: boolean): StepResult {
    if (!this.decoder) {
      if (input.length < HEADER + 5) {
        if (eof) throw new FormatError('truncated', 'lzma: the stream is cut short');
        return { used: 0, need: HEADER + 5 };
      }
      const header = parseLzmaHeader(input);
      if (header.dictionary > MAX_DICTIONARY && (header.size === undefined || header.size > MAX_DICTIONARY)) {
        throw new FormatError('unsupported', `lzma: a ${header.dictionary >>> 20} MiB dictionary is larger than this reader keeps in memory`);
      }
      this.decoder = new Lzma1(header, input.subarray(HEADER, HEADER + 5));
      return { used: HEADER + 5, busy: true };
    }
    const decoder = this.decoder;
    if (!eof && input.length < SYMBOL_INPUT) {
      // Too few bytes for a symbol: ask for the next piece joined to them.
      return { used: 0, need: input.length + PIECE };
    }
    const { used, output } = decoder.decode(input, 0, input.length, eof, STEP_OUTPUT);
    if (decoder.done) return { used, output, done: true };
    if (used === 0 && output.length === 0 && eof) throw new FormatError('truncated', 'lzma: the data ends inside the stream');
    return { used, output, busy: used > 0 || output.length > 0 };
  }

  dispose(): void {}
}

export const lzmaCodec: MemberCodec = {
  label: 'lzma',
  open: () => new LzmaStep(),
  // xz does not write LZMA-alone streams back to back, but `cat a.lzma b.lzma` does: another header is read as one.
  async another(reader: ByteReader) {
    return looksLikeLzmaAlone(await reader.peek(HEADER + 1));
  },
};

const LZIP_MAGIC = 0x50495a4c; // "LZIP", little endian
const LZIP_TRAILER = 20;

/** lzip (`.lz`, `.tar.lz`): "LZIP", version 1, a coded dictionary size, LZMA1 (lc=3 lp=0 pb=2, end marker), then CRC-32, data size and member size. */
export function isLzipHead(head: Uint8Array): boolean {
  return head.length >= 6 && new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(0, true) === LZIP_MAGIC && head[4] === 1;
}

/** One lzip member as a step decoder, its trailer checked. */
export class LzipStep implements StepDecoder {
  private decoder: Lzma1 | undefined;
  private crc = 0;
  private size = 0;
  private compressed = 0;

  step(input: Buffer, eof: boolean): StepResult {
    if (!this.decoder) {
      if (input.length < 6 + 5) {
        if (eof) throw new FormatError('truncated', 'lzip: the member is cut short');
        return { used: 0, need: 6 + 5 };
      }
      if (!isLzipHead(input)) throw corrupt('not an lzip member');
      const code = input[5]!;
      const base = 2 ** (code & 0x1f);
      const dictionary = base - (base / 16) * (code >>> 5);
      if ((code & 0x1f) < 12 || (code & 0x1f) > 29 || dictionary < 4096) throw corrupt(`lzip: a bad dictionary size code ${code}`);
      if (dictionary > MAX_DICTIONARY) throw new FormatError('unsupported', `lzip: a ${dictionary >>> 20} MiB dictionary is larger than this reader keeps in memory`);
      this.decoder = new Lzma1({ lc: 3, lp: 0, pb: 2, dictionary, size: undefined }, input.subarray(6, 11));
      this.compressed = 11;
      return { used: 11, busy: true };
    }
    const decoder = this.decoder;
    if (decoder.done) {
      if (input.length < LZIP_TRAILER) {
        if (eof) throw new FormatError('truncated', 'lzip: the member trailer is cut short');
        return { used: 0, need: LZIP_TRAILER };
      }
      const member = this.compressed + LZIP_TRAILER;
      if (input.readUInt32LE(0) !== this.crc >>> 0) throw corrupt('lzip: CRC-32 mismatch');
      if (Number(input.readBigUInt64LE(4)) !== this.size || Number(input.readBigUInt64LE(12)) !== member) throw corrupt('lzip: the trailer sizes do not match');
      return { used: LZIP_TRAILER, done: true };
    }
    if (!eof && input.length < SYMBOL_INPUT) return { used: 0, need: input.length + PIECE };
    const { used, output } = decoder.decode(input, 0, input.length, eof, STEP_OUTPUT);
    this.compressed += used;
    this.size += output.length;
    if (output.length > 0) this.crc = zlib.crc32(output, this.crc);
    if (used === 0 && output.length === 0 && !decoder.done && eof) throw new FormatError('truncated', 'lzip: the data ends inside the member');
    return { used, output, busy: true };
  }

  dispose(): void {}
}

export const lzipCodec: MemberCodec = {
  label: 'lzip',
  open: () => new LzipStep(),
  async another(reader: ByteReader) {
    return isLzipHead(await reader.peek(6));
  },
};
