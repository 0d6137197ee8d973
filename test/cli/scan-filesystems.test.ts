/**
 * `scan` of a stick or disk image whose partitions hold filesystems: ext4 and exFAT are read in
 * place, without mounting (formats/ext4.ts, exfat.ts), so a key inside a compressed file on the seed
 * partition is found; a filesystem the scan does not open (NTFS, XFS, Btrfs) is `unscanned`, never
 * passed. Real mkfs.ext4 (`-d`), mkfs.exfat + exfat-fuse (to fill it), sfdisk, losetup; keys made at
 * test time.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exfatGeometry } from '../../src/core/scan/formats/exfat.js';
import { isExtSuperblock } from '../../src/core/scan/formats/ext4.js';
import { unopenedFilesystem } from '../../src/core/scan/formats/filesystems.js';
import { scanPaths } from '../../src/core/scan/index.js';
import { runCli } from '../helpers/cli.js';
import { sshKey } from '../helpers/credentials.js';
import { tempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;
const KEY_NAME = 'etc/ssh/ssh_host_ed25519_key';

/** An ext4 image of `files` (mkfs.ext4 -d: no mount needed), `sizeMiB` large. */
async function ext4Of(dir: string, files: Record<string, string | Buffer>, sizeMiB = 16): Promise<string> {
  const tree = path.join(dir, 'tree');
  await mkdir(tree, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(tree, name)), { recursive: true });
    await writeFile(path.join(tree, name), content);
  }
  const image = path.join(dir, 'part.img');
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'DUBNIUM-SEED', '-d', tree, image, `${sizeMiB}M`], { stdio: 'ignore' });
  return image;
}

/** An exFAT image holding `files`, filled through exfat-fuse (root). */
async function exfatOf(dir: string, files: Record<string, string | Buffer>): Promise<string> {
  const image = path.join(dir, 'part.img');
  execFileSync('truncate', ['-s', '16M', image]);
  execFileSync('mkfs.exfat', ['-L', 'SEED', image], { stdio: 'ignore' });
  const mountPoint = path.join(dir, 'mnt');
  await mkdir(mountPoint);
  // exfat-fuse run as root wants a block device.
  const loop = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
  try {
    execFileSync('mount.exfat-fuse', [loop, mountPoint], { stdio: 'ignore' });
    try {
      for (const [name, content] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(mountPoint, name)), { recursive: true });
        await writeFile(path.join(mountPoint, name), content);
      }
    } finally {
      execFileSync('fusermount3', ['-u', mountPoint]);
    }
  } finally {
    execFileSync('losetup', ['-d', loop]);
  }
  return image;
}

