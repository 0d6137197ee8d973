/**
 * Filesystems whose files the scan does not open (FAT, exFAT and ext2/3/4 it does: fat.ts, exfat.ts,
 * ext4.ts): NTFS, XFS and Btrfs. Their bytes still stream through the rules raw, so a plain key file
 * stored uncompressed is found, but a compressed file on them (a `.tar.gz`, a `.zst`) is never
 * unpacked, and Btrfs may compress file content itself: such an input is reported `unscanned`,
 * never passed.
 */

/** The filesystem `head` (the first bytes of a file, partition or disk) starts, by its superblock; undefined for anything else. */
export function unopenedFilesystem(head: Buffer): string | undefined {
  if (head.length >= 11 && head.toString('latin1', 3, 11) === 'NTFS    ') return 'NTFS';
  if (head.length >= 8 && head.toString('latin1', 0, 4) === 'XFSB' && head.readUInt32BE(4) >= 512 && head.readUInt32BE(4) <= 65536) return 'XFS';
  if (head.length >= 0x10048 && head.toString('latin1', 0x10040, 0x10048) === '_BHRfS_M') return 'Btrfs';
  return undefined;
}

/** The `unscanned` message for a filesystem found where a file's bytes were scanned raw. */
export function unopenedFilesystemMessage(filesystem: string): string {
  return (
    `holds ${filesystem === 'Btrfs' ? 'a' : 'an'} ${filesystem} filesystem, whose files this scan does not open: its bytes were scanned raw, but a compressed file on it was not unpacked. ` +
    'Mount it read-only and scan the folder'
  );
}
