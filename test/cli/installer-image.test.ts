/**
 * `scan` on installer media, inside out: an ISO 9660 image whose zstd squashfs store, zstd initrd or
 * El Torito EFI FAT image holds a host key; a clean ISO; a small raw cpio among text files; and a
 * whole stick on a real loop device (MBR + ISO region + FAT seed partition). Real mksquashfs,
 * xorriso, cpio, zstd, mkfs.vfat and losetup; keys made by ssh-keygen at test time.
 */
import { execFileSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { sshKey } from '../helpers/credentials.js';
import { makeInstallerIso, makeStick, writeTree } from '../helpers/installer-image.js';
import { mksquashfs, storeHash } from '../helpers/squashfs-image.js';
import { tempDir } from '../helpers/tmp.js';

interface JsonFinding {
  path: string;
  inner?: string;
  chain?: string[];
  rule: string;
}

/** A newc cpio archive of the files under `root` (paths relative, as an initrd holds them). */
function cpioOf(root: string): Buffer {
  const names = execFileSync('find', ['.', '-mindepth', '1'], { cwd: root, encoding: 'utf8' });
  return execFileSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: root, input: names, maxBuffer: 64 * 1024 * 1024 });
}

async function scanJson(target: string): Promise<{ code: number | null; findings: JsonFinding[]; stderr: string; stdout: string }> {
  const result = await runCli(['scan', '--json', target]);
  const findings = result.stdout ? ((JSON.parse(result.stdout) as { findings: JsonFinding[] }).findings ?? []) : [];
  return { code: result.code, findings, stderr: result.stderr, stdout: result.stdout };
}

const KEY_NAME = 'etc/ssh/ssh_host_ed25519_key';

