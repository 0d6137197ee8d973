/**
 * bzip2 in TypeScript. No maintained npm package decodes bzip2 as a stream with exact input
 * accounting at speed (unbzip2-stream calls a function per output byte; seek-bzip is synchronous on
 * a whole buffer), and the format is small: per block, Huffman-coded MTF/RLE2 symbols, an inverse
 * Burrows-Wheeler transform and an RLE1 pass. A block is decoded once all its input is in one piece
 * (at most ~1.2 MiB), and its output is handed out in bounded chunks.
 */
import { FormatError } from '../formats/types.js';
import type { ByteReader } from './input.js';
import type { MemberCodec, StepDecoder, StepResult } from './driver.js';

const OUTPUT_CHUNK = 1024 * 1024;

/** The block's input ran out: the caller retries with more. */
class NeedMore extends Error {}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    table[i] = c >>> 0;
  }
  return table;
})();

function corrupt(message: string): FormatError {
  return new FormatError('corrupt', `bzip2: ${message}`);
}

/** MSB-first bit reader over one buffer, from a bit offset in its first byte. */
class Bits {
  private value = 0;
  private count = 0;
  pos: number;

  constructor(
    private readonly buf: Uint8Array,
    bitOffset: number,
  ) {
    this.pos = 0;
    if (bitOffset > 0) this.read(bitOffset);
  }

  read(n: number): number {
    // n <= 24
    while (this.count < n) {
      if (this.pos >= this.buf.length) throw new NeedMore();
      this.value = ((this.value << 8) | this.buf[this.pos++]!) >>> 0;
      this.count += 8;
    }
    this.count -= n;
    const result = (this.value >>> this.count) & ((1 << n) - 1);
    this.value &= (1 << this.count) - 1;
    return result;
  }

  bit(): number {
    return this.read(1);
  }

  /** Decodes one symbol with a canonical Huffman table (see decodeBlock). */
  symbol(limit: Int32Array, base: Int32Array, perm: Uint16Array, minLen: number): number {
    let value = this.value;
    let count = this.count;
    while (count <= 23 && this.pos < this.buf.length) {
      value = ((value << 8) | this.buf[this.pos++]!) >>> 0;
      count += 8;
    }
    let l = minLen;
    if (l > count) throw new NeedMore();
    let code = value >>> (count - l);
    while (code > limit[l]!) {
      l++;
      if (l > 20) throw corrupt('bad Huffman code');
      if (l > count) throw new NeedMore();
      code = value >>> (count - l);
    }
    count -= l;
    this.count = count;
    this.value = value & ((1 << count) - 1);
    return perm[code - base[l]!]!;
  }

  /** Bits used from the start of the buffer. */
  get consumedBits(): number {
    return this.pos * 8 - this.count;
  }
}

interface DecodedBlock {
  crc: number;
  /** The inverse BWT's next-pointer vector (low 8 bits hold the byte). */
  tt: Uint32Array;
  length: number;
  origPtr: number;
}

