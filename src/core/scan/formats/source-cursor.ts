/**
 * Reading a ByteSource front to back, a field at a time (git bundle header lines, GGUF key/values,
 * the safetensors header length): reads are batched into 1 MiB pieces, and a field that runs past the
 * end of the source is FormatError('truncated'), so a cut-off header is never a silent pass.
 */
import { FormatError, type ByteSource } from './types.js';

const PIECE = 1024 * 1024;

export class SourceCursor {
  private buffer: Buffer = Buffer.alloc(0);
  private bufferStart = 0;
  /** The offset of the next byte to read. */
  position = 0;

  constructor(
    readonly source: ByteSource,
    /** Named in errors: `gguf`, `git bundle`. */
    private readonly what: string,
    private readonly signal?: AbortSignal,
  ) {}

  /** The next `length` bytes (a view: copy it to keep it past the next read). */
  async bytes(length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(length) || length < 0) throw new FormatError('corrupt', `${this.what}: bad length ${length} at offset ${this.position}`);
    if (this.position + length > this.source.size) {
      throw new FormatError('truncated', `${this.what}: ${length} bytes at offset ${this.position} run past the end (${this.source.size} bytes)`);
    }
    const from = this.position - this.bufferStart;
    if (from < 0 || from + length > this.buffer.length) {
      this.signal?.throwIfAborted();
      this.buffer = await this.source.read(this.position, Math.min(Math.max(length, PIECE), this.source.size - this.position));
      this.bufferStart = this.position;
      if (this.buffer.length < length) throw new FormatError('truncated', `${this.what}: bytes end at offset ${this.position + this.buffer.length}`);
    }
    const start = this.position - this.bufferStart;
    this.position += length;
    return this.buffer.subarray(start, start + length);
  }

  async u8(): Promise<number> {
    return (await this.bytes(1))[0]!;
  }

  async u32(): Promise<number> {
    return (await this.bytes(4)).readUInt32LE(0);
  }

  /** A little-endian u64 that must fit a safe integer (a length or count of this file). */
  async u64(): Promise<number> {
    const value = (await this.bytes(8)).readBigUInt64LE(0);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError('corrupt', `${this.what}: value ${value} at offset ${this.position - 8} is too large`);
    return Number(value);
  }

  skip(length: number): void {
    this.position += length;
  }

  /**
   * The bytes up to the next `\n` (not included), at most `max` of them; the cursor moves past the
   * newline. undefined at the end of the source.
   */
  async line(max: number): Promise<string | undefined> {
    if (this.position >= this.source.size) return undefined;
    const parts: Buffer[] = [];
    let length = 0;
    for (;;) {
      if (this.position >= this.source.size) throw new FormatError('truncated', `${this.what}: a line is cut off at the end`);
      // What is left of the piece in memory, or the next piece.
      let from = this.position - this.bufferStart;
      if (from < 0 || from >= this.buffer.length) {
        await this.bytes(1);
        this.position -= 1;
        from = this.position - this.bufferStart;
      }
      const view = this.buffer.subarray(from);
      const newline = view.indexOf(0x0a);
      const taken = newline >= 0 ? newline : view.length;
      length += taken;
      if (length > max) throw new FormatError('corrupt', `${this.what}: a line longer than ${max} bytes at offset ${this.position}`);
      parts.push(view.subarray(0, taken));
      this.position += newline >= 0 ? newline + 1 : view.length;
      if (newline >= 0) return Buffer.concat(parts, length).toString('utf8');
    }
  }
}
