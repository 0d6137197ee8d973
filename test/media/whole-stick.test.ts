/**
 * The installer image is installer media too, end to end on real loop devices: `build --device L
 * --iso FILE` refuses a leaking image before writing a byte; a clean image is written, recorded in
 * the manifest (volume id, length, sha256) and checked by `verify L` (a whole stick), which fails with
 * exit 3 naming the installer image when one byte inside its region changes.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeBundle } from '../helpers/bundles.js';
import { runCli } from '../helpers/cli.js';
import { sshKey } from '../helpers/credentials.js';
import { makeInstallerIso, makeStick, writeTree } from '../helpers/installer-image.js';
import { mksquashfs, storeHash } from '../helpers/squashfs-image.js';
import { gitRepo, tempDir } from '../helpers/tmp.js';
import { loopDisk } from './media-fixture.js';

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A NixOS-shaped installer ISO whose zstd store holds `storeFiles` and whose zstd initrd is a real cpio. */
async function installerIso(dir: string, storeFiles: Record<string, string>): Promise<string> {
  const root = path.join(dir, 'store-root');
  await writeTree(root, { [`nix/store/${storeHash()}-etc/etc/hostname`]: 'nixos\n', ...storeFiles });
  const store = path.join(dir, 'nix-store.squashfs');
  mksquashfs(root, store, ['-comp', 'zstd']);
  const initrdRoot = path.join(dir, 'initrd-root');
  await writeTree(initrdRoot, { init: '#!/bin/sh\n' });
  const cpio = execFileSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: initrdRoot, input: 'init\n' });
  const initrd = execFileSync('zstd', ['-q', '-c'], { input: cpio });
  return (await makeInstallerIso(dir, { store, initrd })).iso;
}

async function seedArgs(): Promise<string[]> {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'configuration.nix': '{ ... }: { }\n' });
  const bundle = await writeBundle(path.join(await tempDir(), 'tiny'));
  return ['--repo', repo, '--model', bundle.dir];
}

