/**
 * What a failing stick or disk does to `build`, for real: the seed's filesystem (or the model's)
 * on a loop device over the fault-injecting FUSE filesystem (test/helpers/fault-device.ts). Each
 * fault must end in one line naming the file and what to do, the documented exit code, no
 * manifest and no partial files where the media is still reachable; once the fault is gone, the
 * same build run again finishes the seed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeBundle, type WrittenBundle } from '../helpers/bundles.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { faultyExt4, startFaultDevice, type FaultDevice } from '../helpers/fault-device.js';
import { gitRepo, listTree, tempDir } from '../helpers/tmp.js';
import { MANIFEST_NAME, PARTIAL_SUFFIX } from '../../src/core/manifest.js';
import { buildSeed, type BuildOptions } from '../../src/core/build-seed.js';
import { UsageError } from '../../src/errors.js';
import { mountedExt4 } from '../helpers/loop-fs.js';

const MiB = 1024 * 1024;

function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function inputs(): Promise<{ repo: string; bundle: WrittenBundle }> {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'hosts/dubnium.nix': '{ ... }: { }\n' });
  const bundle = await writeBundle(path.join(await tempDir('dubnium-seed-models-'), 'tiny'), { shards: 3, shardBytes: 24 * MiB });
  return { repo, bundle };
}

/** The error line: the last line on stderr, without a stack trace anywhere. */
function errorLine(result: CliResult): string {
  expect(result.stderr).not.toMatch(/internal error|\n\s+at /);
  return result.stderr.trim().split('\n').at(-1)!;
}

function partials(root: string): string[] {
  return listTree(root).filter((entry) => entry.endsWith(PARTIAL_SUFFIX));
}

/** Whether a file can still be made in `dir` (not so once ext4 turned read-only after an I/O error). */
function writable(dir: string): boolean {
  try {
    writeFileSync(path.join(dir, 'probe'), '');
    rmSync(path.join(dir, 'probe'));
    return true;
  } catch {
    return false;
  }
}

/** Mount points of `device` and its partitions (none may outlive a build). */
function mountsOf(device: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[0] === device || fields[0]?.startsWith(`${device}p`))
    .map((fields) => fields[1]!);
}

/**
 * Fails every write from where the stick is being written now on, once `bytes` more have reached
 * it: mid-shard, wherever ext4 placed the shard (it spreads top-level folders at random).
 */
function failWritesAhead(fault: FaultDevice, bytes: number): () => void {
  return afterWrites(fault, bytes, () => fault.setFaults({ writeEioFrom: fault.status().last_write_end }));
}

/** Runs `action` once the device has taken `bytes` more writes than now (polled every few ms). */
function afterWrites(fault: FaultDevice, bytes: number, action: () => void): () => void {
  const start = fault.status().bytes_written;
  const timer = setInterval(() => {
    if (fault.status().bytes_written - start >= bytes) {
      clearInterval(timer);
      action();
    }
  }, 5);
  return () => clearInterval(timer);
}

describe('build --target on a stick that fails', () => {
  it('EIO on writes from an offset on: exit 3 naming the file, no manifest, no partial file; the rerun finishes', async () => {
    const { repo, bundle } = await inputs();
    const { fault, root } = await faultyExt4({ sizeMiB: 256 });
    // 30 MB/s: a shard takes most of a second to reach the stick, so the fault lands inside one.
    fault.setFaults({ writeBps: 30e6 });
    const cancel = failWritesAhead(fault, 30 * MiB);
    const failed = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', root]);
    cancel();
    expect(fault.status().failed_writes).toBeGreaterThan(0);
    expect(failed.code).toBe(3);
    expect(errorLine(failed)).toMatch(/^dubnium-seed: Could not write \S+ to the seed: (the stick reported an I\/O error \(EIO\)|the seed filesystem turned read-only after an I\/O error)\..*run the same build again\.$/);
    expect(existsSync(path.join(root, MANIFEST_NAME))).toBe(false);
    // Where the filesystem is still writable (ext4 did not abort its journal), the partial files are gone.
    if (writable(root)) expect(partials(root)).toEqual([]);

    // Replugged: mounted afresh, no manifest; the rerun keeps finished files and finishes the seed.
    fault.clearFaults();
    fault.unmount(root);
    const again = fault.mount(fault.device);
    expect(existsSync(path.join(again, MANIFEST_NAME))).toBe(false);
    const rerun = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', again, '--json']);
    expect(rerun.stderr).not.toMatch(/internal error/);
    expect(rerun.code).toBe(0);
    const report = JSON.parse(rerun.stdout);
    expect(report.reused.length).toBeGreaterThan(0);
    expect(report.verify.ok).toBe(true);
    expect(partials(again)).toEqual([]);
  });

  it('the stick unplugged mid-copy: exit 3, no manifest; replugged, the rerun finishes', async () => {
    const { repo, bundle } = await inputs();
    const { fault, root } = await faultyExt4({ sizeMiB: 256 });
    const cancel = afterWrites(fault, 30 * MiB, () => fault.setFaults({ unplugged: true }));
    const failed = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', root]);
    cancel();
    expect(fault.status().unplugged).toBe(true);
    expect(failed.code).toBe(3);
    expect(errorLine(failed)).toMatch(/^dubnium-seed: Could not write (\S+ )?to the seed: (the stick reported an I\/O error \(EIO\)|the seed filesystem turned read-only after an I\/O error)\..*run the same build again\.$/);

    // Replugged: the filesystem mounted afresh holds no manifest.
    fault.clearFaults();
    fault.unmount(root);
    const again = fault.mount(fault.device);
    expect(existsSync(path.join(again, MANIFEST_NAME))).toBe(false);
    const rerun = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', again, '--json']);
    expect(rerun.stderr).not.toMatch(/internal error/);
    expect(rerun.code).toBe(0);
    expect(JSON.parse(rerun.stdout).verify.ok).toBe(true);
    expect(partials(again)).toEqual([]);
  });
});

