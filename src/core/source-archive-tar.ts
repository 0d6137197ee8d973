/**
 * A minimal, deterministic tar header encoder (POSIX ustar, with a pax extended header only where
 * ustar cannot hold the value). Written here rather than delegated so that the archive bytes depend
 * on this file alone: every field is fixed (owner 0:0, empty user and group names, no device
 * numbers), so the same entries always give the same bytes.
 */

export const TAR_BLOCK = 512;

/** The two zero blocks that end every tar archive. */
export const TAR_END = Buffer.alloc(TAR_BLOCK * 2);

/** Largest value of the 11-digit octal size and mtime fields. */
const MAX_OCTAL_11 = 0o77777777777;

export type TarEntryType = 'file' | 'symlink' | 'directory';

/** One tar header's inputs. `name` is the full archive path (a directory's ends with '/'). */
export interface TarHeaderInput {
  name: string;
  type: TarEntryType;
  mode: number;
  size: number;
  mtime: number;
  linkname?: string;
}

const TYPEFLAG: Record<TarEntryType | 'pax', string> = { file: '0', symlink: '2', directory: '5', pax: 'x' };

function isAscii(text: string): boolean {
  // Non-ASCII names go through pax (defined as UTF-8) so that every tar reads them the same way.
  return /^[\x20-\x7e]*$/.test(text);
}

/** Splits a path into ustar's prefix (≤155 bytes) and name (≤100 bytes) at a '/', or returns null. */
function splitUstarName(path: string): { prefix: string; name: string } | null {
  if (!isAscii(path)) return null;
  if (path.length <= 100) return { prefix: '', name: path };
  // The first slash whose remainder fits keeps the prefix as short as possible.
  for (let index = path.indexOf('/'); index !== -1; index = path.indexOf('/', index + 1)) {
    const prefix = path.slice(0, index);
    const name = path.slice(index + 1);
    if (prefix.length > 155) return null;
    if (name.length <= 100 && name.length > 0) return { prefix, name };
  }
  return null;
}

function writeOctal(block: Buffer, value: number, offset: number, width: number): void {
  // `width` includes the terminating NUL, as tar expects.
  const digits = value.toString(8).padStart(width - 1, '0');
  block.write(digits, offset, width - 1, 'ascii');
  block[offset + width - 1] = 0;
}

function writeSize(block: Buffer, size: number): void {
  if (size <= MAX_OCTAL_11) {
    writeOctal(block, size, 124, 12);
    return;
  }
  // GNU base-256: high bit set, big-endian value in the remaining bytes (pax `size` is also written).
  block[124] = 0x80;
  let rest = BigInt(size);
  for (let offset = 135; offset > 124; offset -= 1) {
    block[offset] = Number(rest & 0xffn);
    rest >>= 8n;
  }
}

function encodeBlock(fields: { name: string; prefix: string; mode: number; size: number; mtime: number; typeflag: string; linkname: string }): Buffer {
  const block = Buffer.alloc(TAR_BLOCK);
  block.write(fields.name, 0, 100, 'utf8');
  writeOctal(block, fields.mode & 0o7777, 100, 8);
  writeOctal(block, 0, 108, 8); // uid
  writeOctal(block, 0, 116, 8); // gid
  writeSize(block, fields.size);
  writeOctal(block, Math.min(fields.mtime, MAX_OCTAL_11), 136, 12);
  block.write(fields.typeflag, 156, 1, 'ascii');
  block.write(fields.linkname, 157, 100, 'utf8');
  block.write('ustar\u000000', 257, 8, 'ascii');
  // uname and gname stay empty (all zero); devmajor/devminor as zero octal.
  writeOctal(block, 0, 329, 8);
  writeOctal(block, 0, 337, 8);
  block.write(fields.prefix, 345, 155, 'utf8');
  // Checksum: computed with the field itself as spaces, stored as 6 octal digits, NUL, space.
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, '0'), 148, 6, 'ascii');
  block[154] = 0;
  block[155] = 0x20;
  return block;
}

/** One pax record: "<length> <key>=<value>\n", where length counts the whole record in bytes. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyBytes = Buffer.byteLength(body);
  let length = bodyBytes + 1;
  while (bodyBytes + String(length).length !== length) length = bodyBytes + String(length).length;
  return `${length}${body}`;
}

function paxRecords(input: TarHeaderInput): string {
  let records = '';
  if (!splitUstarName(input.name)) records += paxRecord('path', input.name);
  const linkname = input.linkname ?? '';
  if (linkname && (!isAscii(linkname) || linkname.length > 100)) records += paxRecord('linkpath', linkname);
  if (input.size > MAX_OCTAL_11) records += paxRecord('size', String(input.size));
  if (input.mtime > MAX_OCTAL_11) records += paxRecord('mtime', String(input.mtime));
  return records;
}

function paddingFor(size: number): number {
  const rest = size % TAR_BLOCK;
  return rest === 0 ? 0 : TAR_BLOCK - rest;
}

/** Zero bytes that pad `size` bytes of content to a whole block (possibly empty). */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc(paddingFor(size));
}

/** A truncated ASCII stand-in for the ustar name field when the real name lives in pax. */
function fallbackName(path: string): string {
  const ascii = path.replace(/[^\x20-\x7e]/g, '_');
  return ascii.length <= 100 ? ascii : ascii.slice(ascii.length - 100);
}

/**
 * The header bytes of one entry: a single ustar block, or a pax extended header (its own block,
 * its records padded to a block) followed by the ustar block. Content and its padding follow.
 */
export function encodeTarHeader(input: TarHeaderInput): Buffer {
  const linkname = input.linkname ?? '';
  const typeflag = TYPEFLAG[input.type];
  const records = paxRecords(input);
  const split = splitUstarName(input.name) ?? { prefix: '', name: fallbackName(input.name) };
  const ustarLink = isAscii(linkname) && linkname.length <= 100 ? linkname : fallbackName(linkname);
  const main = encodeBlock({ name: split.name, prefix: split.prefix, mode: input.mode, size: input.size, mtime: input.mtime, typeflag, linkname: ustarLink });
  if (!records) return main;
  const paxBody = Buffer.from(records, 'utf8');
  const paxHeader = encodeBlock({ name: 'PaxHeader', prefix: '', mode: 0o644, size: paxBody.length, mtime: Math.min(input.mtime, MAX_OCTAL_11), typeflag: TYPEFLAG.pax, linkname: '' });
  return Buffer.concat([paxHeader, paxBody, tarPadding(paxBody.length), main]);
}

/** Exact number of tar bytes for one entry: header(s), content and padding. */
export function tarEntryBytes(input: TarHeaderInput): number {
  const records = paxRecords(input);
  const paxBytes = records ? TAR_BLOCK + Buffer.byteLength(records) + paddingFor(Buffer.byteLength(records)) : 0;
  const content = input.type === 'file' ? input.size + paddingFor(input.size) : 0;
  return paxBytes + TAR_BLOCK + content;
}
