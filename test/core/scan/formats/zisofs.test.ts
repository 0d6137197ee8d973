/**
 * zisofs, ISO 9660's per-file compression: files compressed by xorriso's `--zisofs` filter (version 1
 * with `ZF` entries, version 2 with `Z2` entries and 1 MiB blocks) are read decoded, byte for byte,
 * and a key inside one is found under its ISO path; a zisofs file outside an ISO is found by its
 * magic; a damaged block is reported, never passed. Real xorriso; keys made at test time.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileSource } from '../../../../src/core/scan/formats/byte-source.js';
import { iso9660 } from '../../../../src/core/scan/formats/iso9660.js';
import { zisofs, zisofsHeader } from '../../../../src/core/scan/formats/zisofs.js';
import { HEAD_BYTES } from '../../../../src/core/scan/formats/types.js';
import { runCli } from '../../../helpers/cli.js';
import { sshKey } from '../../../helpers/credentials.js';
import { memberBytes, walkMembers } from '../../../helpers/installer-image.js';
import { tempDir } from '../../../helpers/tmp.js';

const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const MARKER = 'OPENSSH PRIVATE KEY';

/** An ISO of `folder` with every file put through xorriso's zisofs filter (`-zisofs` settings as given). */
function zisofsIso(folder: string, out: string, settings?: string): string {
  execFileSync('xorriso', [...(settings ? ['-zisofs', settings] : []), '-outdev', out, '-map', folder, '/', '-set_filter_r', '--zisofs', '/', '--', '-commit'], { stdio: 'ignore' });
  return out;
}

/** The stored (still compressed) bytes of `isoPath` in `iso`, from xorriso's report of its blocks. */
async function storedBytes(iso: string, isoPath: string): Promise<Buffer> {
  const report = execFileSync('xorriso', ['-indev', iso, '-find', isoPath, '-exec', 'report_lba'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const match = /File data lba:\s*\d+\s*,\s*(\d+)\s*,\s*(\d+)\s*,/.exec(report);
  if (!match) throw new Error(`no extent for ${isoPath}: ${report}`);
  const image = await readFile(iso);
  return image.subarray(Number(match[1]) * 2048, (Number(match[1]) + Number(match[2])) * 2048);
}

async function JsonScan(target: string): Promise<{ code: number | null; findings: { path: string; inner?: string; chain?: string[]; rule: string; message?: string }[] }> {
  const result = await runCli(['scan', '--json', target]);
  return { code: result.code, findings: result.stdout ? ((JSON.parse(result.stdout) as { findings: [] }).findings ?? []) : [] };
}

/** A folder of files to compress (temp folders last one test): text with a key, zeros then a key, clean text. */
async function tree(): Promise<{ dir: string; folder: string; files: Record<string, Buffer> }> {
  const dir = await tempDir('dubnium-zisofs-');
  const folder = path.join(dir, 'root');
  const key = sshKey('ed25519').privateKey;
  const filler = Buffer.from(Array.from({ length: 6000 }, (_, line) => `line ${line}: services.openssh.enable = true;\n`).join(''));
  const files: Record<string, Buffer> = {
    // Several 32 KiB blocks of text with the key in the middle of one.
    'etc/ssh/sshd_config': Buffer.concat([filler, Buffer.from(key), filler]),
    // Whole blocks of zeros are stored as zero-length blocks; the key lies after them.
    'boot/zeros-then-key.bin': Buffer.concat([Buffer.alloc(3 * 1024 * 1024), Buffer.from(key), Buffer.alloc(5000, 0x41)]),
    'etc/clean.txt': filler,
  };
  for (const [name, bytes] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(folder, name)), { recursive: true });
    await writeFile(path.join(folder, name), bytes);
  }
  return { dir, folder, files };
}

