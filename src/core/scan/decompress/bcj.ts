/**
 * xz's branch-converter (BCJ) and Delta filters, decode direction: ports of xz-embedded's
 * xz_dec_bcj.c and liblzma's delta decoder. mksquashfs `-Xbcj x86` and `xz --x86` store machine
 * code with relative branch targets turned absolute (they compress better); decoding turns them back.
 * Each filter works in place over a Uint8Array in one tight loop and says how many bytes it finished:
 * the rest (at most 15 bytes, an instruction that may continue in the next chunk) waits for more
 * output, and at the end of the block it is passed on unchanged, as xz does.
 */

export interface XzFilter {
  /** Decodes `buf` in place from the start; returns how many bytes are final. */
  run(buf: Uint8Array): number;
}

/** xz filter IDs of the filters here. */
export const FILTER_DELTA = 0x03;
export const BCJ_IDS = new Set([0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a]);

/** A decoder for filter `id` with its properties (start offset for BCJ, distance for Delta). */
export function createFilter(id: number, props: Uint8Array): XzFilter {
  if (id === FILTER_DELTA) return new DeltaFilter(props[0]! + 1);
  const start = props.length === 4 ? (props[0]! | (props[1]! << 8) | (props[2]! << 16) | (props[3]! << 24)) >>> 0 : 0;
  switch (id) {
    case 0x04:
      return new X86Filter(start);
    case 0x05:
      return new SimpleFilter(start, powerpc);
    case 0x06:
      return new SimpleFilter(start, ia64);
    case 0x07:
      return new SimpleFilter(start, arm);
    case 0x08:
      return new SimpleFilter(start, armThumb);
    case 0x09:
      return new SimpleFilter(start, sparc);
    case 0x0a:
      return new SimpleFilter(start, arm64);
  }
  throw new Error(`unknown xz filter ${id}`);
}

class DeltaFilter implements XzFilter {
  private readonly history = new Uint8Array(256);
  private pos = 0;
  constructor(private readonly distance: number) {}
  run(buf: Uint8Array): number {
    const history = this.history;
    const distance = this.distance;
    let pos = this.pos;
    for (let i = 0; i < buf.length; i++) {
      const b = (buf[i]! + history[(distance + pos) & 0xff]!) & 0xff;
      buf[i] = b;
      history[pos & 0xff] = b;
      pos = (pos - 1) & 0xff;
    }
    this.pos = pos;
    return buf.length;
  }
}

/** A stateless BCJ filter: only the position of buf[0] in the block's output carries over. */
type Simple = (buf: Uint8Array, pos: number) => number;

class SimpleFilter implements XzFilter {
  constructor(
    private pos: number,
    private readonly code: Simple,
  ) {}
  run(buf: Uint8Array): number {
    const done = this.code(buf, this.pos);
    this.pos = (this.pos + done) >>> 0;
    return done;
  }
}

const X86_ALLOWED = [true, true, true, false, true, false, false, false];
const X86_BIT_NUM = [0, 1, 2, 2, 3, 3, 3, 3];

class X86Filter implements XzFilter {
  private prevMask = 0;
  constructor(private pos: number) {}

  run(buf: Uint8Array): number {
    if (buf.length <= 4) return 0;
    const size = buf.length - 4;
    const pos = this.pos;
    let prevPos = -1;
    let prevMask = this.prevMask;
    let i = 0;
    for (; i < size; i++) {
      if ((buf[i]! & 0xfe) !== 0xe8) continue;
      prevPos = i - prevPos;
      if (prevPos > 3) {
        prevMask = 0;
      } else {
        prevMask = (prevMask << (prevPos - 1)) & 7;
        if (prevMask !== 0) {
          const b = buf[i + 4 - X86_BIT_NUM[prevMask]!]!;
          if (!X86_ALLOWED[prevMask] || b === 0 || b === 0xff) {
            prevPos = i;
            prevMask = (prevMask << 1) | 1;
            continue;
          }
        }
      }
      prevPos = i;
      const top = buf[i + 4]!;
      if (top === 0 || top === 0xff) {
        let src = (buf[i + 1]! | (buf[i + 2]! << 8) | (buf[i + 3]! << 16) | (top << 24)) >>> 0;
        let dest: number;
        for (;;) {
          dest = (src - (pos + i + 5)) >>> 0;
          if (prevMask === 0) break;
          const j = X86_BIT_NUM[prevMask]! * 8;
          const b = (dest >>> (24 - j)) & 0xff;
          if (b !== 0 && b !== 0xff) break;
          src = (dest ^ ((1 << (32 - j)) - 1)) >>> 0;
        }
        dest &= 0x01ffffff;
        dest |= -(dest & 0x01000000);
        buf[i + 1] = dest & 0xff;
        buf[i + 2] = (dest >>> 8) & 0xff;
        buf[i + 3] = (dest >>> 16) & 0xff;
        buf[i + 4] = (dest >>> 24) & 0xff;
        i += 4;
      } else {
        prevMask = (prevMask << 1) | 1;
      }
    }
    prevPos = i - prevPos;
    this.prevMask = prevPos > 3 ? 0 : (prevMask << (prevPos - 1)) & 0xff;
    this.pos = (pos + i) >>> 0;
    return i;
  }
}