/** Decodes the Huffman/MTF stage of one block (after its 48-bit magic) into the tt vector. */
function decodeBlock(bits: Bits, maxBlock: number, tt: Uint32Array): DecodedBlock {
  const crc = ((bits.read(16) << 16) | bits.read(16)) >>> 0;
  if (bits.bit()) throw new FormatError('unsupported', 'bzip2: randomized blocks (bzip2 0.9.0) are not supported');
  const origPtr = bits.read(24);
  // Symbol map: which byte values occur.
  const used = bits.read(16);
  const seqToUnseq = new Uint8Array(256);
  let inUse = 0;
  for (let i = 0; i < 16; i++) {
    if (used & (0x8000 >>> i)) {
      const word = bits.read(16);
      for (let j = 0; j < 16; j++) if (word & (0x8000 >>> j)) seqToUnseq[inUse++] = i * 16 + j;
    }
  }
  if (inUse === 0) throw corrupt('block uses no symbols');
  const alphaSize = inUse + 2;
  const groups = bits.read(3);
  if (groups < 2 || groups > 6) throw corrupt('bad number of Huffman tables');
  const selectorCount = bits.read(15);
  if (selectorCount === 0) throw corrupt('no selectors');
  const mtfGroups = [0, 1, 2, 3, 4, 5].slice(0, groups);
  const selectors = new Uint8Array(selectorCount);
  for (let i = 0; i < selectorCount; i++) {
    let j = 0;
    while (bits.bit()) {
      j++;
      if (j >= groups) throw corrupt('bad selector');
    }
    const v = mtfGroups[j]!;
    mtfGroups.splice(j, 1);
    mtfGroups.unshift(v);
    selectors[i] = v;
  }
  // Code lengths, then canonical decoding tables per group.
  const limits: Int32Array[] = [];
  const bases: Int32Array[] = [];
  const perms: Uint16Array[] = [];
  const minLens: number[] = [];
  for (let g = 0; g < groups; g++) {
    const lengths = new Uint8Array(alphaSize);
    let len = bits.read(5);
    for (let s = 0; s < alphaSize; s++) {
      for (;;) {
        if (len < 1 || len > 20) throw corrupt('bad Huffman code length');
        if (!bits.bit()) break;
        len += bits.bit() ? -1 : 1;
      }
      lengths[s] = len;
    }
    let minLen = 32;
    let maxLen = 0;
    for (let s = 0; s < alphaSize; s++) {
      if (lengths[s]! > maxLen) maxLen = lengths[s]!;
      if (lengths[s]! < minLen) minLen = lengths[s]!;
    }
    const perm = new Uint16Array(alphaSize);
    let pp = 0;
    for (let l = minLen; l <= maxLen; l++) for (let s = 0; s < alphaSize; s++) if (lengths[s] === l) perm[pp++] = s;
    const count = new Int32Array(22);
    for (let s = 0; s < alphaSize; s++) count[lengths[s]!]!++;
    // limit[l]: largest code of length l; base[l]: code - base = index into perm.
    const limit = new Int32Array(22).fill(-1);
    const base = new Int32Array(22);
    let code = 0;
    let index = 0;
    for (let l = minLen; l <= maxLen; l++) {
      base[l] = code - index;
      code += count[l]!;
      index += count[l]!;
      limit[l] = code - 1;
      code <<= 1;
    }
    limits.push(limit);
    bases.push(base);
    perms.push(perm);
    minLens.push(minLen);
  }
  // Symbols: MTF indexes with RUNA/RUNB run lengths of the front byte.
  const mtf = new Uint8Array(256);
  for (let i = 0; i < 256; i++) mtf[i] = i;
  const byteCount = new Int32Array(256);
  const eob = inUse + 1;
  let length = 0;
  let groupIndex = 0;
  let groupLeft = 0;
  let limit = limits[0]!;
  let base = bases[0]!;
  let perm = perms[0]!;
  let minLen = 0;
  let run = 0;
  let runWeight = 1;
  for (;;) {
    if (groupLeft === 0) {
      if (groupIndex >= selectorCount) throw corrupt('ran out of selectors');
      const g = selectors[groupIndex++]!;
      limit = limits[g]!;
      base = bases[g]!;
      perm = perms[g]!;
      minLen = minLens[g]!;
      groupLeft = 50;
    }
    groupLeft--;
    const symbol = bits.symbol(limit, base, perm, minLen);
    if (symbol <= 1) {
      run += runWeight << symbol;
      runWeight <<= 1;
      if (run > maxBlock) throw corrupt('run longer than the block');
      continue;
    }
    if (run > 0) {
      if (length + run > maxBlock) throw corrupt('block longer than its size');
      const value = seqToUnseq[mtf[0]!]!;
      byteCount[value]! += run;
      tt.fill(value, length, length + run);
      length += run;
      run = 0;
      runWeight = 1;
    }
    if (symbol === eob) break;
    if (length >= maxBlock) throw corrupt('block longer than its size');
    const n = symbol - 1;
    const front = mtf[n]!;
    if (n < 16) for (let i = n; i > 0; i--) mtf[i] = mtf[i - 1]!;
    else mtf.copyWithin(1, 0, n);
    mtf[0] = front;
    const value = seqToUnseq[front]!;
    byteCount[value]!++;
    tt[length++] = value;
  }
  if (origPtr >= length) throw corrupt('bad BWT origin');
  // Inverse BWT: link each position to the next (tt[i] high 24 bits).
  const start = new Int32Array(256);
  for (let i = 0, sum = 0; i < 256; i++) {
    start[i] = sum;
    sum += byteCount[i]!;
  }
  for (let i = 0; i < length; i++) {
    const value = tt[i]! & 0xff;
    tt[start[value]!++]! |= i << 8;
  }
  return { crc, tt, length, origPtr };
}

/** The output stage of one block: inverse BWT walk plus RLE1, resumable in bounded chunks. */
class BlockOutput {
  private pos: number;
  private left: number;
  private last = -1;
  private same = 0;
  private repeat = 0;
  private repeatByte = 0;
  crc = 0xffffffff;

  constructor(readonly block: DecodedBlock) {
    this.pos = block.tt[block.origPtr]! >>> 8;
    this.left = block.length;
  }

