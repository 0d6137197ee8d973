/**
 * Filesystems whose files the scan does not open: ext2/3/4, exFAT, NTFS, XFS and Btrfs. Their bytes
 * still stream through the rules raw (ext4 and exFAT store file content uncompressed, so a plain key
 * file is found), but a compressed file on them (a `.tar.gz`, a `.zst`) is never unpacked, so such
 * an input is reported `unscanned`, never passed. `scan` of a block device mounts its ext4 and exFAT
 * partitions read-only and scans their files instead (src/media/scan-mounted.ts).
 */

/** The filesystem `head` (the first bytes of a file, partition or disk) starts, by its superblock; undefined for anything else. */
export function unopenedFilesystem(head: Buffer): string | undefined {
  if (isExtSuperblock(head)) return 'ext2/3/4';
  if (head.length >= 11) {
    const oem = head.toString('latin1', 3, 11);
    if (oem === 'EXFAT   ') return 'exFAT';
    if (oem === 'NTFS    ') return 'NTFS';
  }
  if (head.length >= 4 && head.toString('latin1', 0, 4) === 'XFSB' && head.length >= 8 && head.readUInt32BE(4) >= 512 && head.readUInt32BE(4) <= 65536) return 'XFS';
  if (head.length >= 0x10048 && head.toString('latin1', 0x10040, 0x10048) === '_BHRfS_M') return 'Btrfs';
  return undefined;
}

/**
 * The ext2/3/4 superblock at 1024: its two-byte magic, checked with fields that only a real one
 * holds together (a random binary has the magic there once in 65,536 files).
 */
function isExtSuperblock(head: Buffer): boolean {
  const at = 1024;
  if (head.length < at + 100 || head.readUInt16LE(at + 56) !== 0xef53) return false;
  const inodes = head.readUInt32LE(at);
  const blocks = head.readUInt32LE(at + 4);
  const firstDataBlock = head.readUInt32LE(at + 20);
  const logBlockSize = head.readUInt32LE(at + 24);
  const blocksPerGroup = head.readUInt32LE(at + 32);
  const state = head.readUInt16LE(at + 58);
  const creatorOs = head.readUInt32LE(at + 72);
  const revision = head.readUInt32LE(at + 76);
  return inodes > 0 && blocks > 0 && firstDataBlock <= 1 && logBlockSize <= 6 && blocksPerGroup > 0 && state >= 1 && state <= 7 && creatorOs <= 4 && revision <= 1;
}

/** The `unscanned` message for a filesystem found where a file's bytes were scanned raw. */
export function unopenedFilesystemMessage(filesystem: string): string {
  return (
    `holds an ${filesystem} filesystem, whose files this scan does not open: its bytes were scanned raw, but a compressed file on it was not unpacked. ` +
    'Scan the block device as root (dubnium-seed scan /dev/sdX mounts its ext4 and exFAT partitions read-only and scans their files), or mount it and scan the folder'
  );
}
