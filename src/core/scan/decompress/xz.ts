/**
 * xz through xz-embedded compiled to WebAssembly (the `xz-decompress` package). We drive its
 * context ourselves instead of its web ReadableStream: the context tells exactly how much input each
 * call used, so a stream's end (and `consumed`) is exact, and every call is bounded to one 64 KiB
 * input buffer and one output buffer.
 *
 * xz-embedded's build in the package reads LZMA2 only, so the container is parsed here, ahead of it:
 * each block header with BCJ or Delta filters before LZMA2 is rewritten to an LZMA2-only header of
 * the same size, and the filters (bcj.ts) run over its output, their state carried across output
 * chunks, never holding a block. The decoder is told the stream has no checks (it would check the
 * unfiltered bytes, and it cannot check SHA-256): each block's check is verified here on the final
 * bytes, and the index is rewritten to match (unpadded sizes without the check field).
 */
import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import { FormatError } from '../formats/types.js';
import { createHash } from 'node:crypto';
import type { ByteReader } from './input.js';
import { BCJ_IDS, createFilter, FILTER_DELTA, FilterChain, type XzFilter } from './bcj.js';
import type { MemberCodec, StepDecoder, StepResult } from './driver.js';

interface XzExports {
  memory: { readonly buffer: ArrayBuffer };
  create_context(): number;
  destroy_context(ctx: number): void;
  supply_input(ctx: number, length: number): void;
  get_next_output(ctx: number): number;
}

interface XzModuleHolder {
  _getModuleInstance(): Promise<void>;
  _moduleInstance: { exports: unknown };
}

const require = createRequire(import.meta.url);

/**
 * A fresh WebAssembly instance: each stream gets its own memory, which is released with the stream
 * (xz-embedded grows its heap to the dictionary size, up to 64 MiB for xz -9, and never shrinks it).
 */
export async function xzInstance(): Promise<XzExports> {
  const holder = (require('xz-decompress') as { XzReadableStream: XzModuleHolder }).XzReadableStream;
  await holder._getModuleInstance();
  return holder._moduleInstance.exports as unknown as XzExports;
}

let shared: Promise<XzExports> | undefined;

/** One instance shared by block decoding: blocks are small and decoded one at a time per thread. */
export function xzSharedInstance(): Promise<XzExports> {
  shared ??= xzInstance();
  return shared;
}

// xz-embedded return codes (xz.h).
const XZ_OK = 0;
const XZ_STREAM_END = 1;
const XZ_UNSUPPORTED_CHECK = 2;
const XZ_MESSAGES: Record<number, [FormatErrorReason, string]> = {
  2: ['unsupported', 'SHA-256 integrity checks are not supported (CRC-32, CRC-64 and none are)'],
  3: ['corrupt', 'out of memory'],
  4: ['unsupported', 'dictionary too large'],
  5: ['corrupt', 'not xz data'],
  6: ['unsupported', 'options not supported'],
  7: ['corrupt', 'corrupt data (bad check or structure)'],
  8: ['truncated', 'data ends before the end of the stream'],
};
type FormatErrorReason = ConstructorParameters<typeof FormatError>[0];

export const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/** Check sizes by check type: none, CRC-32, CRC-64, SHA-256 (the only types xz writes). */
const CHECK_SIZE: Record<number, number> = { 0: 0, 1: 4, 4: 8, 10: 32 };

const enum At {
  Header,
  BlockStart,
  Chunk,
  Skip,
  Padding,
  Check,
  IndexVli,
  IndexTail,
  Footer,
  End,
}

interface Block {
  chain: FilterChain | undefined;
  /** Output bytes of the block (LZMA2's unpacked sizes), known once its end marker was parsed. */
  size: number | undefined;
  received: number;
  outputDone: boolean;
  check: Buffer | undefined;
  hash: BlockHash;
}

/** One xz stream. */
export class XzStep implements StepDecoder {
  private readonly ctx: number;
  private readonly bufSize: number;
  private readonly inPtr: number;
  private readonly outPtr: number;
  /** Input given to the context and not used yet (xz-embedded keeps a pointer into its own buffer). */
  private held = 0;
  private disposed = false;

  // The container, parsed here ahead of the decoder (every byte is parsed before the decoder gets it).
  private at = At.Header;
  private flags: Buffer | undefined;
  private checkType = 0;
  private skip = 0;
  private compressed = 0;
  private unpacked = 0;
  private checkBytes: Buffer[] = [];
  private checkHave = 0;
  private vlisLeft = 0;
  private countRead = false;
  /** Index bytes as read and as given to the decoder, and their CRC-32s. */
  private indexSize = 0;
  private indexCrc = 0;
  private newIndexSize = 0;
  private newIndexCrc = 0;
  /** Blocks whose output or check is not complete yet, oldest first. */
  private readonly blocks: Block[] = [];