function powerpc(buf: Uint8Array, pos: number): number {
  const size = buf.length & ~3;
  let i = 0;
  for (; i < size; i += 4) {
    let instr = ((buf[i]! << 24) | (buf[i + 1]! << 16) | (buf[i + 2]! << 8) | buf[i + 3]!) >>> 0;
    if ((instr & 0xfc000003) >>> 0 === 0x48000001) {
      instr &= 0x03fffffc;
      instr = (instr - ((pos + i) >>> 0)) & 0x03fffffc;
      instr |= 0x48000001;
      buf[i] = (instr >>> 24) & 0xff;
      buf[i + 1] = (instr >>> 16) & 0xff;
      buf[i + 2] = (instr >>> 8) & 0xff;
      buf[i + 3] = instr & 0xff;
    }
  }
  return i;
}

function sparc(buf: Uint8Array, pos: number): number {
  const size = buf.length & ~3;
  let i = 0;
  for (; i < size; i += 4) {
    let instr = ((buf[i]! << 24) | (buf[i + 1]! << 16) | (buf[i + 2]! << 8) | buf[i + 3]!) >>> 0;
    if (instr >>> 22 === 0x100 || instr >>> 22 === 0x1ff) {
      instr = (instr << 2) >>> 0;
      instr = (instr - ((pos + i) >>> 0)) >>> 0;
      instr >>>= 2;
      instr = (((0x40000000 - (instr & 0x400000)) | 0x40000000 | (instr & 0x3fffff)) >>> 0);
      buf[i] = (instr >>> 24) & 0xff;
      buf[i + 1] = (instr >>> 16) & 0xff;
      buf[i + 2] = (instr >>> 8) & 0xff;
      buf[i + 3] = instr & 0xff;
    }
  }
  return i;
}

function arm(buf: Uint8Array, pos: number): number {
  const size = buf.length & ~3;
  let i = 0;
  for (; i < size; i += 4) {
    if (buf[i + 3] === 0xeb) {
      let addr = buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16);
      addr = ((addr << 2) - (pos + i + 8)) >>> 2;
      buf[i] = addr & 0xff;
      buf[i + 1] = (addr >>> 8) & 0xff;
      buf[i + 2] = (addr >>> 16) & 0xff;
    }
  }
  return i;
}

function armThumb(buf: Uint8Array, pos: number): number {
  if (buf.length < 4) return 0;
  const size = (buf.length & ~1) - 4;
  let i = 0;
  for (; i <= size; i += 2) {
    if ((buf[i + 1]! & 0xf8) === 0xf0 && (buf[i + 3]! & 0xf8) === 0xf8) {
      let addr = ((buf[i + 1]! & 0x07) << 19) | (buf[i]! << 11) | ((buf[i + 3]! & 0x07) << 8) | buf[i + 2]!;
      addr = ((addr << 1) - (pos + i + 4)) >>> 1;
      buf[i + 1] = 0xf0 | ((addr >>> 19) & 0x07);
      buf[i] = (addr >>> 11) & 0xff;
      buf[i + 3] = 0xf8 | ((addr >>> 8) & 0x07);
      buf[i + 2] = addr & 0xff;
      i += 2;
    }
  }
  return i;
}

