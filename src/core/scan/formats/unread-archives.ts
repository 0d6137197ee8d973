/**
 * Archives the scan recognizes but does not read: 7-Zip, RAR (1.5-4 and 5), Microsoft Cabinet, xar
 * and Unix compress (`.Z`). Their members are compressed (LZMA, PPMd, LZX, ...) and often encrypted, so their bytes, read
 * as they lie, would pass a key inside unseen: opening one fails with 'unsupported', and the walker
 * reports it `unscanned-unsupported` with what to do, never a pass.
 */
import { FormatError, type FormatHandler } from './types.js';

const KINDS: { name: string; matches: (head: Buffer) => boolean }[] = [
  { name: '7-Zip', matches: (head) => head.length >= 6 && head.toString('hex', 0, 6) === '377abcaf271c' },
  { name: 'RAR', matches: (head) => head.length >= 8 && (head.toString('hex', 0, 7) === '526172211a0700' || head.toString('hex', 0, 8) === '526172211a070100') },
  { name: 'Microsoft Cabinet', matches: (head) => head.length >= 8 && head.toString('hex', 0, 8) === '4d53434600000000' },
  { name: 'xar', matches: (head) => head.length >= 8 && head.toString('latin1', 0, 4) === 'xar!' && head.readUInt16BE(4) === 28 },
  // Unix compress (LZW, `.Z`, `.tar.Z`): the magic and a flags byte of 9-16 code bits, reserved bits clear.
  { name: 'Unix compress (.Z)', matches: (head) => head.length >= 3 && head[0] === 0x1f && head[1] === 0x9d && (head[2]! & 0x1f) >= 9 && (head[2]! & 0x1f) <= 16 && (head[2]! & 0x60) === 0 },
];

/** The kind of archive `head` starts, when it is one the scan does not read. */
export function unreadArchive(head: Buffer): string | undefined {
  return KINDS.find((kind) => kind.matches(head))?.name;
}

export const unreadArchives: FormatHandler = {
  name: 'unread-archive',
  access: 'stream',
  detect: (head) => unreadArchive(head) !== undefined,
  async *members(input) {
    const iterator = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    const first = await iterator.next();
    await iterator.return?.();
    const kind = first.done ? undefined : unreadArchive(first.value);
    throw new FormatError('unsupported', `${kind ?? 'this'} files are not read: extract it and scan what it holds, or allowlist it with a reason`);
  },
};
