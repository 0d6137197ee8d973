/** Streaming XXH32 (seed 0), the checksum of LZ4 frames (header, blocks, content). */
const P1 = 2654435761;
const P2 = 2246822519;
const P3 = 3266489917;
const P4 = 668265263;
const P5 = 374761393;

function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

function round(acc: number, lane: number): number {
  acc = (acc + Math.imul(lane, P2)) >>> 0;
  return Math.imul(rotl(acc, 13), P1) >>> 0;
}

export class Xxh32 {
  private v1 = (P1 + P2) >>> 0;
  private v2 = P2;
  private v3 = 0;
  private v4 = (0 - P1) >>> 0;
  private total = 0;
  private readonly held = Buffer.alloc(16);
  private heldLength = 0;

  update(data: Uint8Array): this {
    let p = 0;
    const n = data.length;
    this.total += n;
    if (this.heldLength > 0) {
      const take = Math.min(16 - this.heldLength, n);
      this.held.set(data.subarray(0, take), this.heldLength);
      this.heldLength += take;
      p = take;
      if (this.heldLength < 16) return this;
      this.lanes(this.held, 0);
      this.heldLength = 0;
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let { v1, v2, v3, v4 } = this;
    for (; p + 16 <= n; p += 16) {
      v1 = round(v1, view.getUint32(p, true));
      v2 = round(v2, view.getUint32(p + 4, true));
      v3 = round(v3, view.getUint32(p + 8, true));
      v4 = round(v4, view.getUint32(p + 12, true));
    }
    Object.assign(this, { v1, v2, v3, v4 });
    if (p < n) {
      this.held.set(data.subarray(p), 0);
      this.heldLength = n - p;
    }
    return this;
  }

  private lanes(b: Buffer, p: number): void {
    this.v1 = round(this.v1, b.readUInt32LE(p));
    this.v2 = round(this.v2, b.readUInt32LE(p + 4));
    this.v3 = round(this.v3, b.readUInt32LE(p + 8));
    this.v4 = round(this.v4, b.readUInt32LE(p + 12));
  }

  digest(): number {
    let h: number;
    if (this.total >= 16) h = (rotl(this.v1, 1) + rotl(this.v2, 7) + rotl(this.v3, 12) + rotl(this.v4, 18)) >>> 0;
    else h = (this.v3 + P5) >>> 0;
    h = (h + this.total) >>> 0; // the length mod 2^32
    let p = 0;
    const b = this.held;
    for (; p + 4 <= this.heldLength; p += 4) h = Math.imul(rotl((h + Math.imul(b.readUInt32LE(p), P3)) >>> 0, 17), P4) >>> 0;
    for (; p < this.heldLength; p++) h = Math.imul(rotl((h + Math.imul(b[p]!, P5)) >>> 0, 11), P1) >>> 0;
    h = Math.imul(h ^ (h >>> 15), P2) >>> 0;
    h = Math.imul(h ^ (h >>> 13), P3) >>> 0;
    return (h ^ (h >>> 16)) >>> 0;
  }
}

export function xxh32(data: Uint8Array): number {
  return new Xxh32().update(data).digest();
}
