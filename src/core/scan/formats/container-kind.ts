/**
 * Which container a file is, from its first bytes (never from its name). Apart from containers.ts so
 * that every file can be checked without loading the archive readers (node:stream, node:zlib).
 */
export type ContainerKind = 'gzip' | 'zip' | 'tar' | 'zlib' | 'git-pack';

/**
 * Recognizes a container by its first bytes (never by its name): those of `bytes` from `start` (a
 * file read into a larger shared buffer is looked at where it lies, without a view of its own).
 */
export function detectContainer(bytes: Buffer, start = 0, end = bytes.length): ContainerKind | undefined {
  const length = end - start;
  // Bytes past `end` may belong to the next file: each test below first checks the length.
  const b0 = bytes[start]!;
  const b1 = bytes[start + 1]!;
  const b2 = bytes[start + 2]!;
  const b3 = bytes[start + 3]!;
  if (length >= 3 && b0 === 0x1f && b1 === 0x8b && b2 === 0x08) return 'gzip';
  if (length >= 4 && b0 === 0x50 && b1 === 0x4b && (b2 === 3 || b2 === 5) && (b3 === 4 || b3 === 6)) return 'zip';
  if (length >= 512 && bytes.toString('latin1', start + 257, start + 262) === 'ustar' && tarChecksumValid(bytes, start)) return 'tar';
  // A git packfile: "PACK", version 2 or 3, object count.
  if (length >= 12 && bytes.toString('latin1', start, start + 4) === 'PACK' && bytes.readUInt32BE(start + 4) >= 2 && bytes.readUInt32BE(start + 4) <= 3) return 'git-pack';
  if (length >= 2 && b0 === 0x78 && ((b0 << 8) | b1) % 31 === 0) return 'zlib';
  return undefined;
}

/**
 * A tar header's checksum (octal, at bytes 148-155) is the sum of its 512 bytes with the checksum
 * field counted as spaces. Text that happens to hold `ustar` at byte 257 (a tar library's source,
 * say) fails it, and is scanned as the text it is.
 */
function tarChecksumValid(bytes: Buffer, start: number): boolean {
  const field = bytes.toString('latin1', start + 148, start + 156).replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]{1,7}$/.test(field)) return false;
  // Old writers summed the bytes as signed chars: tar readers accept either sum.
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let index = 0; index < 512; index++) {
    if (index >= 148 && index < 156) continue;
    const byte = bytes[start + index]!;
    unsigned += byte;
    signed += byte < 0x80 ? byte : byte - 0x100;
  }
  const expected = Number.parseInt(field, 8);
  return expected === unsigned || expected === signed;
}
