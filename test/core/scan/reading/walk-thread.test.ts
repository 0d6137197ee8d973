/**
 * The walk of a large container file on its own thread (walk-thread.ts), against the built code (the
 * worker scripts exist only there): the same report as the walk on the calling thread, its progress
 * relayed, and a cancelled scan stopped with CancelledError. The image is over FULL_SCAN_LIMIT (an
 * incompressible file in it), so it is walked as a large file rather than held.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { scanPaths } from '../../../../src/core/scan/index.js';
import type { Finding } from '../../../../src/core/types.js';
import { githubToken, sshKey } from '../../../helpers/credentials.js';
import { compressibleText, mksquashfs, nixLikeTree, storeHash } from '../../../helpers/squashfs-image.js';
import { tempDir } from '../../../helpers/tmp.js';

const ROOT = fileURLToPath(new URL('../../../..', import.meta.url));

async function built(): Promise<{ scan: typeof scanPaths; CancelledError: new (...args: never[]) => Error }> {
  const scan = ((await import(path.join(ROOT, 'dist/core/scan/index.js'))) as typeof import('../../../../src/core/scan/index.js')).scanPaths;
  const { CancelledError } = (await import(path.join(ROOT, 'dist/errors.js'))) as typeof import('../../../../src/errors.js');
  return { scan, CancelledError };
}

const quiet = { operatorSecrets: false } as const;

function shape(findings: Finding[]): string[] {
  return findings.map((finding) => `${finding.rule} ${finding.fingerprint} ${(finding.chain ?? [finding.inner ?? '']).join(' › ')} ${finding.line ?? ''} ${finding.offset ?? ''} ${finding.allowed?.reason ?? ''}`);
}

/** A store-like squashfs over 8 MiB: keys in small members (pooled), a token in a large one (streamed). */
async function image(): Promise<{ file: string; token: string }> {
  const dir = await tempDir();
  const root = path.join(dir, 'root');
  nixLikeTree(root, sshKey('ed25519').privateKey);
  const token = githubToken();
  const share = `/nix/store/${storeHash()}-docs/share`;
  mkdirSync(path.join(root, share), { recursive: true });
  writeFileSync(path.join(root, share, 'notes.txt'), `export GITHUB_TOKEN=${token}\n`);
  for (let index = 0; index < 300; index++) writeFileSync(path.join(root, share, `page-${index}.txt`), compressibleText((index * 53) % 4000, `page${index}`));
  // Incompressible, so the image itself is over FULL_SCAN_LIMIT.
  writeFileSync(path.join(root, share, 'blob.bin'), randomBytes(10 * 1024 * 1024));
  writeFileSync(path.join(root, share, 'large.txt'), Buffer.concat([compressibleText(9 * 1024 * 1024, 'large'), Buffer.from(`\nGITHUB_TOKEN=${token}\n`)]));
  const file = path.join(dir, 'store.squashfs');
  mksquashfs(root, file, ['-comp', 'zstd']);
  expect(statSync(file).size).toBeGreaterThan(8 * 1024 * 1024);
  return { file, token };
}

describe('walk thread', () => {
  it('gives the calling thread\'s report for a large image, and relays its progress', async () => {
    const { scan } = await built();
    const { file } = await image();
    const here = await scan([file], { ...quiet, walkThread: false });
    const files: number[] = [];
    const threaded = await scan([file], { ...quiet, onProgress: (progress) => files.push(progress.files ?? 0) });
    expect(shape(threaded.findings)).toEqual(shape(here.findings));
    expect(threaded.files).toBe(here.files);
    expect(threaded.problems).toEqual(here.problems);
    expect(here.files).toBeGreaterThan(300);
    // The key files of the tree and the token in a small and in a large member.
    expect(threaded.findings.filter((finding) => finding.kind !== 'unscanned').length).toBeGreaterThanOrEqual(3);
    expect(threaded.findings.filter((finding) => finding.kind === 'unscanned')).toEqual([]);
    // Members counted from inside the image came across from the thread.
    expect(Math.max(...files)).toBeGreaterThan(0);
  });

  it('stops a cancelled walk with CancelledError', async () => {
    const { scan, CancelledError } = await built();
    const { file } = await image();
    const controller = new AbortController();
    let seen = 0;
    const scanning = scan([file], {
      ...quiet,
      signal: controller.signal,
      onProgress: (progress) => {
        // Cancelled once the walk inside the image is under way.
        if ((progress.files ?? 0) > 0 && seen++ === 0) controller.abort();
      },
    });
    await expect(scanning).rejects.toBeInstanceOf(CancelledError);
  });
});
