/**
 * The device build's task list: the installer image's scan is a task of its own, before the write
 * tasks, with the image's position and the files scanned; a key in the image fails that task (exit 4)
 * with the loop-device stick byte for byte as it was. Real xorriso, mksquashfs (zstd), mkfs.vfat and
 * loop devices; the wizard is driven with @inquirer/testing through `--device` (drivelist never lists
 * loop devices).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runWizard, type WizardDependencies } from '../../src/commands/wizard.js';
import type { Progress } from '../../src/core/types.js';
import { SecretsFoundError } from '../../src/errors.js';
import { createOutput } from '../../src/ui/output.js';
import { deviceTaskTitles, formatImageScanLine, runDeviceBuildTasks } from '../../src/ui/device-tasks.js';
import { sshKey } from '../helpers/credentials.js';
import { makeInstallerIso, writeTree } from '../helpers/installer-image.js';
import { mksquashfs, nixLikeTree, storeHash } from '../helpers/squashfs-image.js';
import { gitRepo, tempDir } from '../helpers/tmp.js';
import { loopDisk, seedInputs } from '../media/media-fixture.js';
import { promptDriver } from './wizard/prompt-driver.js';

const tinyDemo = fileURLToPath(new URL('../../fixtures/models/tiny-demo', import.meta.url));

/** A NixOS-shaped ISO whose zstd squashfs store holds many small files and, when `key` is given, a host key. */
async function installerIso(key?: string): Promise<string> {
  const dir = await tempDir('dubnium-device-tasks-');
  const root = path.join(dir, 'store');
  await mkdir(root, { recursive: true });
  if (key) nixLikeTree(root, key);
  const files: Record<string, string> = {};
  for (let index = 0; index < 300; index++) files[`nix/store/${storeHash()}-pkg-${index}/share/doc/README`] = `package ${index}\n`.repeat(40);
  await writeTree(root, files);
  const store = path.join(dir, 'nix-store.squashfs');
  mksquashfs(root, store, ['-comp', 'zstd']);
  // A real (clean) initrd: a newc cpio, zstd-compressed as NixOS ships it.
  const initrdRoot = path.join(dir, 'initrd');
  await writeTree(initrdRoot, { init: '#!/bin/sh\nexec /bin/sh\n', 'etc/fstab': 'none / tmpfs defaults 0 0\n' });
  const cpio = execFileSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: initrdRoot, input: 'init\netc\netc/fstab\n' });
  const initrd = execFileSync('zstd', ['-q', '-c'], { input: cpio });
  // Over FULL_SCAN_LIMIT (8 MiB), as every real installer image is: scanned as a stream, from inside.
  const firmware = Buffer.alloc(9 * 1024 * 1024, 0x5a);
  return (await makeInstallerIso(dir, { store, initrd, extra: { 'boot/firmware.bin': firmware } })).iso;
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** Everything the test renderer writes to stdout while `run` runs. */
async function captured<T>(run: () => Promise<T>): Promise<{ text: string; outcome: T | undefined; error: unknown }> {
  const written: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  });
  try {
    const outcome = await run();
    return { text: written.join(''), outcome, error: undefined };
  } catch (error) {
    return { text: written.join(''), outcome: undefined, error };
  } finally {
    spy.mockRestore();
  }
}

