/**
 * The hot path: finds the few places in a byte stream where a credential could be, at memory speed,
 * and hands only those regions to the (slower) text rules.
 *
 * Every credential the gate knows contains a run of at least MIN_RUN token characters
 * ([A-Za-z0-9+/_-]: key bodies, tokens, bech32). Such a run always covers a 4-byte group at a
 * 32-byte-aligned grid point, so the loop reads one 32-bit word per 32 bytes and checks both halves in
 * a 64 KiB pair table; random bytes pass 0.5% of the time, model weights even less. Around a hit it
 * grows the printable region and runs the text rules on it. A printable tail at the end of a chunk is
 * carried into the next chunk, so a key straddling a boundary is seen whole, and never twice.
 */
import { TEXTY, TOKEN } from './rules/text-util.js';

/** Shortest token run the sampled scan guarantees to see (grid of 32 bytes + a 4-byte group - 1). */
export const MIN_RUN = 35;
const GRID_WORDS = 8; // 32 bytes
/** A printable region longer than this is scanned in windows that overlap by OVERLAP bytes. */
const MAX_REGION = 1024 * 1024;
export const OVERLAP = 64 * 1024;

// Built on first use: 65,536 entries cost milliseconds at start-up that small-file scans never need.
let pairTable: Uint8Array | undefined;
function pairs(): Uint8Array {
  if (!pairTable) {
    pairTable = new Uint8Array(65536);
    for (let low = 0; low < 256; low++) for (let high = 0; high < 256; high++) pairTable[low | (high << 8)] = TOKEN[low]! & TOKEN[high]!;
  }
  return pairTable;
}

/** Receives a printable region: its bytes, absolute offset, and the offset below which hits are final. */
export type RegionSink = (bytes: Buffer, absoluteStart: number, acceptBefore: number) => void;

export class RawStream {
  private offset = 0;
  private carry: Buffer | undefined;
  private carryStart = 0;

  constructor(private readonly sink: RegionSink) {}

  /** Absolute number of bytes seen. */
  get bytes(): number {
    return this.offset;
  }

  update(chunk: Buffer): void {
    const length = chunk.length;
    if (length === 0) return;
    let position = 0;
    if (this.carry) {
      let head = 0;
      while (head < length && TEXTY[chunk[head]!]) head++;
      if (head === length) {
        this.appendCarry(chunk);
        this.offset += length;
        return;
      }
      const region = Buffer.concat([this.carry, chunk.subarray(0, head)]);
      const start = this.carryStart;
      this.carry = undefined;
      this.sink(region, start, Number.POSITIVE_INFINITY);
      position = head;
    }
    let tailStart = length;
    const tailLimit = Math.max(position, length - MAX_REGION);
    while (tailStart > tailLimit && TEXTY[chunk[tailStart - 1]!]) tailStart--;

    this.sample(chunk, position, tailStart);

    if (tailStart < length) {
      this.carry = Buffer.from(chunk.subarray(tailStart)); // copy: the caller may reuse its buffer
      this.carryStart = this.offset + tailStart;
    }
    this.offset += length;
  }

  /**
   * Hands over the printable tail carried from the last chunk (its bytes and absolute offset), for a
   * caller that scans the next chunk itself (see skip).
   */
  takeCarry(): { bytes: Buffer; start: number } | undefined {
    const carry = this.carry ? { bytes: this.carry, start: this.carryStart } : undefined;
    this.carry = undefined;
    return carry;
  }

  /** Counts a chunk the caller scanned itself (after takeCarry), so offsets stay absolute. */
  skip(length: number): void {
    this.offset += length;
  }

  /** Scans what is still carried. Call once, at the end of the stream. */
  flush(): void {
    if (this.carry) this.sink(this.carry, this.carryStart, Number.POSITIVE_INFINITY);
    this.carry = undefined;
  }

  private appendCarry(chunk: Buffer): void {
    let carry = this.carry ? Buffer.concat([this.carry, chunk]) : Buffer.from(chunk);
    let start = this.carryStart;
    while (carry.length > MAX_REGION + OVERLAP) {
      const window = carry.subarray(0, MAX_REGION + OVERLAP);
      this.sink(window, start, start + MAX_REGION);
      carry = Buffer.from(carry.subarray(MAX_REGION));
      start += MAX_REGION;
    }
    this.carry = carry;
    this.carryStart = start;
  }

  private sample(chunk: Buffer, from: number, to: number): void {
    if (to - from < MIN_RUN) return;
    const misalign = (4 - ((chunk.byteOffset + from) & 3)) & 3;
    const base = from + misalign;
    const words = new Uint32Array(chunk.buffer, chunk.byteOffset + base, (to - base) >>> 2);
    const count = words.length;
    const PAIR = pairs();
    let scannedTo = from;
    for (let index = 0; index < count; index += GRID_WORDS) {
      const word = words[index]!;
      if ((PAIR[word & 0xffff]! & PAIR[word >>> 16]!) === 0) continue;
      const at = base + index * 4;
      if (at < scannedTo) continue;
      let left = at;
      while (left > scannedTo && TOKEN[chunk[left - 1]!]) left--;
      let right = at + 4;
      while (right < to && TOKEN[chunk[right]!]) right++;
      if (right - left < MIN_RUN - 3) continue;
      // A credential: grow to the whole printable region (armor lines, `key = "..."`, URL).
      const floor = Math.max(scannedTo, left - MAX_REGION);
      while (left > floor && TEXTY[chunk[left - 1]!]) left--;
      const ceiling = Math.min(to, right + MAX_REGION);
      while (right < ceiling && TEXTY[chunk[right]!]) right++;
      this.sink(chunk.subarray(left, right), this.offset + left, Number.POSITIVE_INFINITY);
      scannedTo = right;
    }
  }
}