  constructor(private readonly x: XzExports) {
    this.ctx = x.create_context();
    const words = new Uint32Array(x.memory.buffer, this.ctx, 7);
    this.bufSize = words[0]!;
    this.inPtr = words[1]!;
    this.outPtr = words[4]!;
  }

  private words(): Uint32Array {
    return new Uint32Array(this.x.memory.buffer, this.ctx, 7);
  }

  step(input: Buffer, eof: boolean): StepResult {
    const x = this.x;
    let used = 0;
    if (this.held === 0) {
      let length = 0;
      let segments: Buffer[] = [];
      if (this.at !== At.End) {
        if (input.length === 0 && !eof) return { used: 0 };
        // Room for the few bytes an index rewrite may add at once (never more than it saved before).
        const parsed = this.parse(input.subarray(0, Math.min(input.length, this.bufSize - 16)));
        length = parsed.length;
        segments = parsed.segments;
        if (length === 0 && (this.at as At) !== At.End) {
          if (eof) throw new FormatError('truncated', 'xz: data ends before the end of the stream');
          return { used: 0, need: parsed.need };
        }
      }
      // A piece may hold nothing the decoder is given (a block's check, verified here): it is used up
      // without calling the decoder, since an empty supply tells it the input is over.
      if (segments.length === 0 && this.at !== At.End) return { used: length };
      // After the footer the decoder is given nothing more, then told the input is over: the build in
      // the package would otherwise go on into a concatenated stream.
      let fed = 0;
      const into = new Uint8Array(x.memory.buffer, this.inPtr, this.bufSize);
      for (const segment of segments) {
        into.set(segment, fed);
        fed += segment.length;
      }
      x.supply_input(this.ctx, fed);
      this.held = fed;
      used = length;
    }
    let words = this.words();
    words[5] = 0; // out_pos
    const before = words[2]!;
    const ret = x.get_next_output(this.ctx);
    words = this.words();
    const inPos = words[2]!;
    const inSize = words[3]!;
    const produced = words[5]!;
    if (ret !== XZ_OK && ret !== XZ_STREAM_END && ret !== XZ_UNSUPPORTED_CHECK) {
      const [reason, message] = XZ_MESSAGES[ret] ?? ['corrupt', `error ${ret}`];
      throw new FormatError(eof && ret === 8 ? 'truncated' : reason, `xz: ${message}`);
    }
    const raw = produced > 0 ? Buffer.from(new Uint8Array(x.memory.buffer, this.outPtr, produced)) : undefined;
    const output = this.finalOutput(raw);
    this.held = inSize - inPos;
    if (ret === XZ_STREAM_END) {
      if (this.at !== At.End || this.held > 0) throw new FormatError('corrupt', 'xz: stream structure is inconsistent');
      this.settle();
      if (this.blocks.length > 0) throw new FormatError('corrupt', 'xz: a block ends before its data');
      return { used, output, done: true };
    }
    if (this.at === At.End && this.held === 0 && produced === 0 && inPos === before && ret !== XZ_UNSUPPORTED_CHECK) {
      throw new FormatError('truncated', 'xz: data ends before the end of the stream');
    }
    return { used, output, busy: inPos !== before || ret === XZ_UNSUPPORTED_CHECK };
  }