describe('runDeviceBuildTasks', () => {
  afterEach(() => vi.restoreAllMocks());

  it('shows the image scan as its own task with progress, before the write tasks, and builds', async () => {
    const clean = await installerIso();
    const { device } = await loopDisk(300);
    const { text, outcome, error } = await captured(async () =>
      runDeviceBuildTasks(
        { device, iso: clean, label: 'DUBNIUM-SEED', filesystem: 'ext4', allowFixedDisk: false, allowLarge: false, build: { ...(await seedInputs()), verify: false } },
        { renderer: 'test', signal: new AbortController().signal, progressIntervalMs: 0 },
      ),
    );
    expect(error).toBeUndefined();
    expect(outcome?.installer?.written).toBe(true);
    const titles = deviceTaskTitles(clean);
    expect(titles['installer-scan']).toBe('Scan installer image nixos.iso');
    const scanAt = text.indexOf('Scan installer image nixos.iso');
    const writeAt = text.indexOf('Write installer image nixos.iso');
    expect(scanAt).toBeGreaterThanOrEqual(0);
    expect(writeAt).toBeGreaterThan(scanAt);
    expect(text).toMatch(/Scan installer image nixos\.iso: no credentials, /);
    // Progress from inside the image: its position and the files of the squashfs store scanned.
    const lines = [...text.matchAll(/([\d.]+ [KMG]iB|\d+ B) of ([\d.]+ [KMG]iB) \(\d+%\), ([\d,]+) files scanned/g)];
    expect(lines.length).toBeGreaterThan(0);
    expect(Math.max(...lines.map((line) => Number(line[3]!.replace(/,/g, ''))))).toBeGreaterThanOrEqual(300);
    // The member being scanned (the chain's end: nixos.iso › /nix-store.squashfs › /nix/store/…).
    expect(text).toMatch(/files scanned, [^"]*\/nix\/store\/[a-z0-9]{32}-pkg-\d+\/share\/doc\/README/);
    // The partition was created: those tasks ran; ext4 mounts.
    expect(text).toContain('Add the seed partition');
    expect(text).toContain('Mount the seed partition');
  });

  it('fails the scan task on a key in the image (exit 4) and leaves the stick byte for byte', async () => {
    const leaking = await installerIso(sshKey('ed25519').privateKey);
    const { image, device } = await loopDisk(300);
    const before = await sha256(image);
    const { text, error } = await captured(async () =>
      runDeviceBuildTasks(
        { device, iso: leaking, label: 'DUBNIUM-SEED', filesystem: 'ext4', allowFixedDisk: false, allowLarge: false, build: await seedInputs() },
        { renderer: 'test', signal: new AbortController().signal, progressIntervalMs: 0 },
      ),
    );
    expect(error).toBeInstanceOf(SecretsFoundError);
    expect((error as SecretsFoundError).exitCode).toBe(4);
    expect((error as SecretsFoundError).details.join('\n')).toMatch(/nixos\.iso › \/nix-store\.squashfs › \/nix\/store\/[a-z0-9]{32}-etc\/etc\/ssh\/ssh_host_ed25519_key/);
    expect(text).toMatch(/FAIL.*Scan installer image nixos\.iso|Scan installer image nixos\.iso[\s\S]*FAIL/);
    expect(text).not.toMatch(/Write installer image nixos\.iso: /);
    expect(await sha256(image)).toBe(before);
  });

  it('formats the scan line with the image position and the files scanned', () => {
    const progress: Progress = { phase: 'scan', bytes: 512 * 1024 * 1024, total: 2048 * 1024 * 1024, files: 12345, path: 'nixos.iso › nix-store.squashfs › /nix/store/x' };
    expect(formatImageScanLine(progress, 4000)).toBe('512 MiB of 2.0 GiB (25%), 12,345 files scanned, 128 MiB/s  nixos.iso › nix-store.squashfs › /nix/store/x');
  });
});

describe('the wizard with --device and --iso', () => {
  it('shows the plan, asks once, and stops at the image scan task on a key (exit 4), the stick untouched', async () => {
    const iso = await installerIso(sshKey('ed25519').privateKey);
    const { image, device } = await loopDisk(300);
    const before = await sha256(image);
    const repo = await gitRepo({ 'flake.nix': '{ outputs = { self }: { }; }\n' });
    const home = await tempDir('dubnium-seed-home-');
    const lines: string[] = [];
    const driver = promptDriver();
    const deps: WizardDependencies = { prompts: driver.prompts, write: (line) => lines.push(line), renderer: 'test', env: { HOME: home }, systemDisks: [] };
    const context = { interactive: true, output: createOutput(false), signal: new AbortController().signal, cwd: repo };
    const { text, error } = await captured(async () => {
      const run = runWizard(context, { repo, model: [tinyDemo], device, iso, operatorSecrets: false, sign: false }, deps);
      const confirm = await driver.next('confirm');
      expect(confirm.getScreen()).toContain(`Write the installer image nixos.iso and the seed partition to ${device}?`);
      confirm.events.type('y');
      confirm.events.keypress('enter');
      return run;
    });
    expect(lines.join('\n')).toContain('scanned inside out first');
    expect(error).toBeInstanceOf(SecretsFoundError);
    expect((error as SecretsFoundError).exitCode).toBe(4);
    expect((error as SecretsFoundError).details.join('\n')).toMatch(/nixos\.iso › \/nix-store\.squashfs › \/nix\/store\/[a-z0-9]{32}-etc\/etc\/ssh\/ssh_host_ed25519_key/);
    expect(text).toContain('Scan installer image nixos.iso');
    expect(text).not.toMatch(/Write installer image nixos\.iso: /);
    expect(await sha256(image)).toBe(before);
  });
});