describe('build --device on a stick that fails', () => {
  /** The stick's seed partition: the first, as a blank stick gets a fresh table. */
  function seedPartition(device: string): { node: string } {
    const table = JSON.parse(sh('sfdisk', ['--json', device])) as { partitiontable: { partitions: { node: string }[] } };
    return { node: table.partitiontable.partitions[0]!.node };
  }

  /** Waits until the build has mounted the seed partition it made on `device`. */
  async function untilMounted(device: string): Promise<void> {
    for (let tries = 0; mountsOf(device).length === 0; tries += 1) {
      if (tries > 2000) throw new Error('the build never mounted the seed partition');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  const deviceBuild = (device: string, repo: string, bundle: WrittenBundle) => runCli(['build', '--repo', repo, '--model', bundle.dir, '--device', device, '--yes', '--json']);

  it('EIO on writes from an offset on: exit 3 naming the file, unmounted, no manifest; the rerun finishes', async () => {
    const { repo, bundle } = await inputs();
    // 30 MB/s: the copy takes seconds, time enough to place the fault once the partition exists.
    const fault = await startFaultDevice({ sizeMiB: 256, faults: { writeBps: 30e6 } });
    const build = deviceBuild(fault.device, repo, bundle);
    await untilMounted(fault.device);
    const seed = seedPartition(fault.device);
    const cancel = failWritesAhead(fault, 30 * MiB);
    const failed = await build;
    cancel();
    expect(fault.status().failed_writes).toBeGreaterThan(0);
    expect(failed.code).toBe(3);
    expect(JSON.parse(failed.stdout).error.message).toMatch(/^Could not write \S+ to the seed: (the stick reported an I\/O error \(EIO\)|the seed filesystem turned read-only after an I\/O error)\./);
    expect(mountsOf(fault.device)).toEqual([]);

    fault.clearFaults();
    // The stick as the next run finds it: no manifest (partial files, if ext4 turned read-only
    // before they could be removed, are cleared by the rerun).
    const look = fault.mount(seed.node);
    expect(existsSync(path.join(look, MANIFEST_NAME))).toBe(false);
    fault.unmount(look);

    const rerun = await deviceBuild(fault.device, repo, bundle);
    expect(rerun.stderr).not.toMatch(/internal error/);
    expect(rerun.code).toBe(0);
    const report = JSON.parse(rerun.stdout);
    expect(report.created).toBe(false);
    expect(report.verify.ok).toBe(true);
    expect(mountsOf(fault.device)).toEqual([]);
    const after = fault.mount(seed.node);
    expect(partials(after)).toEqual([]);
  });

  it('the stick unplugged mid-copy: exit 3 and nothing left mounted; replugged, the rerun finishes', async () => {
    const { repo, bundle } = await inputs();
    const fault = await startFaultDevice({ sizeMiB: 256, faults: { writeBps: 30e6 } });
    const build = deviceBuild(fault.device, repo, bundle);
    await untilMounted(fault.device);
    const cancel = afterWrites(fault, 30 * MiB, () => fault.setFaults({ unplugged: true }));
    const failed = await build;
    cancel();
    expect(fault.status().unplugged).toBe(true);
    expect(failed.code).toBe(3);
    expect(JSON.parse(failed.stdout).error.message).toMatch(/^Could not write (\S+ )?to the seed: .*run the same build again\.$/);
    expect(mountsOf(fault.device)).toEqual([]);
    // Unmounted, not detached lazily: the build closed every file on the stick first.
    expect(failed.stderr).not.toMatch(/still in use/);

    fault.clearFaults();
    const rerun = await deviceBuild(fault.device, repo, bundle);
    expect(rerun.stderr).not.toMatch(/internal error/);
    expect(rerun.code).toBe(0);
    expect(JSON.parse(rerun.stdout).verify.ok).toBe(true);
    expect(mountsOf(fault.device)).toEqual([]);
  });
});

describe("build when the operator's disk fails", () => {
  it('EIO reading a model shard: exit 2 naming the shard, no manifest, no partial file; the rerun finishes', async () => {
    const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n' });
    const { fault, root: disk } = await faultyExt4({ sizeMiB: 160, label: 'MODELS' });
    const bundle = await writeBundle(path.join(disk, 'tiny'), { shards: 2, shardBytes: 24 * MiB });
    const shard = path.join(bundle.dir, bundle.shards[1]!);
    // Remount, so that the shard is read from the device, not from the page cache.
    fault.unmount(disk);
    const models = fault.mount(fault.device);
    // Where the shard's byte 12 MiB lies on the device: the second half of the shard, past its
    // header (which planning reads). The shard may be in several extents (ext4 interleaves files
    // written side by side), so the extent holding that byte is looked up.
    const extents = [...sh('filefrag', ['-e', '-b1024', path.join(models, 'tiny', bundle.shards[1]!)]).matchAll(/^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):/gm)].map(
      (match) => ({ logical: Number(match[1]) * 1024, end: (Number(match[2]) + 1) * 1024, physical: Number(match[3]) * 1024 }),
    );
    const holding = extents.find((extent) => extent.logical <= 12 * MiB && 12 * MiB < extent.end)!;
    const faultAt = holding.physical + (12 * MiB - holding.logical);
    fault.setFaults({ readEio: [faultAt, faultAt + Math.min(MiB, holding.end - 12 * MiB)] });

    const target = path.join(await tempDir(), 'seed');
    const failed = await runCli(['build', '--repo', repo, '--model', path.join(models, 'tiny'), '--target', target]);
    expect(fault.status().failed_reads).toBeGreaterThan(0);
    expect(failed.code).toBe(2);
    const line = errorLine(failed);
    expect(line).toContain(`Could not read ${path.join(models, 'tiny', path.basename(shard))}: the disk holding it reported an I/O error (EIO)`);
    expect(line).toMatch(/run the same build again\.$/);
    expect(existsSync(path.join(target, MANIFEST_NAME))).toBe(false);
    expect(partials(target)).toEqual([]);

    fault.clearFaults();
    const rerun = await runCli(['build', '--repo', repo, '--model', path.join(models, 'tiny'), '--target', target, '--json']);
    expect(rerun.code).toBe(0);
    expect(JSON.parse(rerun.stdout).verify.ok).toBe(true);
  });
});

/** Takes every free block of the filesystem holding `dir` (created), with fallocate, in halving pieces. */
function fillUp(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (let piece = 0; ; piece += 1) {
    const { bavail, bsize } = statfsSync(dir);
    let size = bavail * bsize;
    for (; size >= 64 * 1024; size = Math.floor(size / 2 / 4096) * 4096) {
      try {
        execFileSync('fallocate', ['-l', String(size), path.join(dir, `piece-${piece}`)], { stdio: 'ignore' });
        break;
      } catch {
        // the extent tree needs blocks too: try half as much
      }
    }
    if (size < 64 * 1024) return;
  }
}

describe('build when the seed filesystem fills up', () => {
  it('ENOSPC mid-copy (filled by another program after the free-space check): UsageError (exit 2) naming the file, no manifest, no partial file; the rerun finishes', async () => {
    const { repo, bundle } = await inputs();
    const root = await mountedExt4(200);
    const filler = path.join(root, 'filler');
    let filled = false;
    const options: BuildOptions = {
      target: root,
      profile: null,
      source: { repo, includeUntracked: false, plainFolder: false, submodules: 'refuse' },
      models: [{ path: bundle.dir }],
      modelStore: '/var/lib/dubnium/models',
      scan: { allowlist: [], operatorSecrets: false },
      verify: true,
      onProgress: (progress) => {
        if (filled || progress.phase !== 'copy' || progress.bytes < 30 * MiB) return;
        filled = true;
        // Synchronous, inside the build's own progress callback: the rest of the copy meets a full disk.
        fillUp(filler);
      },
    };
    const failure = await buildSeed(options).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(filled).toBe(true);
    expect(failure).toBeInstanceOf(UsageError);
    expect((failure as UsageError).exitCode).toBe(2);
    expect((failure as UsageError).message).toMatch(/^No space left on the seed while writing models\/tiny\/model-0000\d-of-00003\.safetensors: .*run the same build again; finished files are kept\.$/);
    expect(existsSync(path.join(root, MANIFEST_NAME))).toBe(false);
    expect(partials(root)).toEqual([]);

    rmSync(filler, { recursive: true });
    const rerun = await buildSeed({ ...options, onProgress: undefined });
    expect(rerun.reused.length).toBeGreaterThan(0);
    expect(rerun.verify?.ok).toBe(true);
    expect(partials(root)).toEqual([]);
  });
});
