/**
 * Pull-side of every decompressor: hands out bounded pieces of the input, takes back what a decoder
 * did not use, and counts exactly how many input bytes were used (`consumed`), so a caller that reads
 * an initrd can go on right after the end of a compressed segment.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';

/** Input pieces are at most this big: one decoder call on one piece stays short. */
export const PIECE = 64 * 1024;

export class ByteReader {
  private readonly iterator: AsyncIterator<Buffer>;
  /** Bytes taken from the iterator but not handed out yet (given back, or the rest of a big chunk). */
  private readonly pending: Buffer[] = [];
  private finished = false;
  /** Input bytes handed out and not given back. */
  consumed = 0;
  private lastYield = Date.now();

  constructor(
    input: AsyncIterable<Buffer>,
    private readonly signal?: AbortSignal,
  ) {
    this.iterator = input[Symbol.asyncIterator]();
  }

  /** Throws the abort reason when aborted, and lets the event loop run when this task has held it a while. */
  async checkpoint(): Promise<void> {
    if (this.signal?.aborted) throw this.signal.reason;
    if (Date.now() - this.lastYield > 15) {
      await yieldToLoop();
      this.lastYield = Date.now();
      if (this.signal?.aborted) throw this.signal.reason;
    }
  }

  private async fill(): Promise<boolean> {
    while (this.pending.length === 0) {
      if (this.finished) return false;
      if (this.signal?.aborted) throw this.signal.reason;
      const next = await this.iterator.next();
      if (next.done) {
        this.finished = true;
        return false;
      }
      if (next.value.length > 0) this.pending.push(next.value);
    }
    return true;
  }

  /** The next piece of at most `max` bytes, or undefined at the end of the input. */
  async take(max = PIECE): Promise<Buffer | undefined> {
    if (!(await this.fill())) return undefined;
    const first = this.pending[0]!;
    let piece: Buffer;
    if (first.length <= max) {
      this.pending.shift();
      piece = first;
    } else {
      piece = first.subarray(0, max);
      this.pending[0] = first.subarray(max);
    }
    this.consumed += piece.length;
    return piece;
  }

  /**
   * All the input that is left, as one buffer, when it is at most `limit` bytes; undefined (and
   * nothing used) when there is more. Lets a decoder of a small member work in one call.
   */
  async takeRest(limit: number): Promise<Buffer | undefined> {
    let have = 0;
    for (const piece of this.pending) have += piece.length;
    while (!this.finished && have <= limit) {
      if (this.signal?.aborted) throw this.signal.reason;
      const next = await this.iterator.next();
      if (next.done) {
        this.finished = true;
        break;
      }
      if (next.value.length > 0) {
        this.pending.push(next.value);
        have += next.value.length;
      }
    }
    if (have > limit || have === 0) return undefined;
    const rest = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, have);
    this.pending.length = 0;
    this.consumed += have;
    return rest;
  }

  /** Gives back bytes taken last (the unused tail of a piece): they are handed out again next. */
  unread(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.pending.unshift(bytes);
    this.consumed -= bytes.length;
  }

  /** Exactly `n` bytes, fewer only at the end of the input. */
  async read(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < n) {
      const piece = await this.take(n - have);
      if (!piece) break;
      parts.push(piece);
      have += piece.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
  }

  /** Up to `n` bytes without using them. */
  async peek(n: number): Promise<Buffer> {
    const bytes = await this.read(n);
    this.unread(bytes);
    return bytes;
  }

  /** True when no input is left. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  /** Stops the input (closes the file behind it). */
  async close(): Promise<void> {
    this.pending.length = 0;
    if (!this.finished) {
      this.finished = true;
      await this.iterator.return?.();
    }
  }
}