/** A GPT disk image with `partition` as its partition 1 (at 1 MiB). */
function diskWith(dir: string, partition: string): string {
  const disk = path.join(dir, 'stick.img');
  const bytes = readFileSync(partition);
  execFileSync('truncate', ['-s', String(bytes.length + 2 * MiB), disk]);
  execFileSync('sfdisk', ['-q', disk], { input: `label: gpt\nstart=2048, size=${bytes.length / 512}, name=DUBNIUM-SEED\n` });
  execFileSync('dd', [`if=${partition}`, `of=${disk}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none']);
  return disk;
}

/** A gzipped tar holding a host key: compressed, so the raw bytes of the filesystem never show it. */
async function tarGzWithKey(dir: string): Promise<Buffer> {
  const src = path.join(dir, 'src');
  await mkdir(path.join(src, 'etc/ssh'), { recursive: true });
  await writeFile(path.join(src, KEY_NAME), sshKey('ed25519').privateKey);
  return execFileSync('tar', ['-cz', '-C', src, 'etc'], { maxBuffer: 64 * MiB });
}

async function scanJson(target: string) {
  const result = await runCli(['scan', '--json', target]);
  return { code: result.code, report: JSON.parse(result.stdout) as { findings: { path: string; chain?: string[]; rule: string; note?: string }[] } };
}

describe('scan of a disk with an ext4 partition', () => {
  it('reads the partition in place: a key inside a .tar.gz on it is found, naming the chain', async () => {
    const dir = await tempDir();
    const disk = diskWith(dir, await ext4Of(dir, { 'source/repo.tar.gz': await tarGzWithKey(dir), README: 'clean\n' }));
    // The core scan, with no mount and no loop device (as for a user who is not root).
    const report = await scanPaths([disk], { operatorSecrets: false });
    expect(report.findings.map((finding) => [finding.rule, ...(finding.chain ?? [])])).toEqual([['openssh-private-key', '(partition 1 DUBNIUM-SEED)', '/source/repo.tar.gz', KEY_NAME]]);
  });

  it('reads the partition once as raw bytes, not twice: the disk-wide pass already read it', async () => {
    const dir = await tempDir();
    const disk = diskWith(dir, await ext4Of(dir, { 'data/blob.bin': randomBytes(24 * MiB), 'notes.txt': 'clean\n' }, 48));
    const bytesRead = () => Number(/^rchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'))![1]);
    const before = bytesRead();
    const report = await scanPaths([disk], { operatorSecrets: false });
    const read = bytesRead() - before;
    expect(report.findings).toEqual([]);
    // The disk (50 MiB) once, the file (24 MiB) once and the free space (about 22 MiB) once: about
    // 96 MiB. Another raw pass over the partition would add 48 MiB.
    expect(read).toBeGreaterThan(90 * MiB);
    expect(read).toBeLessThan(120 * MiB);
  });

  it('a clean ext4 partition on a block device passes (exit 0)', async () => {
    const dir = await tempDir();
    const disk = diskWith(dir, await ext4Of(dir, { 'models/m/config.json': '{"model_type": "qwen2"}\n', 'notes.txt.gz': 'x' }));
    const loop = execFileSync('losetup', ['-r', '-f', '--show', '-P', disk], { encoding: 'utf8' }).trim();
    try {
      const { code, report } = await scanJson(loop);
      expect(report.findings).toEqual([]);
      expect(code).toBe(0);
    } finally {
      execFileSync('losetup', ['-d', loop]);
    }
  });
});

describe('scan of a disk with an exFAT partition', () => {
  it('reads the partition in place: a key inside a .tar.gz on it is found, naming the chain', async () => {
    const dir = await tempDir();
    const disk = diskWith(dir, await exfatOf(dir, { 'source/repo.tar.gz': await tarGzWithKey(dir), 'README.txt': 'clean\n' }));
    const { code, report } = await scanJson(disk);
    expect(code).toBe(4);
    expect(report.findings.map((finding) => [finding.rule, ...(finding.chain ?? [])])).toEqual([['openssh-private-key', '(partition 1 DUBNIUM-SEED)', '/source/repo.tar.gz', KEY_NAME]]);
  });
});

describe('a filesystem the scan does not open (NTFS, XFS, Btrfs)', () => {
  it('is unscanned, never passed: its bytes are read raw, a compressed file on it is not unpacked', async () => {
    const dir = await tempDir();
    // An NTFS boot sector (the name at byte 3) on a partition of the disk, as mkfs.ntfs writes it.
    const part = path.join(dir, 'ntfs.img');
    const bytes = Buffer.alloc(4 * MiB);
    bytes.write('NTFS    ', 3, 'latin1');
    bytes.writeUInt16LE(0xaa55, 510);
    await writeFile(part, bytes);
    const report = await scanPaths([diskWith(dir, part)], { operatorSecrets: false });
    expect(report.findings).toHaveLength(1);
    expect(report.findings[0]).toMatchObject({ kind: 'unscanned', rule: 'unscanned-unsupported', chain: ['(partition 1 DUBNIUM-SEED)'] });
    expect(report.findings[0]!.note).toMatch(/holds an NTFS filesystem, whose files this scan does not open.*Mount it read-only and scan the folder/);
  });
});

describe('volumes the scan does not open, made with their own tools', () => {
  it.each([
    ['an EROFS image (lz4hc, as a Nix store image is made): its compressed file', 'EROFS', 'unscanned-unsupported', async (dir: string, tree: string) => {
      execFileSync('mkfs.erofs', ['-zlz4hc', path.join(dir, 'vol.img'), tree], { stdio: 'ignore' });
    }],
    ['an F2FS partition', 'F2FS', 'unscanned-unsupported', async (dir: string) => {
      execFileSync('truncate', ['-s', '64M', path.join(dir, 'vol.img')]);
      execFileSync('mkfs.f2fs', ['-q', path.join(dir, 'vol.img')], { stdio: 'ignore' });
    }],
    ['a cramfs image (zlib pages, an old initrd format)', 'cramfs', 'unscanned-unsupported', async (dir: string, tree: string) => {
      execFileSync('mkfs.cramfs', [tree, path.join(dir, 'vol.img')], { stdio: 'ignore' });
    }],
    ['a UDF volume (mkudffs, no ISO 9660 tree)', 'UDF', 'unscanned-unsupported', async (dir: string) => {
      execFileSync('truncate', ['-s', '20M', path.join(dir, 'vol.img')]);
      execFileSync('mkudffs', ['--media-type=hd', '--blocksize=2048', path.join(dir, 'vol.img')], { stdio: 'ignore' });
    }],
    ['a LUKS2 volume', 'LUKS', 'unscanned-encrypted', async (dir: string) => luks(dir, 'luks2')],
    ['a LUKS1 volume', 'LUKS', 'unscanned-encrypted', async (dir: string) => luks(dir, 'luks1')],
  ])('%s is unscanned, never passed', async (_, name, rule, make) => {
    const dir = await tempDir();
    const tree = path.join(dir, 'tree');
    await mkdir(path.join(tree, 'etc/ssh'), { recursive: true });
    await writeFile(path.join(tree, KEY_NAME), sshKey('ed25519').privateKey.repeat(20));
    await make(dir, tree);
    for (const target of [path.join(dir, 'vol.img'), diskWith(dir, path.join(dir, 'vol.img'))]) {
      const report = await scanPaths([target], { operatorSecrets: false });
      const unscanned = report.findings.filter((finding) => finding.kind === 'unscanned');
      expect(unscanned.map((finding) => finding.rule), target).toEqual([rule]);
      expect(unscanned[0]!.note).toContain(name);
    }
  });

  it('macOS volumes (HFS+, HFSX, APFS) by their superblocks, as their specifications give them', () => {
    const volume = (fill: (bytes: Buffer) => void) => {
      const bytes = randomBytes(8192);
      fill(bytes);
      return bytes;
    };
    expect(unopenedFilesystem(volume((bytes) => { bytes.write('H+', 1024, 'latin1'); bytes.writeUInt16BE(4, 1026); }))).toEqual({ name: 'HFS+', kind: 'filesystem' });
    expect(unopenedFilesystem(volume((bytes) => { bytes.write('HX', 1024, 'latin1'); bytes.writeUInt16BE(5, 1026); }))).toEqual({ name: 'HFS+', kind: 'filesystem' });
    expect(unopenedFilesystem(volume((bytes) => bytes.write('NXSB', 32, 'latin1')))).toEqual({ name: 'APFS', kind: 'filesystem' });
  });

  it('ZFS and bcachefs by their labels, as their on-disk formats give them (neither has a tool here)', () => {
    const label = (fill: (bytes: Buffer) => void) => {
      const bytes = randomBytes(256 * 1024);
      fill(bytes);
      return bytes;
    };
    // A ZFS vdev label: the XDR name/value list at 16 KiB (encoding 1, little-endian) with the pool's guid.
    const zfs = label((bytes) => {
      bytes.set([1, 1, 0, 0, 0, 0, 0, 0], 16384);
      bytes.write('\0\0\0\x09pool_guid\0\0\0', 16384 + 200, 'latin1');
    });
    expect(unopenedFilesystem(zfs)).toEqual({ name: 'ZFS', kind: 'filesystem' });
    const bcachefs = label((bytes) => Buffer.from('c68573f666ce90a9d96a60cf803df7ef', 'hex').copy(bytes, 4096 + 24));
    expect(unopenedFilesystem(bcachefs)).toEqual({ name: 'bcachefs', kind: 'filesystem' });
    // The same bytes without the pool guid, or with the magic a byte off, are not volumes.
    const noGuid = Buffer.from(zfs);
    noGuid.fill(0x41, 16384 + 4, 16384 + 114688);
    expect(unopenedFilesystem(noGuid)).toBeUndefined();
    const shifted = label((bytes) => Buffer.from('c68573f666ce90a9d96a60cf803df7ef', 'hex').copy(bytes, 4096 + 25));
    expect(unopenedFilesystem(shifted)).toBeUndefined();
  });

  it('virtual disk images (qcow2, VHDX, VHD, VMDK, VDI) by their headers, as their specifications give them', async () => {
    const header = (fill: (bytes: Buffer) => void) => {
      const bytes = randomBytes(64 * 1024);
      fill(bytes);
      return bytes;
    };
    const heads: [string, Buffer][] = [
      ['qcow2', header((bytes) => { bytes.write('QFI\xfb', 0, 'latin1'); bytes.writeUInt32BE(3, 4); })],
      ['VHDX', header((bytes) => bytes.write('vhdxfile', 0, 'latin1'))],
      ['VHD', header((bytes) => { bytes.write('conectix', 0, 'latin1'); bytes.writeUInt32BE(0x00010000, 12); bytes.writeUInt32BE(3, 60); })],
      ['VMDK', header((bytes) => { bytes.write('KDMV', 0, 'latin1'); bytes.writeUInt32LE(1, 4); })],
      ['VDI', header((bytes) => { bytes.write('<<< Oracle VM VirtualBox Disk Image >>>\n', 0, 'latin1'); bytes.writeUInt32LE(0xbeda107f, 0x40); })],
    ];
    const dir = await tempDir();
    for (const [name, bytes] of heads) {
      expect(unopenedFilesystem(bytes)).toEqual({ name, kind: 'disk image' });
      const file = path.join(dir, `disk.${name.toLowerCase()}`);
      await writeFile(file, bytes);
      const report = await scanPaths([file], { operatorSecrets: false });
      expect(report.findings.map((finding) => finding.rule)).toEqual(['unscanned-unsupported']);
      expect(report.findings[0]!.note).toMatch(new RegExp(`holds a ${name} disk image.*qemu-img convert -O raw`));
    }
  });
});

/** A 20 MiB LUKS volume made with cryptsetup (a fast PBKDF: the test only needs its header). */
function luks(dir: string, type: 'luks1' | 'luks2'): void {
  const image = path.join(dir, 'vol.img');
  execFileSync('truncate', ['-s', '20M', image]);
  const keyFile = path.join(dir, 'passphrase');
  execFileSync('sh', ['-c', `printf %s "${randomBytes(8).toString('hex')}" > "${keyFile}"`]);
  execFileSync('cryptsetup', ['luksFormat', '-q', '--type', type, '--key-file', keyFile, ...(type === 'luks2' ? ['--pbkdf', 'pbkdf2'] : []), '--pbkdf-force-iterations', '1000', image], { stdio: 'ignore' });
}

describe('filesystem detection', () => {
  it('knows ext4 by its whole superblock, not by the two magic bytes alone; exFAT and NTFS by their boot sector', async () => {
    const dir = await tempDir();
    const image = readFileSync(await ext4Of(dir, {}, 8));
    expect(isExtSuperblock(image.subarray(0, 64 * 1024))).toBe(true);
    let flagged = 0;
    for (let index = 0; index < 2000; index += 1) {
      const random = randomBytes(4096);
      random.writeUInt16LE(0xef53, 1080);
      if (isExtSuperblock(random)) flagged += 1;
    }
    expect(flagged).toBe(0);
    expect(exfatGeometry(readFileSync(await exfatOf(await tempDir(), {})).subarray(0, 64 * 1024))).toBeDefined();
    expect(unopenedFilesystem(Buffer.concat([Buffer.alloc(3), Buffer.from('NTFS    ')]))?.name).toBe('NTFS');
    expect(unopenedFilesystem(Buffer.from('plain text, not a filesystem\n'.repeat(100)))).toBeUndefined();
  });
});