function arm64(buf: Uint8Array, pos: number): number {
  const size = buf.length & ~3;
  let i = 0;
  for (; i < size; i += 4) {
    let instr = (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24)) >>> 0;
    if (instr >>> 26 === 0x25) {
      // BL
      const addr = (instr - ((pos + i) >>> 2)) >>> 0;
      instr = (0x94000000 | (addr & 0x03ffffff)) >>> 0;
    } else if ((instr & 0x9f000000) >>> 0 === 0x90000000) {
      // ADRP, converted only within +/-512 MiB
      let addr = ((instr >>> 29) & 3) | ((instr >>> 3) & 0x1ffffc);
      if (((addr + 0x020000) & 0x1c0000) !== 0) continue;
      addr = (addr - ((pos + i) >>> 12)) >>> 0;
      instr &= 0x9000001f;
      instr |= (addr & 3) << 29;
      instr |= (addr & 0x03fffc) << 3;
      instr |= (0 - (addr & 0x020000)) & 0xe00000;
      instr >>>= 0;
    } else continue;
    buf[i] = instr & 0xff;
    buf[i + 1] = (instr >>> 8) & 0xff;
    buf[i + 2] = (instr >>> 16) & 0xff;
    buf[i + 3] = (instr >>> 24) & 0xff;
  }
  return i;
}

const IA64_BRANCH = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 6, 6, 0, 0, 7, 7, 4, 4, 0, 0, 4, 4, 0, 0];

function ia64(buf: Uint8Array, pos: number): number {
  const size = buf.length & ~15;
  let i = 0;
  for (; i < size; i += 16) {
    const mask = IA64_BRANCH[buf[i]! & 0x1f]!;
    if (mask === 0) continue;
    for (let slot = 0, bitPos = 5; slot < 3; slot++, bitPos += 41) {
      if (((mask >>> slot) & 1) === 0) continue;
      // Rare (IA-64 code only): 64-bit arithmetic through BigInt is fine here.
      const bytePos = bitPos >>> 3;
      const bitRes = BigInt(bitPos & 7);
      let instr = 0n;
      for (let j = 0; j < 6; j++) instr |= BigInt(buf[i + j + bytePos]!) << BigInt(8 * j);
      let norm = instr >> bitRes;
      if (((norm >> 37n) & 0x0fn) === 0x05n && ((norm >> 9n) & 0x07n) === 0n) {
        let addr = Number((norm >> 13n) & 0x0fffffn);
        addr |= Number((norm >> 36n) & 1n) << 20;
        addr = ((((addr << 4) - ((pos + i) >>> 0)) >>> 4) & 0x1fffff) >>> 0;
        norm &= ~(0x8fffffn << 13n);
        norm |= BigInt(addr & 0x0fffff) << 13n;
        norm |= BigInt(addr & 0x100000) << 16n;
        instr &= (1n << bitRes) - 1n;
        instr |= norm << bitRes;
        for (let j = 0; j < 6; j++) buf[i + j + bytePos] = Number((instr >> BigInt(8 * j)) & 0xffn);
      }
    }
  }
  return i;
}

/**
 * The filters of one block, decode order (the reverse of the header's): output chunks go in, final
 * bytes come out; `finish` at the end of the block passes the held-back tail on unchanged.
 */
export class FilterChain {
  private readonly tails: Uint8Array[];
  constructor(private readonly filters: XzFilter[]) {
    this.tails = filters.map(() => new Uint8Array(0));
  }

  push(chunk: Buffer): Buffer {
    let data = chunk;
    for (let k = 0; k < this.filters.length; k++) {
      const tail = this.tails[k]!;
      const buf = tail.length > 0 ? Buffer.concat([tail, data]) : data;
      const done = this.filters[k]!.run(buf);
      this.tails[k] = buf.subarray(done).slice();
      data = buf.subarray(0, done);
    }
    return data;
  }

  finish(): Buffer {
    let data = Buffer.alloc(0);
    for (let k = 0; k < this.filters.length; k++) {
      // What earlier filters still held goes through this one first; then this one's tail is final.
      const tail = this.tails[k]!;
      const buf = Buffer.concat([tail, data]);
      const done = data.length > 0 ? this.filters[k]!.run(buf) : 0;
      void done;
      data = buf;
      this.tails[k] = new Uint8Array(0);
    }
    return data;
  }
}