  /**
   * Walks the container over `piece`: how many bytes of it the decoder may have now (a structure that
   * is rewritten must be whole in one piece: it waits for the next, with `need` its size), and the
   * rewrites: the stream flags' check type (header and footer) and block headers with their BCJ and
   * Delta filters taken out (the header keeps its size: zero padding, CRC-32 recomputed, so the
   * Index stays valid). LZMA2 chunk headers give each chunk's packed and unpacked size, so block ends
   * (and each block's output size) are known without decoding.
   */
  private parse(piece: Buffer): { length: number; segments: Buffer[]; need?: number } {
    const segments: Buffer[] = [];
    let p = 0;
    const n = piece.length;
    const stop = (need: number) => ({ length: p, segments, need: p === 0 ? need : undefined });
    const pass = (to: number) => {
      if (to > p) segments.push(piece.subarray(p, to));
      p = to;
    };
    while (p < n) {
      switch (this.at) {
        case At.Header: {
          if (n - p < 12) return stop(12);
          const h = piece.subarray(p, p + 12);
          if (!h.subarray(0, 6).equals(XZ_MAGIC)) throw new FormatError('corrupt', 'xz: not an xz stream');
          if (zlib.crc32(h.subarray(6, 8)) >>> 0 !== h.readUInt32LE(8)) throw new FormatError('corrupt', 'xz: stream header is damaged (CRC-32)');
          if (h[6] !== 0 || h[7]! > 0x0f) throw new FormatError('unsupported', 'xz: unknown stream flags');
          this.flags = Buffer.from(h.subarray(6, 8));
          this.checkType = h[7]!;
          if (CHECK_SIZE[this.checkType] === undefined) throw new FormatError('unsupported', `xz: integrity check type ${this.checkType} is not supported`);
          segments.push(streamHeader(h[6]!));
          p += 12;
          this.at = At.BlockStart;
          break;
        }
        case At.BlockStart: {
          if (piece[p] === 0) {
            // The Index: indicator, record count, two VLIs per record, padding, CRC-32.
            pass(p + 1);
            this.indexSize = 1;
            this.indexCrc = zlib.crc32(INDICATOR);
            this.newIndexSize = 1;
            this.newIndexCrc = this.indexCrc;
            this.countRead = false;
            this.vlisLeft = 1;
            this.at = At.IndexVli;
            break;
          }
          const size = (piece[p]! + 1) * 4;
          if (n - p < size) return stop(size);
          const patch = this.blockHeader(piece.subarray(p, p + size));
          if (patch) {
            segments.push(patch);
            p += size;
          } else pass(p + size);
          this.compressed = 0;
          this.unpacked = 0;
          this.at = At.Chunk;
          break;
        }
        case At.Chunk: {
          const c = piece[p]!;
          if (c === 0) {
            pass(p + 1);
            this.compressed++;
            this.blocks[this.blocks.length - 1]!.size = this.unpacked;
            this.skip = (4 - (this.compressed % 4)) % 4;
            this.at = At.Padding;
          } else if (c === 1 || c === 2) {
            if (n - p < 3) return stop(3);
            const size = piece.readUInt16BE(p + 1) + 1;
            pass(p + 3);
            this.compressed += 3 + size;
            this.unpacked += size;
            this.skip = size;
            this.at = At.Skip;
          } else if (c >= 0x80) {
            const head = c >= 0xc0 ? 6 : 5;
            if (n - p < head) return stop(head);
            this.unpacked += (c & 0x1f) * 65536 + piece.readUInt16BE(p + 1) + 1;
            const packed = piece.readUInt16BE(p + 3) + 1;
            pass(p + head);
            this.compressed += head + packed;
            this.skip = packed;
            this.at = At.Skip;
          } else {
            throw new FormatError('corrupt', 'xz: corrupt data (bad LZMA2 chunk)');
          }
          break;
        }
        case At.Skip:
        case At.Padding: {
          const take = Math.min(this.skip, n - p);
          pass(p + take);
          this.skip -= take;
          if (this.skip === 0) {
            if (this.at === At.Skip) this.at = At.Chunk;
            else {
              this.at = At.Check;
              this.checkBytes = [];
              this.checkHave = 0;
              if (CHECK_SIZE[this.checkType] === 0) this.checkDone();
            }
          }
          break;
        }
        case At.IndexTail: {
          // Padding and CRC-32 of the index as read; the decoder gets the rewritten index's.
          const pad = (4 - (this.indexSize % 4)) % 4;
          if (n - p < pad + 4) return stop(pad + 4);
          for (let k = 0; k < pad; k++) if (piece[p + k] !== 0) throw new FormatError('corrupt', 'xz: corrupt index (padding)');
          this.indexCrc = zlib.crc32(piece.subarray(p, p + pad), this.indexCrc);
          if (piece.readUInt32LE(p + pad) !== this.indexCrc >>> 0) throw new FormatError('corrupt', 'xz: corrupt index (CRC-32)');
          p += pad + 4;
          this.indexSize += pad + 4;
          const newPad = (4 - (this.newIndexSize % 4)) % 4;
          const tail = Buffer.alloc(newPad + 4);
          tail.writeUInt32LE(zlib.crc32(tail.subarray(0, newPad), this.newIndexCrc) >>> 0, newPad);
          segments.push(tail);
          this.newIndexSize += newPad + 4;
          this.at = At.Footer;
          break;
        }
        case At.Check: {
          const take = Math.min(CHECK_SIZE[this.checkType]! - this.checkHave, n - p);
          this.checkBytes.push(Buffer.from(piece.subarray(p, p + take)));
          this.checkHave += take;
          p += take;
          if (this.checkHave === CHECK_SIZE[this.checkType]) this.checkDone();
          break;
        }
        case At.IndexVli: {
          let len = 0;
          let value = 0;
          for (;;) {
            if (p + len >= n) {
              if (n - p >= 9) throw new FormatError('corrupt', 'xz: corrupt index');
              return stop(9);
            }
            const b = piece[p + len]!;
            value += (b & 0x7f) * 2 ** (7 * len);
            len++;
            if ((b & 0x80) === 0) break;
            if (len === 9) throw new FormatError('corrupt', 'xz: corrupt index');
          }
          this.indexCrc = zlib.crc32(piece.subarray(p, p + len), this.indexCrc);
          this.indexSize += len;
          // Unpadded sizes lose the check field the decoder is not given.
          const unpadded = this.countRead && this.vlisLeft % 2 === 0;
          if (unpadded && value <= CHECK_SIZE[this.checkType]!) throw new FormatError('corrupt', 'xz: corrupt index');
          const encoded = unpadded ? encodeVli(value - CHECK_SIZE[this.checkType]!) : piece.subarray(p, p + len);
          p += len;
          segments.push(encoded);
          this.newIndexCrc = zlib.crc32(encoded, this.newIndexCrc);
          this.newIndexSize += encoded.length;
          if (!this.countRead) {
            this.countRead = true;
            this.vlisLeft = value * 2;
          } else this.vlisLeft--;
          if (this.vlisLeft === 0) {
            this.skip = ((4 - (this.indexSize % 4)) % 4) + 4;
            this.at = At.IndexTail;
          }
          break;
        }
        case At.Footer: {
          if (n - p < 12) return stop(12);
          const f = piece.subarray(p, p + 12);
          if (zlib.crc32(f.subarray(4, 10)) >>> 0 !== f.readUInt32LE(0) || f[10] !== 0x59 || f[11] !== 0x5a) {
            throw new FormatError('corrupt', 'xz: stream footer is damaged');
          }
          if (!f.subarray(8, 10).equals(this.flags!)) throw new FormatError('corrupt', 'xz: stream footer does not match its header');
          if (f.readUInt32LE(4) !== this.indexSize / 4 - 1) throw new FormatError('corrupt', 'xz: stream footer does not match the index size');
          const rewritten = Buffer.from(f);
          rewritten.writeUInt32LE(this.newIndexSize / 4 - 1, 4);
          rewritten[9] = 0;
          rewritten.writeUInt32LE(zlib.crc32(rewritten.subarray(4, 10)) >>> 0, 0);
          segments.push(rewritten);
          p += 12;
          this.at = At.End;
          return { length: p, segments };
        }
        case At.End:
          return { length: p, segments };
      }
    }
    return { length: p, segments };
  }

