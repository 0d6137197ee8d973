/**
 * The format registry: every container the walker opens, in detection order (the most specific magic
 * first). Detection is by content only, never by name. Adding a format is one file and one line here.
 */
import { ar } from './ar.js';
import { compressed } from './compressed.js';
import { cpio } from './cpio.js';
import { erofs } from './erofs.js';
import { exfat } from './exfat.js';
import { ext4 } from './ext4.js';
import { fat } from './fat.js';
import { gguf } from './gguf.js';
import { gitBundle } from './git-bundle.js';
import { gitObject } from './git-object.js';
import { gitPack } from './git-pack.js';
import { iso9660 } from './iso9660.js';
import { nar } from './nar.js';
import { partitions } from './partitions.js';
import { safetensors } from './safetensors.js';
import { sqlite } from './sqlite.js';
import { squashfs } from './squashfs.js';
import { tar } from './tar.js';
import { HEAD_BYTES, type FormatHandler } from './types.js';
import { zip } from './zip.js';
import { zisofs } from './zisofs.js';
import { unreadArchives } from './unread-archives.js';
import { uki } from './uki.js';

export { FormatError, HEAD_BYTES, type ByteSource, type FormatContext, type FormatHandler, type Member, type UnscannedReason, type BlockDecoder } from './types.js';

/**
 * Detection order: exact magic at offset 0 first (each a few byte compares, so a plain text file
 * costs nothing). The installer-image formats: squashfs and cpio by their magic at byte 0; iso9660
 * (CD001 at 32769, which says no for a whole stick) before partitions (MBR/GPT, which hands the ISO
 * region back as a member) before fat (a boot sector shaped like an MBR, which partitions rejects);
 * exFAT (its name at byte 3 of a boot sector that also ends in 0x55AA) before partitions; ext4 and
 * EROFS (their superblocks at 1024, behind a zeroed boot block) after them.
 * ar (`!<arch>`, a static library excepted) beside tar; zisofs, the archives the scan recognizes but
 * does not read (7-Zip, RAR, Cabinet, xar) and unified kernel images (a PE file with `.linux` or
 * `.initrd` sections) after the compressions; safetensors (a length and a `{`, checked against the
 * size) after every exact magic; zlib (two weak bytes, confirmed by inflating) last.
 */
export const FORMATS: readonly FormatHandler[] = [zip, tar, ar, gitPack, gitBundle, sqlite, nar, gguf, squashfs, cpio, iso9660, exfat, partitions, fat, ext4, erofs, compressed, zisofs, unreadArchives, uki, safetensors, gitObject];

/**
 * The format of a file or member from its first bytes (`head`, up to HEAD_BYTES) and its size when
 * known; undefined when it is no container the scanner knows.
 */
export function detectFormat(head: Buffer, size?: number): FormatHandler | undefined {
  const view = head.length > HEAD_BYTES ? head.subarray(0, HEAD_BYTES) : head;
  for (const format of FORMATS) if (format.detect(view, size)) return format;
  return undefined;
}
