/**
 * Which container a file is, from its first bytes (never from its name). Apart from containers.ts so
 * that every file can be checked without loading the archive readers (node:stream, node:zlib).
 */
export type ContainerKind = 'gzip' | 'zip' | 'tar' | 'zlib' | 'git-pack';

/** Recognizes a container by its first bytes (never by its name). */
export function detectContainer(head: Buffer): ContainerKind | undefined {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'gzip';
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5) && (head[3] === 4 || head[3] === 6)) return 'zip';
  if (head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar') return 'tar';
  // A git packfile: "PACK", version 2 or 3, object count.
  if (head.length >= 12 && head.toString('latin1', 0, 4) === 'PACK' && head.readUInt32BE(4) >= 2 && head.readUInt32BE(4) <= 3) return 'git-pack';
  if (head.length >= 2 && head[0] === 0x78 && ((head[0] << 8) | head[1]!) % 31 === 0) return 'zlib';
  return undefined;
}