  /** Parses a block header; returns its rewrite when filters before LZMA2 are taken out. */
  private blockHeader(h: Buffer): Buffer | undefined {
    const size = h.length;
    if (zlib.crc32(h.subarray(0, size - 4)) >>> 0 !== h.readUInt32LE(size - 4)) throw new FormatError('corrupt', 'xz: block header is damaged (CRC-32)');
    const flags = h[1]!;
    if (flags & 0x3c) throw new FormatError('unsupported', 'xz: unknown block header flags');
    let p = 2;
    const vli = (): number => {
      let value = 0;
      for (let len = 0; ; len++) {
        if (p >= size - 4 || len === 9) throw new FormatError('corrupt', 'xz: block header is damaged');
        const b = h[p++]!;
        value += (b & 0x7f) * 2 ** (7 * len);
        if ((b & 0x80) === 0) return value;
      }
    };
    if (flags & 0x40) vli();
    if (flags & 0x80) vli();
    const sizesEnd = p;
    const count = (flags & 3) + 1;
    const filters: XzFilter[] = [];
    let lzma2: Buffer | undefined;
    for (let k = 0; k < count; k++) {
      const id = vli();
      const propsSize = vli();
      if (p + propsSize > size - 4) throw new FormatError('corrupt', 'xz: block header is damaged');
      const props = h.subarray(p, p + propsSize);
      p += propsSize;
      if (k === count - 1) {
        if (id !== 0x21 || propsSize !== 1) throw new FormatError('unsupported', `xz: filter chain ends in filter 0x${id.toString(16)}, not LZMA2`);
        lzma2 = Buffer.from([0x21, 0x01, props[0]!]);
      } else if (id === FILTER_DELTA) {
        if (propsSize !== 1) throw new FormatError('corrupt', 'xz: bad Delta filter properties');
        filters.push(createFilter(id, props));
      } else if (BCJ_IDS.has(id)) {
        if (propsSize !== 0 && propsSize !== 4) throw new FormatError('corrupt', 'xz: bad BCJ filter properties');
        filters.push(createFilter(id, props));
      } else {
        throw new FormatError('unsupported', `xz: filter 0x${id.toString(16)} is not supported (LZMA2 with BCJ and Delta filters are)`);
      }
    }
    for (; p < size - 4; p++) if (h[p] !== 0) throw new FormatError('unsupported', 'xz: unknown block header options');
    const hash = newBlockHash(this.checkType);
    // Decode order is the reverse of the header's (encoder) order.
    this.blocks.push({ chain: filters.length > 0 ? new FilterChain(filters.reverse()) : undefined, size: undefined, received: 0, outputDone: false, check: undefined, hash });
    if (filters.length === 0) return undefined;
    const out = Buffer.alloc(size);
    out[0] = h[0]!;
    out[1] = flags & 0xc0;
    h.copy(out, 2, 2, sizesEnd);
    lzma2!.copy(out, sizesEnd);
    out.writeUInt32LE(zlib.crc32(out.subarray(0, size - 4)) >>> 0, size - 4);
    return out;
  }

