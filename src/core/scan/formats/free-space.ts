/**
 * A filesystem's free space as one member, `(free space)`: the blocks or clusters no file holds. A
 * deleted file's bytes stay there until something is written over them, so a reused stick can carry
 * an old key in the free space of a freshly made seed partition. The filesystem readers (FAT, exFAT,
 * ext2/3/4) gather the free units from their allocation maps; the member is `raw`: every rule reads
 * its bytes as they lie, and nothing in it is opened as a container (see Member.raw).
 */
import { sourceChunks, spanSource } from './byte-source.js';
import type { ByteSource, FormatContext, Member } from './types.js';

export const FREE_SPACE = '(free space)';

/** Free units (clusters or blocks) in ascending order, adjacent ones merged; kept in typed arrays (a fragmented volume has millions). */
export class FreeRuns {
  private starts = new Float64Array(1024);
  private counts = new Float64Array(1024);
  private length = 0;

  get runs(): number {
    return this.length;
  }

  add(start: number, count: number): void {
    if (count <= 0) return;
    const last = this.length - 1;
    if (last >= 0 && this.starts[last]! + this.counts[last]! === start) {
      this.counts[last]! += count;
      return;
    }
    if (this.length === this.starts.length) {
      const starts = new Float64Array(this.length * 2);
      const counts = new Float64Array(this.length * 2);
      starts.set(this.starts);
      counts.set(this.counts);
      this.starts = starts;
      this.counts = counts;
    }
    this.starts[this.length] = start;
    this.counts[this.length] = count;
    this.length++;
  }

  /**
   * The zero bits of `bitmap` (bit i is byte i >> 3, lowest bit first) as free units `first + i`,
   * for i below `bits`.
   */
  addZeroBits(bitmap: Buffer, first: number, bits: number): void {
    const end = Math.min(bits, bitmap.length * 8);
    let run = -1;
    for (let bit = 0; bit < end; ) {
      const byte = bitmap[bit >> 3]!;
      if ((bit & 7) === 0 && bit + 8 <= end && (byte === 0xff || byte === 0)) {
        // A whole byte used or free: the common case, taken eight bits at a time.
        if (byte === 0xff && run >= 0) {
          this.add(first + run, bit - run);
          run = -1;
        } else if (byte === 0 && run < 0) run = bit;
        bit += 8;
        continue;
      }
      const used = (byte >> (bit & 7)) & 1;
      if (used && run >= 0) {
        this.add(first + run, bit - run);
        run = -1;
      } else if (!used && run < 0) run = bit;
      bit++;
    }
    if (run >= 0) this.add(first + run, end - run);
  }

  /**
   * The member: units of `unitBytes` each, unit u at byte `base + u * unitBytes` of `image` (cut
   * at its end); undefined when nothing is free.
   */
  member(image: ByteSource, base: number, unitBytes: number, context: FormatContext): Member | undefined {
    const offsets: number[] = [];
    const lengths: number[] = [];
    for (let index = 0; index < this.length; index++) {
      const offset = base + this.starts[index]! * unitBytes;
      const length = Math.min(this.counts[index]! * unitBytes, image.size - offset);
      if (length <= 0) continue;
      offsets.push(offset);
      lengths.push(length);
    }
    if (offsets.length === 0) return undefined;
    const at = Float64Array.from(offsets);
    const source = spanSource(Float64Array.from(lengths), (index, position, length) => image.read(at[index]! + position, length));
    return { name: FREE_SPACE, size: source.size, source, raw: true, sopsGoverned: false, stream: () => sourceChunks(source, context.signal) };
  }
}
