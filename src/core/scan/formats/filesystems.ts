/**
 * Volumes whose files the scan does not open (FAT, exFAT, ext2/3/4 and EROFS it does: fat.ts, exfat.ts,
 * ext4.ts, erofs.ts; ISO 9660 and squashfs too): NTFS, XFS, Btrfs, ZFS, bcachefs, F2FS, cramfs, HFS+,
 * APFS and UDF filesystems, virtual disk images (qcow2, VHDX, dynamic VHD, VMDK, VDI), and encrypted volumes
 * (LUKS, BitLocker). Their bytes still stream through the rules raw, so a plain key stored
 * uncompressed in the clear is found, but a compressed file on them (a `.tar.gz`, a `.zst`) is never
 * unpacked, several of them compress file content themselves, and an encrypted volume's content cannot be read at all: such an input is reported
 * `unscanned`, never passed.
 */
import type { UnscannedReason } from './types.js';

export interface UnopenedVolume {
  /** `NTFS`, `qcow2`, `LUKS`, ... */
  name: string;
  kind: 'filesystem' | 'disk image' | 'encrypted volume';
}

const FILESYSTEM = 'filesystem' as const;
const DISK_IMAGE = 'disk image' as const;
const ENCRYPTED = 'encrypted volume' as const;
const BCACHEFS_MAGIC = Buffer.from('c68573f666ce90a9d96a60cf803df7ef', 'hex');
const BCACHE_MAGIC = Buffer.from('c68573f64e1a45ca8265f57f48ba6d81', 'hex');

/** The volume `head` (the first bytes of a file, partition or disk) starts, by its superblock or header; undefined for anything else. */
export function unopenedFilesystem(head: Buffer): UnopenedVolume | undefined {
  const text = (start: number, end: number) => (head.length >= end ? head.toString('latin1', start, end) : '');
  if (text(3, 11) === 'NTFS    ') return { name: 'NTFS', kind: FILESYSTEM };
  if (text(0, 4) === 'XFSB' && head.readUInt32BE(4) >= 512 && head.readUInt32BE(4) <= 65536) return { name: 'XFS', kind: FILESYSTEM };
  if (text(0x10040, 0x10048) === '_BHRfS_M') return { name: 'Btrfs', kind: FILESYSTEM };
  // ZFS: a vdev label's name/value list at 16 KiB, XDR-encoded (encoding 1, then its byte order),
  // naming the pool's guid; a pool's vdev compresses its blocks (lz4 by default) and may encrypt them.
  if (head.length >= 16384 + 4096 && head[16384] === 1 && head[16385]! <= 1 && head[16386] === 0 && head[16387] === 0 && head.subarray(16384, 16384 + 114688).includes('pool_guid')) {
    return { name: 'ZFS', kind: FILESYSTEM };
  }
  // bcachefs (and a bcache backing device): its superblock at 4 KiB, magic after the checksum and versions.
  const bcacheMagic = head.subarray(4096 + 24, 4096 + 40);
  if (BCACHEFS_MAGIC.equals(bcacheMagic) || BCACHE_MAGIC.equals(bcacheMagic)) return { name: 'bcachefs', kind: FILESYSTEM };
  if (head.length >= 1040) {
    const magic = head.readUInt32LE(1024);
    // F2FS: its magic, major version 1, and a sector size of 512 B to 4 KiB.
    if (magic === 0xf2f52010 && head.readUInt16LE(1028) === 1 && head.readUInt32LE(1032) >= 9 && head.readUInt32LE(1032) <= 12) return { name: 'F2FS', kind: FILESYSTEM };
  }
  // cramfs (an old initrd and firmware filesystem, zlib-compressed pages): its magic and signature, at 0 or after a 512-byte pad.
  for (const at of [0, 512]) {
    if (head.length >= at + 32 && head.readUInt32LE(at) === 0x28cd3d45 && text(at + 16, at + 32) === 'Compressed ROMFS') return { name: 'cramfs', kind: FILESYSTEM };
  }
  // HFS+ and HFSX (macOS volumes, which may compress files) and APFS containers.
  if ((text(1024, 1026) === 'H+' && head.readUInt16BE(1026) === 4) || (text(1024, 1026) === 'HX' && head.readUInt16BE(1026) === 5)) return { name: 'HFS+', kind: FILESYSTEM };
  if (text(32, 36) === 'NXSB') return { name: 'APFS', kind: FILESYSTEM };
  // UDF without an ISO 9660 tree (a bridge image has one, and iso9660.ts reads it): an NSR
  // descriptor in the volume recognition sequence from 32 KiB, in 2 KiB steps, and no CD001.
  for (let at = 32768; at + 6 <= head.length && at < 32768 + 16 * 2048; at += 2048) {
    const id = text(at + 1, at + 6);
    if (id === 'CD001') break;
    if (id === 'NSR02' || id === 'NSR03') return { name: 'UDF', kind: FILESYSTEM };
  }
  if (text(0, 6) === 'LUKS\xba\xbe' && (head.readUInt16BE(6) === 1 || head.readUInt16BE(6) === 2)) return { name: 'LUKS', kind: ENCRYPTED };
  if (text(3, 11) === '-FVE-FS-') return { name: 'BitLocker', kind: ENCRYPTED };
  if (text(0, 4) === 'QFI\xfb' && head.readUInt32BE(4) >= 1 && head.readUInt32BE(4) <= 3) return { name: 'qcow2', kind: DISK_IMAGE };
  if (text(0, 8) === 'vhdxfile') return { name: 'VHDX', kind: DISK_IMAGE };
  // A dynamic or differencing VHD starts with a copy of its footer (a fixed one is a raw disk with the footer at its end).
  if (text(0, 8) === 'conectix' && head.length >= 64 && head.readUInt32BE(12) === 0x00010000 && [3, 4].includes(head.readUInt32BE(60))) return { name: 'VHD', kind: DISK_IMAGE };
  if (text(0, 4) === 'KDMV' && head.readUInt32LE(4) >= 1 && head.readUInt32LE(4) <= 3) return { name: 'VMDK', kind: DISK_IMAGE };
  if (head.length >= 0x44 && head.readUInt32LE(0x40) === 0xbeda107f) return { name: 'VDI', kind: DISK_IMAGE };
  return undefined;
}

/** The `unscanned` reason for such a volume: an encrypted one cannot be read, the others are not supported. */
export function unopenedReason(volume: UnopenedVolume): UnscannedReason {
  return volume.kind === ENCRYPTED ? 'encrypted' : 'unsupported';
}

/** The `unscanned` message for a volume found where a file's bytes were scanned raw: what was not read, and what to do. */
export function unopenedFilesystemMessage(volume: UnopenedVolume): string {
  switch (volume.kind) {
    case ENCRYPTED:
      return `holds a ${volume.name}-encrypted volume, whose content this scan cannot read. Open it (cryptsetup open, or mount it) and scan the opened device or folder, or allowlist this finding with a reason if an encrypted volume may travel`;
    case DISK_IMAGE:
      return `holds a ${volume.name} disk image, whose filesystems this scan does not open: its bytes were scanned raw, but a compressed file in it was not unpacked. Convert it to a raw image (qemu-img convert -O raw) and scan that`;
    default:
      return (
        `holds ${['Btrfs', 'cramfs', 'UDF'].includes(volume.name) ? 'a' : 'an'} ${volume.name} filesystem, whose files this scan does not open: its bytes were scanned raw, but a compressed file on it was not unpacked. ` +
        'Mount it read-only and scan the folder'
      );
  }
}