  get done(): boolean {
    return this.left === 0 && this.repeat === 0;
  }

  next(): Buffer {
    const out = Buffer.allocUnsafe(OUTPUT_CHUNK);
    const tt = this.block.tt;
    const table = CRC_TABLE;
    let o = 0;
    let crc = this.crc;
    let pos = this.pos;
    let left = this.left;
    let last = this.last;
    let same = this.same;
    let repeat = this.repeat;
    const limit = OUTPUT_CHUNK;
    while (o < limit) {
      if (repeat > 0) {
        const n = Math.min(repeat, limit - o);
        const b = this.repeatByte;
        out.fill(b, o, o + n);
        for (let i = 0; i < n; i++) crc = ((crc << 8) ^ table[((crc >>> 24) ^ b) & 0xff]!) >>> 0;
        o += n;
        repeat -= n;
        continue;
      }
      if (left === 0) break;
      const entry = tt[pos]!;
      const value = entry & 0xff;
      pos = entry >>> 8;
      left--;
      if (same === 4) {
        // After four equal bytes, this byte is a repeat count.
        repeat = value;
        this.repeatByte = last;
        same = 0;
        last = -1;
        continue;
      }
      if (value === last) same++;
      else {
        same = 1;
        last = value;
      }
      out[o++] = value;
      crc = ((crc << 8) ^ table[((crc >>> 24) ^ value) & 0xff]!) >>> 0;
    }
    this.pos = pos;
    this.left = left;
    this.last = last;
    this.same = same;
    this.repeat = repeat;
    this.crc = crc;
    return out.subarray(0, o);
  }
}

/** One bzip2 stream: header, blocks, end-of-stream mark and combined CRC. */
export class Bzip2Step implements StepDecoder {
  private maxBlock = 0;
  /** Bits of the first byte of the next piece already used (blocks are not byte-aligned). */
  private bitOffset = 0;
  private combined = 0;
  private tt: Uint32Array | undefined;
  private output: BlockOutput | undefined;

  step(input: Buffer, eof: boolean): StepResult {
    if (this.output) {
      const chunk = this.output.next();
      if (this.output.done) {
        const crc = ~this.output.crc >>> 0;
        const expected = this.output.block.crc;
        this.output = undefined;
        if (crc !== expected) throw corrupt('block CRC mismatch');
        this.combined = (((this.combined << 1) | (this.combined >>> 31)) ^ crc) >>> 0;
      }
      return { used: 0, output: chunk, busy: true };
    }
    if (this.maxBlock === 0) {
      if (input.length < 4) return { used: 0, need: 4 };
      if (input[0] !== 0x42 || input[1] !== 0x5a || input[2] !== 0x68 || input[3]! < 0x31 || input[3]! > 0x39) throw corrupt('not a bzip2 stream');
      this.maxBlock = (input[3]! - 0x30) * 100000;
      return { used: 4, busy: true };
    }
    // A whole block is decoded from one piece: ask for more than any block's compressed size first.
    const want = Math.ceil(this.maxBlock * 1.25) + 64 * 1024;
    if (input.length < want && !eof) return { used: 0, need: want };
    const bits = new Bits(input, this.bitOffset);
    try {
      const magicHigh = bits.read(24);
      const magicLow = bits.read(24);
      if (magicHigh === 0x314159 && magicLow === 0x265359) {
        this.tt ??= new Uint32Array(this.maxBlock);
        const block = decodeBlock(bits, this.maxBlock, this.tt);
        this.output = new BlockOutput(block);
      } else if (magicHigh === 0x177245 && magicLow === 0x385090) {
        const crc = ((bits.read(16) << 16) | bits.read(16)) >>> 0;
        if (crc !== this.combined) throw corrupt('stream CRC mismatch');
        // The stream ends padded to a whole byte.
        return { used: Math.ceil(bits.consumedBits / 8), done: true };
      } else throw corrupt('bad block magic');
    } catch (error) {
      if (!(error instanceof NeedMore)) throw error;
      if (eof) throw new FormatError('truncated', 'bzip2: data ends before the end of the stream');
      return { used: 0, need: input.length * 2 };
    }
    const consumed = bits.consumedBits;
    this.bitOffset = consumed % 8;
    return { used: Math.floor(consumed / 8), busy: true };
  }

  dispose(): void {
    this.tt = undefined;
  }
}

export const bzip2Codec: MemberCodec = {
  label: 'bzip2',
  open: () => new Bzip2Step(),
  async another(reader: ByteReader) {
    const head = await reader.peek(4);
    return head.length === 4 && head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68 && head[3]! >= 0x31 && head[3]! <= 0x39;
  },
};
