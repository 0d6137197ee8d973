/**
 * The CLI's media paths: `drives` over recorded drivelist results (the one seam for physical
 * sticks), `build --image` + `verify FILE`, `--device` safety in scripted mode, and Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeBundle } from '../helpers/bundles.js';
import { cliEnv, interruptMidCopy, PROJECT_ROOT, runCli } from '../helpers/cli.js';
import { mountedExt4 } from '../helpers/loop-fs.js';
import { gitRepo, tempDir } from '../helpers/tmp.js';

const recorded = (name: string) => path.join(PROJECT_ROOT, 'fixtures/drivelist', name);

async function smallInputs(shardBytes?: number) {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'configuration.nix': '{ ... }: { }\n' });
  const bundle = await writeBundle(path.join(await tempDir(), 'tiny'), shardBytes ? { shards: 2, shardBytes } : {});
  return { repo, bundle };
}

describe('drives', () => {
  it('lists the USB stick as a candidate and the NVMe system disk as excluded, with the reason', async () => {
    const human = await runCli(['drives'], { env: cliEnv({ DUBNIUM_SEED_DRIVELIST_FILE: recorded('laptop-nvme-usb-iso.json') }) });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/SanDisk/);
    expect(human.stdout).toMatch(/Excluded/i);
    const json = JSON.parse((await runCli(['drives', '--json'], { env: cliEnv({ DUBNIUM_SEED_DRIVELIST_FILE: recorded('laptop-nvme-usb-iso.json') }) })).stdout);
    expect(json.candidates.map((c: { device: string }) => c.device)).toEqual(['/dev/sda']);
    const nvme = json.excluded.find((e: { device: string }) => e.device === '/dev/nvme0n1');
    expect(nvme.reasons.map((r: { code: string }) => r.code)).toContain('system-drive');
  });

  it('excludes zram as a virtual device although drivelist calls it removable', async () => {
    const json = JSON.parse((await runCli(['drives', '--json'], { env: cliEnv({ DUBNIUM_SEED_DRIVELIST_FILE: recorded('this-vm.json') }) })).stdout);
    expect(json.candidates).toEqual([]);
    const zram = json.excluded.find((e: { device: string }) => e.device === '/dev/zram0');
    expect(zram.reasons.map((r: { code: string }) => r.code)).toContain('virtual-device');
  });
});

describe('build --image and verify FILE', () => {
  it('makes an ext4 partition image without mounting anything, and verify reads it', async () => {
    const { repo, bundle } = await smallInputs();
    const image = path.join(await tempDir(), 'seed.img');
    const built = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--image', image, '--json']);
    expect(built.stderr).not.toMatch(/internal error/);
    expect(built.code).toBe(0);
    expect(JSON.parse(built.stdout).image).toBe(image);
    expect(execFileSync('blkid', ['-o', 'value', '-s', 'LABEL', image], { encoding: 'utf8' }).trim()).toBe('DUBNIUM-SEED');
    const verified = await runCli(['verify', image, '--json']);
    expect(verified.code).toBe(0);
    const report = JSON.parse(verified.stdout);
    expect(report.ok).toBe(true);
    expect(report.media).toMatchObject({ filesystem: 'ext4', label: 'DUBNIUM-SEED' });
    expect(report.files).toBeGreaterThan(bundle.files.length);
  });

  it('refuses a label longer than the filesystem allows, before writing', async () => {
    const { repo, bundle } = await smallInputs();
    const image = path.join(await tempDir(), 'seed.img');
    const result = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--image', image, '--filesystem', 'fat', '--label', 'DUBNIUM-SEED-X']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/11/);
    expect(existsSync(image)).toBe(false);
  });
});

describe('--device in scripted mode', () => {
  it('needs --yes, and refuses the system disk even with every allow flag', async () => {
    const { repo, bundle } = await smallInputs();
    const noYes = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--device', '/dev/loop0']);
    expect(noYes.code).toBe(2);
    expect(noYes.stderr).toMatch(/--yes/);
    const root = execFileSync('findmnt', ['-n', '-o', 'SOURCE', '/'], { encoding: 'utf8' }).trim();
    const disk = `/dev/${execFileSync('lsblk', ['-n', '-o', 'PKNAME', root], { encoding: 'utf8' }).trim() || path.basename(root)}`;
    const system = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--device', disk, '--yes', '--allow-fixed-disk', '--allow-large']);
    expect(system.code).toBe(2);
    expect(system.stderr).toMatch(/system/i);
  });
});

describe('Ctrl-C', () => {
  it('during a build stops cleanly: exit 130, no manifest, no temporary files', async () => {
    const { repo, bundle } = await smallInputs(160 * 1024 * 1024);
    const mount = await mountedExt4(512);
    const result = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', mount, '--no-verify'], {
      onSpawn: (child) => interruptMidCopy(child, path.join(mount, 'models', 'tiny'), 4 * 1024 * 1024, 'SIGINT'),
    });
    expect(result.code).toBe(130);
    expect(result.stderr).toMatch(/cancelled/i);
    expect(existsSync(path.join(mount, 'dubnium-seed.json'))).toBe(false);
    const leftovers = execFileSync('find', [mount, '-name', '*.dubnium-partial'], { encoding: 'utf8' }).trim();
    expect(leftovers).toBe('');
    // The next run finishes the seed.
    const rerun = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', mount]);
    expect(rerun.code).toBe(0);
  });
});
