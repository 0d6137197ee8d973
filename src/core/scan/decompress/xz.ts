/**
 * xz through xz-embedded compiled to WebAssembly (the `xz-decompress` package). We drive its
 * context ourselves instead of its web ReadableStream: the context tells exactly how much input each
 * call used, so a stream's end (and `consumed`) is exact, and every call is bounded to one 64 KiB
 * input buffer and one output buffer.
 */
import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import { FormatError } from '../formats/types.js';
import type { ByteReader } from './input.js';
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
  2: ['unsupported', 'integrity check type not supported'],
  3: ['corrupt', 'out of memory'],
  4: ['unsupported', 'dictionary too large'],
  5: ['corrupt', 'not xz data'],
  6: ['unsupported', 'filter not supported (BCJ filters such as --x86, --arm64, --delta are not; LZMA2 alone is)'],
  7: ['corrupt', 'corrupt data (bad check or structure)'],
  8: ['truncated', 'data ends before the end of the stream'],
};
type FormatErrorReason = ConstructorParameters<typeof FormatError>[0];

export const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/** One xz stream. */
export class XzStep implements StepDecoder {
  private readonly ctx: number;
  private readonly bufSize: number;
  private readonly inPtr: number;
  private readonly outPtr: number;
  /** Input given to the context and not used yet (xz-embedded keeps a pointer into its own buffer). */
  private held = 0;
  /** Stream flags from the header: the footer repeats them. */
  private flags: Buffer | undefined;
  /** The last 11 bytes given to the context, for a footer that straddles two pieces. */
  private tail = Buffer.alloc(0);
  /** The stream footer has been given to the context: what follows is not this stream's. */
  private footerSeen = false;
  private disposed = false;

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
    if (!this.flags) {
      if (input.length < 12) return { used: 0, need: 12 };
      if (!input.subarray(0, 6).equals(XZ_MAGIC)) throw new FormatError('corrupt', 'xz: not an xz stream');
      this.flags = Buffer.from(input.subarray(6, 8));
    }
    if (this.held === 0) {
      // The build of xz-embedded in the package decodes concatenated streams on its own; to stop at the
      // end of this one, it is given nothing after the footer, then told the input is over.
      const finish = eof || this.footerSeen;
      if (input.length === 0 && !finish) return { used: 0 };
      let length = finish ? 0 : Math.min(input.length, this.bufSize);
      if (length > 0) {
        const end = this.footerEnd(input.subarray(0, length));
        if (end !== undefined) {
          length = end;
          this.footerSeen = true;
        }
      }
      new Uint8Array(x.memory.buffer, this.inPtr, length).set(input.subarray(0, length));
      x.supply_input(this.ctx, length);
      this.held = length;
      used = length;
    }
    let words = this.words();
    words[5] = 0; // out_pos
    const before = words[2]!;
    let ret = x.get_next_output(this.ctx);
    // SHA-256 checks: xz-embedded says once that it cannot verify them and decodes on when called again.
    if (ret === XZ_UNSUPPORTED_CHECK) ret = x.get_next_output(this.ctx);
    words = this.words();
    const inPos = words[2]!;
    const inSize = words[3]!;
    const produced = words[5]!;
    if (ret !== XZ_OK && ret !== XZ_STREAM_END) {
      const [reason, message] = XZ_MESSAGES[ret] ?? ['corrupt', `error ${ret}`];
      throw new FormatError(eof && ret === 8 ? 'truncated' : reason, `xz: ${message}`);
    }
    const output = produced > 0 ? Buffer.from(new Uint8Array(x.memory.buffer, this.outPtr, produced)) : undefined;
    this.held = inSize - inPos;
    if (ret === XZ_STREAM_END) {
      // Whatever the context still holds is after the stream: give it back before the piece's rest.
      const unused = this.held > 0 ? Buffer.from(new Uint8Array(x.memory.buffer, this.inPtr + inPos, this.held)) : undefined;
      return { used, output, done: true, unused };
    }
    if ((eof || this.footerSeen) && this.held === 0 && produced === 0 && inPos === before) {
      throw new FormatError('truncated', 'xz: data ends before the end of the stream');
    }
    // Progress this call: input newly used, or output.
    return { used, output, busy: inPos !== before };
  }

  /**
   * Where a stream footer ends in `piece` (the 12 bytes: CRC-32 of the next 6, backward size, the
   * header's flags, "YZ"), or undefined. The CRC and flags make a false match in compressed data
   * practically impossible; if one happened, the stream would be reported truncated, never passed.
   */
  private footerEnd(piece: Buffer): number | undefined {
    const joined = this.tail.length > 0 ? Buffer.concat([this.tail, piece]) : piece;
    const skip = this.tail.length;
    let from = 10;
    for (;;) {
      const at = joined.indexOf('YZ', from, 'latin1');
      if (at < 0) break;
      from = at + 1;
      if (at < 10 || at + 2 - skip <= 0) continue;
      const footer = joined.subarray(at - 10, at + 2);
      if (footer[8] !== this.flags![0] || footer[9] !== this.flags![1]) continue;
      if (zlib.crc32(footer.subarray(4, 10)) >>> 0 !== footer.readUInt32LE(0)) continue;
      return at + 2 - skip;
    }
    this.tail = Buffer.from(joined.subarray(Math.max(0, joined.length - 11)));
    return undefined;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.x.destroy_context(this.ctx);
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
