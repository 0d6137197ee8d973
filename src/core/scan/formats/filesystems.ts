/**
 * Filesystems whose files the scan does not open (ext2/3/4 is opened: formats/ext4.ts; FAT too):
 * exFAT, NTFS, XFS and Btrfs. Their bytes still stream through the rules raw (exFAT stores file
 * content uncompressed, so a plain key file is found), but a compressed file on them (a `.tar.gz`, a
 * `.zst`) is never unpacked, so such an input is reported `unscanned`, never passed. `scan` of a
 * block device or disk image, as root, mounts its exFAT partitions read-only and scans their files
 * instead (src/media/scan-mounted.ts).
 */

/** The filesystem `head` (the first bytes of a file, partition or disk) starts, by its superblock; undefined for anything else. */
export function unopenedFilesystem(head: Buffer): string | undefined {
  if (head.length >= 11) {
    const oem = head.toString('latin1', 3, 11);
    if (oem === 'EXFAT   ') return 'exFAT';
    if (oem === 'NTFS    ') return 'NTFS';
  }
  if (head.length >= 4 && head.toString('latin1', 0, 4) === 'XFSB' && head.length >= 8 && head.readUInt32BE(4) >= 512 && head.readUInt32BE(4) <= 65536) return 'XFS';
  if (head.length >= 0x10048 && head.toString('latin1', 0x10040, 0x10048) === '_BHRfS_M') return 'Btrfs';
  return undefined;
}

/** The `unscanned` message for a filesystem found where a file's bytes were scanned raw. */
export function unopenedFilesystemMessage(filesystem: string): string {
  return (
    `holds ${filesystem === 'Btrfs' ? 'a' : 'an'} ${filesystem} filesystem, whose files this scan does not open: its bytes were scanned raw, but a compressed file on it was not unpacked. ` +
    'Scan the stick or disk image as root (dubnium-seed scan mounts its exFAT partitions read-only and scans their files), or mount it and scan the folder'
  );
}