describe('scan an installer image', () => {
  let dir: string;
  let key: string;
  let store: string;

  beforeAll(async () => {
    dir = await tempDir('dubnium-installer-image-');
    key = sshKey('ed25519').privateKey;
    store = `/nix/store/${storeHash()}-etc`;
  });

  it('finds a key in a small raw cpio among text files (cpio starts with printable ASCII)', async () => {
    const root = path.join(dir, 'cpio-tree');
    await writeTree(root, { [`${KEY_NAME}`]: key, 'etc/motd': 'hello\n' });
    const folder = path.join(dir, 'cpio-folder');
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, 'initrd.cpio'), cpioOf(root));
    await writeFile(path.join(folder, 'readme.txt'), 'nothing here\n');
    const result = await scanJson(folder);
    expect(result.code).toBe(4);
    expect(result.findings.map((finding) => `${finding.path}|${finding.inner}`)).toContain(`initrd.cpio|/${KEY_NAME}`);
  });

  it('does not pass a printable cpio it cannot read whole as quiet text (a cut-short archive is unscanned)', async () => {
    const folder = path.join(dir, 'cpio-cut');
    await mkdir(folder, { recursive: true });
    // Printable ASCII only, no rule literal: the quiet-text shortcut would pass it without asking the registry.
    await writeFile(path.join(folder, 'initrd.cpio'), '070701000000010000');
    const result = await scanJson(folder);
    expect(result.code).toBe(4);
    expect(result.findings.map((finding) => finding.rule)).toContain('unscanned-truncated');
  });

  it('finds a host key in the zstd nix-store.squashfs under a store path, naming the chain', async () => {
    const work = path.join(dir, 'squashfs');
    const root = path.join(work, 'store-root');
    await writeTree(root, { [`${store.slice(1)}/${KEY_NAME}`]: key, [`${store.slice(1)}/etc/hostname`]: 'nixos\n' });
    const image = path.join(work, 'nix-store.squashfs');
    mksquashfs(root, image, ['-comp', 'zstd']);
    const { iso } = await makeInstallerIso(work, { store: image });
    const result = await scanJson(iso);
    expect(result.code).toBe(4);
    const finding = result.findings.find((item) => item.rule === 'openssh-private-key');
    expect(finding?.path).toBe('nixos.iso');
    expect(finding?.chain).toEqual(['/nix-store.squashfs', `${store}/${KEY_NAME}`]);
    const human = await runCli(['scan', iso]);
    expect(human.code).toBe(4);
    expect(human.stdout).toContain(`nixos.iso › /nix-store.squashfs › ${store}/${KEY_NAME}`);
    expect(human.stdout + human.stderr).not.toContain(key.split('\n')[1]!);
  });

  it('finds a host key in a zstd initrd behind an uncompressed early cpio', async () => {
    const work = path.join(dir, 'initrd');
    const early = path.join(work, 'early');
    await writeTree(early, { 'kernel/x86/microcode/GenuineIntel.bin': Buffer.alloc(4096, 0x11) });
    const main = path.join(work, 'main');
    await writeTree(main, { [KEY_NAME]: key, init: '#!/bin/sh\n' });
    const initrd = Buffer.concat([cpioOf(early), execFileSync('zstd', ['-q', '-c'], { input: cpioOf(main) })]);
    const { iso } = await makeInstallerIso(work, { initrd });
    const result = await scanJson(iso);
    expect(result.code).toBe(4);
    const finding = result.findings.find((item) => item.rule === 'openssh-private-key');
    expect(finding?.chain?.[0]).toBe('/boot/initrd');
    expect(finding?.chain?.at(-1)).toBe(`/${KEY_NAME}`);
  });

  it('finds a key in the El Torito EFI FAT image', async () => {
    const work = path.join(dir, 'efi');
    const { iso } = await makeInstallerIso(work, { efi: { 'EFI/BOOT/BOOTX64.EFI': Buffer.alloc(4096, 0x4d), 'loader/keys/id_ed25519': key } });
    const result = await scanJson(iso);
    expect(result.code).toBe(4);
    const finding = result.findings.find((item) => item.rule === 'openssh-private-key');
    expect(finding?.chain?.[0]).toBe('/boot/efi.img');
    expect(finding?.chain?.at(-1)?.toLowerCase()).toBe('/loader/keys/id_ed25519');
  });

  it('scans a large image (over 8 MiB, streamed from inside): every file counted, a key in a file and in a .gz in the store named', async () => {
    const work = path.join(dir, 'large');
    const root = path.join(work, 'store-root');
    const tree: Record<string, string | Buffer> = { [`${store.slice(1)}/${KEY_NAME}`]: key };
    for (let index = 0; index < 2000; index++) tree[`nix/store/${storeHash()}-pkg-${index}/share/doc/README`] = `package ${index} documentation\n`.repeat(30);
    tree[`${store.slice(1)}/share/doc/notes.txt.gz`] = gzipSync(Buffer.from(`notes\n${key}`));
    await writeTree(root, tree);
    const image = path.join(work, 'nix-store.squashfs');
    mksquashfs(root, image, ['-comp', 'zstd']);
    const initrdRoot = path.join(work, 'initrd-root');
    await writeTree(initrdRoot, { init: '#!/bin/sh\n' });
    const initrd = execFileSync('zstd', ['-q', '-c'], { input: cpioOf(initrdRoot) });
    const { iso } = await makeInstallerIso(work, { store: image, initrd, extra: { 'boot/firmware.bin': Buffer.alloc(9 * 1024 * 1024, 0x5a) } });
    const result = await runCli(['scan', '--json', iso]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(4);
    const report = JSON.parse(result.stdout) as { files: number; findings: JsonFinding[] };
    // The ISO, its files (squashfs, initrd, EFI image, firmware, ...), the store's 2,002 files and what is inside them.
    expect(report.files).toBeGreaterThan(2002);
    const keys = report.findings.filter((item) => item.rule === 'openssh-private-key');
    expect(keys.map((item) => item.chain?.slice(0, 2))).toEqual(
      expect.arrayContaining([
        ['/nix-store.squashfs', `${store}/${KEY_NAME}`],
        ['/nix-store.squashfs', `${store}/share/doc/notes.txt.gz`],
      ]),
    );
    expect(report.findings.filter((item) => item.rule.startsWith('unscanned'))).toEqual([]);
  });

  it('passes a clean installer ISO (exit 0)', async () => {
    const work = path.join(dir, 'clean');
    const root = path.join(work, 'store-root');
    await writeTree(root, { [`${store.slice(1)}/etc/hostname`]: 'nixos\n', [`${store.slice(1)}/etc/ssh/ssh_host_ed25519_key.pub`]: 'ssh-ed25519 AAAA test\n' });
    const image = path.join(work, 'nix-store.squashfs');
    mksquashfs(root, image, ['-comp', 'zstd']);
    const initrdRoot = path.join(work, 'initrd-root');
    await writeTree(initrdRoot, { init: '#!/bin/sh\nexec /nix/store/x/init\n' });
    const initrd = execFileSync('zstd', ['-q', '-c'], { input: cpioOf(initrdRoot) });
    const { iso } = await makeInstallerIso(work, { store: image, initrd });
    const result = await scanJson(iso);
    expect(result.stderr).toBe('');
    expect(result.findings).toEqual([]);
    expect(result.code).toBe(0);
  });
});

describe('scan a whole stick on a loop device', () => {
  let dir: string;
  let loop: string | undefined;

  beforeAll(async () => {
    dir = await tempDir('dubnium-installer-stick-');
  });

  afterAll(() => {
    if (loop) execFileSync('losetup', ['-d', loop]);
  });

  it('finds the key in the ISO region of the stick, naming the chain (exit 4)', async () => {
    const key = sshKey('ed25519').privateKey;
    const store = `/nix/store/${storeHash()}-etc`;
    const root = path.join(dir, 'store-root');
    await writeTree(root, { [`${store.slice(1)}/${KEY_NAME}`]: key });
    const image = path.join(dir, 'nix-store.squashfs');
    mksquashfs(root, image, ['-comp', 'zstd']);
    const { iso } = await makeInstallerIso(dir, { store: image });
    const { stick } = await makeStick(dir, iso, { 'dubnium-seed.json': '{}\n' });
    loop = execFileSync('losetup', ['--find', '--show', '--read-only', stick], { encoding: 'utf8' }).trim();
    const result = await scanJson(loop);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(4);
    const finding = result.findings.find((item) => item.rule === 'openssh-private-key');
    expect(finding?.path).toBe(path.basename(loop));
    expect(finding?.chain).toEqual(['(installer image)', '/nix-store.squashfs', `${store}/${KEY_NAME}`]);
  });
});