describe('build --device --iso on a loop device', () => {
  it('refuses an image holding a host key before writing a byte (exit 4, the stick unchanged)', async () => {
    const dir = await tempDir('dubnium-whole-stick-leak-');
    const key = sshKey('ed25519').privateKey;
    const keyPath = `nix/store/${storeHash()}-etc/etc/ssh/ssh_host_ed25519_key`;
    const iso = await installerIso(dir, { [keyPath]: key });
    const { device } = await loopDisk(96);
    const before = await sha256Of(device);
    const result = await runCli(['build', ...(await seedArgs()), '--device', device, '--iso', iso, '--yes']);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain(`installer image ${iso}`);
    expect(result.stderr).toContain(`nixos.iso › /nix-store.squashfs › /${keyPath}`);
    expect(result.stderr + result.stdout).not.toContain(key.split('\n')[1]!);
    expect(await sha256Of(device)).toBe(before);
  });

  it('writes a clean image, records it in the manifest, and verify of the whole stick checks it; a flipped byte in it is exit 3', async () => {
    const dir = await tempDir('dubnium-whole-stick-clean-');
    const iso = await installerIso(dir, {});
    const isoBytes = (await stat(iso)).size;
    const { device, image } = await loopDisk(96);
    const built = await runCli(['build', ...(await seedArgs()), '--device', device, '--iso', iso, '--yes']);
    expect(built.stderr).not.toMatch(/internal error/);
    expect(built.code).toBe(0);

    const verified = await runCli(['verify', device, '--json']);
    expect(verified.stderr).not.toMatch(/internal error/);
    expect(verified.code).toBe(0);
    const report = JSON.parse(verified.stdout) as { ok: boolean; manifest: { installer?: { volumeId: string; length: number; sha256: string } }; installer: { volumeId: string; length: number; sha256: { expected: string; actual: string }; ok: boolean; findings: unknown[] } };
    expect(report.ok).toBe(true);
    expect(report.manifest.installer).toMatchObject({ volumeId: 'NIXOS_ISO', length: isoBytes });
    expect(report.installer).toMatchObject({ volumeId: 'NIXOS_ISO', length: isoBytes, ok: true, findings: [] });
    expect(report.installer.sha256.expected).toBe(report.installer.sha256.actual);
    // The record is of the image's own bytes (MBR entries 3 and 4, where the seed partition went, as zeros).
    const isoHash = createHash('sha256');
    const isoBytesRead = execFileSync('cat', [iso], { maxBuffer: 256 * 1024 * 1024 });
    isoBytesRead.fill(0, 478, 510);
    expect(report.installer.sha256.expected).toBe(isoHash.update(isoBytesRead).digest('hex'));

    const withIso = await runCli(['verify', device, '--iso', iso]);
    expect(withIso.code).toBe(0);
    expect(withIso.stdout).toMatch(/installer NIXOS_ISO/);

    // One byte in the ISO's system area (not the MBR, not the GPT, not the seed partition).
    const offset = 30_000;
    const original = execFileSync('dd', [`if=${image}`, 'bs=1', `skip=${offset}`, 'count=1', 'status=none'])[0]!;
    execFileSync('dd', [`of=${device}`, 'bs=1', `seek=${offset}`, 'count=1', 'conv=notrunc,fsync', 'status=none'], { input: Buffer.from([original ^ 0xff]) });
    execFileSync('blockdev', ['--flushbufs', device]);
    const flipped = await runCli(['verify', device]);
    expect(flipped.code).toBe(3);
    expect(flipped.stdout).toMatch(/installer image NIXOS_ISO .*differs/);
    const flippedJson = JSON.parse((await runCli(['verify', device, '--json'])).stdout) as { installer: { ok: boolean; sha256: { expected: string; actual: string } } };
    expect(flippedJson.installer.ok).toBe(false);
    expect(flippedJson.installer.sha256.actual).not.toBe(flippedJson.installer.sha256.expected);
  });

  it('records an installer image found already on the stick (written with dd, no --iso)', async () => {
    const dir = await tempDir('dubnium-whole-stick-found-');
    const iso = await installerIso(dir, {});
    const { device } = await loopDisk(96, iso);
    const built = await runCli(['build', ...(await seedArgs()), '--device', device, '--yes', '--json']);
    expect(built.stderr).not.toMatch(/internal error/);
    expect(built.code).toBe(0);
    const verified = await runCli(['verify', device, '--json']);
    expect(verified.code).toBe(0);
    const report = JSON.parse(verified.stdout) as { manifest: { installer?: { length: number } }; installer: { recorded: boolean; ok: boolean } };
    expect(report.manifest.installer?.length).toBe((await stat(iso)).size);
    expect(report.installer).toMatchObject({ recorded: true, ok: true });
  });

  it('says so when the seed has no record of the installer image in front of it (human report and --json)', async () => {
    const dir = await tempDir('dubnium-whole-stick-unrecorded-');
    const iso = await installerIso(dir, {});
    // A seed built into a folder (no stick, so no installer record), put beside the image on a stick.
    const folder = path.join(dir, 'seed');
    const built = await runCli(['build', ...(await seedArgs()), '--target', folder, '--json']);
    expect(built.code).toBe(0);
    const tree: Record<string, Buffer> = {};
    for (const relative of (await readdir(folder, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile())) {
      const full = path.join(relative.parentPath, relative.name);
      tree[path.relative(folder, full)] = await readFile(full);
    }
    expect(JSON.parse(tree['dubnium-seed.json']!.toString('utf8')).installer).toBeUndefined();
    const { stick } = await makeStick(dir, iso, tree);

    const human = await runCli(['verify', stick]);
    expect(human.stderr).not.toMatch(/internal error/);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/installer NIXOS_ISO.*no record in the manifest/);
    expect(human.stdout).toContain('the manifest has no record of it');
    const json = await runCli(['verify', stick, '--json']);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as { ok: boolean; manifest: { installer?: unknown }; installer: { recorded: boolean; ok: boolean; scanned: boolean; sha256: { expected: string | null; actual: string } }; checked: string[] };
    expect(report.manifest.installer).toBeUndefined();
    expect(report.installer).toMatchObject({ recorded: false, ok: true, scanned: true, sha256: { expected: null } });
    expect(report.installer.sha256.actual).toMatch(/^[0-9a-f]{64}$/);
    expect(report.checked.join('\n')).toMatch(/installer image NIXOS_ISO: the manifest has no record of it/);
  });
});