  private checkDone(): void {
    const block = this.blocks[this.blocks.length - 1]!;
    block.check = Buffer.concat(this.checkBytes);
    this.at = At.BlockStart;
    this.settle();
  }

  /** The decoder's output, through each block's filters, hashed for its check. */
  private finalOutput(raw: Buffer | undefined): Buffer | undefined {
    const parts: Buffer[] = [];
    let off = 0;
    const length = raw?.length ?? 0;
    while (off < length) {
      const block = this.blocks.find((b) => !b.outputDone);
      if (!block) throw new FormatError('corrupt', 'xz: output beyond the last block');
      let take = length - off;
      if (block.size !== undefined) take = Math.min(take, block.size - block.received);
      if (take > 0) {
        const part = raw!.subarray(off, off + take);
        off += take;
        block.received += take;
        const final = block.chain ? block.chain.push(part) : part;
        if (final.length > 0) {
          block.hash.update(final);
          parts.push(final);
        }
      }
      if (block.size !== undefined && block.received >= block.size) this.endOutput(block, parts);
      else if (take === 0) throw new FormatError('corrupt', 'xz: output beyond the last block');
    }
    this.settle(parts);
    if (parts.length === 0) return undefined;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  private endOutput(block: Block, parts: Buffer[]): void {
    if (block.outputDone) return;
    if (block.received > block.size!) throw new FormatError('corrupt', 'xz: block is longer than its chunks say');
    block.outputDone = true;
    if (block.chain) {
      const tail = block.chain.finish();
      if (tail.length > 0) {
        block.hash.update(tail);
        parts.push(tail);
      }
    }
  }

  /** Verifies and drops blocks whose output and check are both complete. */
  private settle(parts?: Buffer[]): void {
    while (this.blocks.length > 0) {
      const block = this.blocks[0]!;
      if (!block.outputDone && block.size !== undefined && block.received === block.size && parts) this.endOutput(block, parts);
      if (!block.outputDone || block.check === undefined) return;
      if (!block.hash.matches(block.check)) throw new FormatError('corrupt', 'xz: corrupt data (integrity check failed)');
      this.blocks.shift();
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.x.destroy_context(this.ctx);
  }
}

const INDICATOR = Buffer.from([0]);

/** A stream header telling the decoder there are no checks: they are verified here. */
function streamHeader(flags0: number): Buffer {
  const header = Buffer.alloc(12);
  XZ_MAGIC.copy(header, 0);
  header[6] = flags0;
  header[7] = 0;
  header.writeUInt32LE(zlib.crc32(header.subarray(6, 8)) >>> 0, 8);
  return header;
}

function encodeVli(value: number): Buffer {
  const bytes: number[] = [];
  while (value >= 0x80) {
    bytes.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  bytes.push(value);
  return Buffer.from(bytes);
}

interface BlockHash {
  update(data: Buffer): void;
  matches(check: Buffer): boolean;
}

function newBlockHash(type: number): BlockHash {
  switch (type) {
    case 1: {
      let crc = 0;
      return {
        update: (data) => void (crc = zlib.crc32(data, crc)),
        matches: (check) => check.readUInt32LE(0) === crc >>> 0,
      };
    }
    case 4: {
      const crc = new Crc64();
      return { update: (data) => crc.update(data), matches: (check) => crc.digest().equals(check) };
    }
    case 10: {
      const hash = createHash('sha256');
      return { update: (data) => void hash.update(data), matches: (check) => hash.digest().equals(check) };
    }
    default:
      return { update: () => undefined, matches: () => true };
  }
}

/**
 * CRC-64/XZ (ECMA-182, reflected), slicing by 8 over two 32-bit halves. Int32Array tables and int32
 * state keep V8 on small integers (Uint32Array loads above 2^31 would become doubles): this runs at
 * several hundred MB/s, faster than the check inside the WebAssembly decoder it replaces.
 */
const CRC64_LO = new Int32Array(256 * 8);
const CRC64_HI = new Int32Array(256 * 8);
{
  const polyLo = 0xd7870f42 | 0;
  const polyHi = 0xc96c5795 | 0;
  for (let n = 0; n < 256; n++) {
    let lo = n;
    let hi = 0;
    for (let k = 0; k < 8; k++) {
      const bit = lo & 1;
      lo = (lo >>> 1) | (hi << 31);
      hi >>>= 1;
      if (bit) {
        lo ^= polyLo;
        hi ^= polyHi;
      }
    }
    CRC64_LO[n] = lo;
    CRC64_HI[n] = hi;
  }
  // Table t: the CRC of byte n followed by t zero bytes.
  for (let t = 1; t < 8; t++) {
    for (let n = 0; n < 256; n++) {
      const lo = CRC64_LO[(t - 1) * 256 + n]!;
      const hi = CRC64_HI[(t - 1) * 256 + n]!;
      const idx = lo & 0xff;
      CRC64_LO[t * 256 + n] = ((lo >>> 8) | (hi << 24)) ^ CRC64_LO[idx]!;
      CRC64_HI[t * 256 + n] = (hi >>> 8) ^ CRC64_HI[idx]!;
    }
  }
}

export class Crc64 {
  private lo = -1;
  private hi = -1;

  update(data: Uint8Array): void {
    let lo = this.lo;
    let hi = this.hi;
    const n = data.length;
    const L = CRC64_LO;
    const H = CRC64_HI;
    let i = 0;
    for (; i + 8 <= n; i += 8) {
      const a = lo ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
      const b = hi ^ (data[i + 4]! | (data[i + 5]! << 8) | (data[i + 6]! << 16) | (data[i + 7]! << 24));
      const i7 = 1792 + (a & 0xff);
      const i6 = 1536 + ((a >>> 8) & 0xff);
      const i5 = 1280 + ((a >>> 16) & 0xff);
      const i4 = 1024 + (a >>> 24);
      const i3 = 768 + (b & 0xff);
      const i2 = 512 + ((b >>> 8) & 0xff);
      const i1 = 256 + ((b >>> 16) & 0xff);
      const i0 = b >>> 24;
      lo = L[i7]! ^ L[i6]! ^ L[i5]! ^ L[i4]! ^ L[i3]! ^ L[i2]! ^ L[i1]! ^ L[i0]!;
      hi = H[i7]! ^ H[i6]! ^ H[i5]! ^ H[i4]! ^ H[i3]! ^ H[i2]! ^ H[i1]! ^ H[i0]!;
    }
    for (; i < n; i++) {
      const idx = (lo ^ data[i]!) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ L[idx]!;
      hi = (hi >>> 8) ^ H[idx]!;
    }
    this.lo = lo;
    this.hi = hi;
  }

  digest(): Buffer {
    const out = Buffer.alloc(8);
    out.writeInt32LE(~this.lo, 0);
    out.writeInt32LE(~this.hi, 4);
    return out;
  }
}

export const xzCodec: MemberCodec = {
  label: 'xz',
  async open() {
    return new XzStep(await xzInstance());
  },
  async another(reader: ByteReader) {
    // Stream padding: null bytes in groups of four between streams.
    for (;;) {
      const head = await reader.peek(6);
      if (head.length === 0) return false;
      if (head.length >= 6 && head.equals(XZ_MAGIC)) return true;
      const zeros = head.length >= 4 && head.readUInt32LE(0) === 0;
      if (!zeros) return false;
      await reader.read(4);
      await reader.checkpoint();
    }
  },
};
