/**
 * Ctrl-C and SIGTERM stop `build` and `verify` within a second wherever they are: in the copy of a
 * large shard, in the read-back verify, in the hashing of a verify. The process exits 130, removes
 * its partial files and finalizes nothing. The disks are slowed down with the fault device's
 * bandwidth limit, so that each phase lasts seconds on any machine.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeBundle } from '../helpers/bundles.js';
import { runCli } from '../helpers/cli.js';
import { faultyExt4 } from '../helpers/fault-device.js';
import { gitRepo, listTree, tempDir } from '../helpers/tmp.js';
import { MANIFEST_NAME, PARTIAL_SUFFIX } from '../../src/core/manifest.js';

const MiB = 1024 * 1024;
/** The limit is one second; the margin is for a loaded test machine. */
const DEADLINE_MS = 1500;

/** Sends `signal` once `ready()` holds (polled), and records when. */
function signalWhen(ready: () => boolean, signal: NodeJS.Signals): { onSpawn: (child: ChildProcess) => void; sentAt: () => number | undefined } {
  let sentAt: number | undefined;
  return {
    onSpawn: (child) => {
      const timer = setInterval(() => {
        if (!ready()) return;
        clearInterval(timer);
        sentAt = Date.now();
        child.kill(signal);
      }, 5);
      child.on('exit', () => clearInterval(timer));
    },
    sentAt: () => sentAt,
  };
}

function partials(root: string): string[] {
  return listTree(root).filter((entry) => entry.endsWith(PARTIAL_SUFFIX));
}

async function slowModel(readBps: number) {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n' });
  const { fault, root } = await faultyExt4({ sizeMiB: 200, label: 'MODELS' });
  const bundle = await writeBundle(path.join(root, 'tiny'), { shards: 1, shardBytes: 96 * MiB });
  // Remounted so the shard comes from the (slow) device, not from the page cache.
  fault.unmount(root);
  const models = fault.mount(fault.device);
  fault.setFaults({ readBps });
  return { repo, model: path.join(models, path.basename(bundle.dir)), fault };
}

describe.each(['SIGTERM', 'SIGINT'] as const)('%s', (signal) => {
  it('stops build in the copy of a large shard: exit 130 within a second, no manifest, no partial file', async () => {
    const { repo, model } = await slowModel(16e6);
    const target = path.join(await tempDir(), 'seed');
    const shardDir = path.join(target, 'models', 'tiny');
    // Signalled once the shard's partial file holds 8 MiB: mid-copy of a shard that takes seconds.
    const trigger = signalWhen(() => {
      const partial = existsSync(shardDir) ? readdirSync(shardDir).find((name) => name.endsWith(PARTIAL_SUFFIX)) : undefined;
      return partial !== undefined && (statSync(path.join(shardDir, partial), { throwIfNoEntry: false })?.size ?? 0) > 8 * MiB;
    }, signal);
    const result = await runCli(['build', '--repo', repo, '--model', model, '--target', target], { onSpawn: trigger.onSpawn });
    const elapsed = Date.now() - trigger.sentAt()!;
    expect(result.stderr).not.toMatch(/internal error/);
    expect(result.code).toBe(130);
    expect(elapsed).toBeLessThan(DEADLINE_MS);
    expect(result.stderr.trim().split('\n').at(-1)).toBe('dubnium-seed: Build cancelled: no manifest was written; run the same build again to finish the seed.');
    expect(existsSync(path.join(target, MANIFEST_NAME))).toBe(false);
    expect(partials(target)).toEqual([]);
    expect(existsSync(shardDir) ? listTree(shardDir).filter((name) => name.endsWith('.safetensors')) : []).toEqual([]);
  });

  it('stops verify in the middle of hashing: exit 130 within a second, no report', async () => {
    const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n' });
    const bundle = await writeBundle(path.join(await tempDir(), 'tiny'), { shards: 2, shardBytes: 48 * MiB });
    const { fault, root } = await faultyExt4({ sizeMiB: 200 });
    const built = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', root, '--no-verify']);
    expect(built.code).toBe(0);
    fault.setFaults({ readBps: 16e6 });
    const before = fault.status().bytes_read;
    // Signalled once verify has read 8 MiB through the slow device: deep inside the shards.
    const trigger = signalWhen(() => fault.status().bytes_read - before > 8 * MiB, signal);
    const result = await runCli(['verify', root, '--json'], { onSpawn: trigger.onSpawn });
    const elapsed = Date.now() - trigger.sentAt()!;
    expect(result.stderr).not.toMatch(/internal error/);
    expect(result.code).toBe(130);
    expect(elapsed).toBeLessThan(DEADLINE_MS);
    expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, exitCode: 130 });
  });
});

it('stops build in its read-back verify: exit 130 within a second (the seed was finalized before the verify began)', async () => {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n' });
  const bundle = await writeBundle(path.join(await tempDir(), 'tiny'), { shards: 2, shardBytes: 48 * MiB });
  const { fault, root } = await faultyExt4({ sizeMiB: 200 });
  const args = ['build', '--repo', repo, '--model', bundle.dir, '--target', root];
  // The read-back of a file written in this run follows its copy, and the finalize's flushes wait
  // behind it on the stick, so such a build has next to nothing left to read once its verify
  // begins. A shard kept from an interrupted run is read back by the verify alone: a first build is
  // stopped once one shard is complete, and the second one keeps that shard and reads it, 48 MiB
  // at 16 MB/s, in its verify.
  const shardDir = path.join(root, 'models', 'tiny');
  const firstShardDone = () => existsSync(shardDir) && readdirSync(shardDir).some((name) => name.endsWith('.safetensors'));
  const first = await runCli([...args, '--no-verify'], { onSpawn: signalWhen(firstShardDone, 'SIGTERM').onSpawn });
  expect(first.code).toBe(130);
  fault.setFaults({ readBps: 16e6 });
  let stderr = '';
  let verifyFrom: number | undefined;
  const trigger = signalWhen(() => {
    if (verifyFrom === undefined && /==> verify/.test(stderr)) verifyFrom = fault.status().bytes_read;
    return verifyFrom !== undefined && fault.status().bytes_read - verifyFrom > 4 * MiB;
  }, 'SIGTERM');
  const result = await runCli(args, {
    onSpawn: (child) => {
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      trigger.onSpawn(child);
    },
  });
  const elapsed = Date.now() - trigger.sentAt()!;
  expect(result.stderr).toMatch(/ok copy: 1 written, 8 kept/);
  expect(result.code).toBe(130);
  expect(elapsed).toBeLessThan(DEADLINE_MS);
  expect(existsSync(path.join(root, MANIFEST_NAME))).toBe(true);
  expect(partials(root)).toEqual([]);
});
