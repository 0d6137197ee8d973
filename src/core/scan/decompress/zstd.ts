/**
 * zstd through the zstd reference decoder compiled to WebAssembly (the `zstddec` package): its
 * ZSTD_decompressStream reports exactly how much input it used and where each frame ends.
 */
import { ZSTDDecoder } from 'zstddec/stream';
import { FormatError } from '../formats/types.js';
import type { ByteReader } from './input.js';
import type { MemberCodec, StepDecoder, StepResult } from './driver.js';

interface ZstdExports {
  memory: { readonly buffer: ArrayBuffer };
  malloc(size: number): number;
  free(ptr: number): void;
  ZSTD_createDCtx(): number;
  ZSTD_freeDCtx(ctx: number): number;
  ZSTD_decompressStream(ctx: number, output: number, input: number): number;
  ZSTD_decompress(dst: number, dstCapacity: number, src: number, srcSize: number): number;
}

let exportsPromise: Promise<ZstdExports> | undefined;

/** The WebAssembly instance zstddec makes, caught on its way in (the package keeps it private). */
function zstdExports(): Promise<ZstdExports> {
  exportsPromise ??= (async () => {
    let caught: { exports: unknown } | undefined;
    class Catching extends ZSTDDecoder {
      override _init(result: Parameters<ZSTDDecoder['_init']>[0]): void {
        caught = (result as { instance: { exports: unknown } }).instance;
        super._init(result);
      }
    }
    await new Catching().init();
    if (!caught) throw new Error('zstd WebAssembly module did not load');
    return caught.exports as unknown as ZstdExports;
  })();
  return exportsPromise;
}

const OUT_SIZE = 1024 * 1024;
export const ZSTD_MAGIC = 0xfd2fb528;

export function isZstdFrameMagic(value: number): boolean {
  return value === ZSTD_MAGIC || (value & 0xfffffff0) >>> 0 === 0x184d2a50;
}

/** zstd error codes (zstd_errors.h) that mean the data is cut short or not supported rather than damaged. */
function zstdError(code: number): FormatError {
  const names: Record<number, string> = {
    10: 'unknown frame header', 12: 'unsupported frame version', 14: 'unsupported frame parameter',
    16: 'window larger than 128 MiB (made with --long)', 20: 'corrupted data', 22: 'checksum mismatch',
    32: 'dictionary needed', 64: 'out of memory',
  };
  const reason = code === 12 || code === 14 || code === 16 || code === 32 ? 'unsupported' : 'corrupt';
  return new FormatError(reason, `zstd: ${names[code] ?? `error ${code}`}`);
}

export class ZstdStep implements StepDecoder {
  private readonly ctx: number;
  private readonly inBuf: number;
  private readonly outBuf: number;
  private readonly io: number;
  /** Set at a frame start: the frame about to be decoded is a skippable one (it does not end the run). */
  private atFrameStart = true;
  private skippable = false;
  private sawSkippable = false;
  private disposed = false;

  constructor(private readonly z: ZstdExports) {
    this.ctx = z.ZSTD_createDCtx();
    this.inBuf = z.malloc(64 * 1024);
    this.outBuf = z.malloc(OUT_SIZE);
    this.io = z.malloc(24);
    if (!this.ctx || !this.inBuf || !this.outBuf || !this.io) {
      this.dispose();
      throw new FormatError('corrupt', 'zstd: out of memory');
    }
  }

  step(input: Buffer, eof: boolean): StepResult {
    const z = this.z;
    if (this.atFrameStart) {
      // Only skippable frames so far and nothing after them: an empty run, not a cut one.
      if (eof && input.length === 0 && this.sawSkippable) return { used: 0, done: true };
      if (input.length < 4) return { used: 0, need: 4 };
      const magic = input.readUInt32LE(0);
      if (!isZstdFrameMagic(magic)) throw new FormatError('corrupt', 'zstd: not a zstd frame');
      this.skippable = magic !== ZSTD_MAGIC;
      this.atFrameStart = false;
    }
    const length = Math.min(input.length, 64 * 1024);
    let view = new DataView(z.memory.buffer);
    new Uint8Array(z.memory.buffer, this.inBuf, length).set(input.subarray(0, length));
    view.setUint32(this.io, this.inBuf, true);
    view.setUint32(this.io + 4, length, true);
    view.setUint32(this.io + 8, 0, true);
    view.setUint32(this.io + 12, this.outBuf, true);
    view.setUint32(this.io + 16, OUT_SIZE, true);
    view.setUint32(this.io + 20, 0, true);
    const ret = z.ZSTD_decompressStream(this.ctx, this.io + 12, this.io);
    view = new DataView(z.memory.buffer);
    if (ret < 0 || ret > 0xffffff80) throw zstdError(ret < 0 ? -ret : 0x100000000 - ret);
    const used = view.getUint32(this.io + 8, true);
    const produced = view.getUint32(this.io + 20, true);
    const output = produced > 0 ? Buffer.from(new Uint8Array(z.memory.buffer, this.outBuf, produced)) : undefined;
    if (ret === 0) {
      // A frame ended and is fully flushed.
      this.atFrameStart = true;
      if (!this.skippable) return { used, output, done: true };
      this.sawSkippable = true;
    }
    return { used, output };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.ctx) this.z.ZSTD_freeDCtx(this.ctx);
    for (const p of [this.inBuf, this.outBuf, this.io]) if (p) this.z.free(p);
  }
}

export const zstdCodec: MemberCodec = {
  label: 'zstd',
  async open() {
    return new ZstdStep(await zstdExports());
  },
  async another(reader: ByteReader) {
    const head = await reader.peek(4);
    return head.length === 4 && isZstdFrameMagic(head.readUInt32LE(0));
  },
};

export { zstdExports };