describe('zisofs', () => {
  for (const [label, settings] of [
    ['version 1 (ZF entries, 32 KiB blocks)', undefined],
    ['version 2 (Z2 entries, 1 MiB blocks)', 'version_2=on:block_size_v2=1m:susp_z2=on'],
  ] as const) {
    it(`reads files compressed with ${label} decoded, byte for byte`, async () => {
      const { dir, folder, files } = await tree();
      const iso = zisofsIso(folder, path.join(dir, `${label.slice(0, 9).replace(' ', '')}.iso`), settings);
      const image = await readFile(iso);
      // The files really are compressed: the key is nowhere in the image as it lies.
      expect(image.includes(MARKER)).toBe(false);
      const stored = await storedBytes(iso, '/etc/ssh/sshd_config');
      expect(zisofsHeader(stored)?.version).toBe(settings ? 2 : 1);
      expect(image.includes(settings ? 'Z2' : 'ZF')).toBe(true);

      const source = await fileSource(iso);
      try {
        const walk = await walkMembers(iso9660, source);
        expect(walk.unreadable).toEqual([]);
        const byName = new Map(walk.members.map((member) => [member.name, member]));
        for (const [name, bytes] of Object.entries(files)) {
          const member = byName.get(`/${name}`)!;
          expect(member.size).toBe(bytes.length);
          // Decoded, not in place: a compressed file offers no random access to its plain bytes.
          expect(member.source).toBeUndefined();
          expect(sha(await memberBytes(member))).toBe(sha(bytes));
        }
      } finally {
        await source.close();
      }

      const scan = await JsonScan(iso);
      expect(scan.code).toBe(4);
      expect(scan.findings.filter((finding) => finding.rule.startsWith('unscanned'))).toEqual([]);
      expect(scan.findings.map((finding) => finding.inner).sort()).toEqual(['/boot/zeros-then-key.bin', '/etc/ssh/sshd_config']);
    });
  }

  it('finds a key in a zisofs file outside an ISO by its magic (a mkzftree tree in a tar)', async () => {
    const { dir, folder, files } = await tree();
    const iso = zisofsIso(folder, path.join(dir, 'for-tar.iso'));
    const loose = path.join(dir, 'zftree');
    await mkdir(path.join(loose, 'etc'), { recursive: true });
    const stored = await storedBytes(iso, '/etc/ssh/sshd_config');
    await writeFile(path.join(loose, 'etc/sshd_config'), stored);
    const source = await fileSource(path.join(loose, 'etc/sshd_config'));
    try {
      expect(zisofs.detect(await source.read(0, HEAD_BYTES), source.size)).toBe(true);
      const [member] = (await walkMembers(zisofs, source)).members;
      expect(sha(await memberBytes(member!))).toBe(sha(files['etc/ssh/sshd_config']!));
    } finally {
      await source.close();
    }
    execFileSync('tar', ['-cf', path.join(dir, 'zftree.tar'), '-C', loose, 'etc']);
    const scan = await JsonScan(path.join(dir, 'zftree.tar'));
    expect(scan.code).toBe(4);
    const found = scan.findings.find((finding) => finding.rule === 'openssh-private-key');
    expect(found?.chain ?? [found?.inner]).toContain('etc/sshd_config');
  });

  it('reports a damaged compressed block as unscanned, never as clean', async () => {
    const { dir, folder } = await tree();
    const iso = zisofsIso(folder, path.join(dir, 'damaged.iso'));
    const image = await readFile(iso);
    const stored = await storedBytes(iso, '/etc/clean.txt');
    // Overwrite the middle of the file's first compressed block (past its header and pointers).
    const at = image.indexOf(stored.subarray(0, 64)) + 16 + 4 * 10 + 200;
    image.fill(0xff, at, at + 64);
    await writeFile(iso, image);
    const scan = await JsonScan(iso);
    expect(scan.code).toBe(4);
    expect(scan.findings.find((finding) => finding.inner === '/etc/clean.txt')?.rule).toMatch(/^unscanned-(?:corrupt|truncated)$/);
  });

  it('refuses a zisofs header it cannot honour', () => {
    const header = Buffer.alloc(24);
    Buffer.from([0x37, 0xe4, 0x53, 0x96, 0xc9, 0xdb, 0xd6, 0x07]).copy(header);
    header.writeUInt32LE(100_000, 8);
    header[12] = 4;
    header[13] = 15;
    expect(zisofsHeader(header)).toMatchObject({ version: 1, size: 100_000, blockSize: 32768 });
    header[13] = 12; // 4 KiB blocks: no writer makes them
    expect(zisofsHeader(header)).toBeUndefined();
  });
});
