/**
 * The member pool (reading/member-pool.ts): an image's members decoded and scanned on worker threads
 * from their compressed blocks must give the very report the walking thread gives when it reads them
 * itself, in every compression, with fragments shared by many files, uncompressed and sparse blocks,
 * containers inside members, broken blocks and limits. Worker threads run compiled modules only, so
 * these tests use the build (`npm run build`), as the CLI tests do.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { scanPaths } from '../../../../src/core/scan/index.js';
import type { Finding } from '../../../../src/core/types.js';
import { githubToken, sshKey } from '../../../helpers/credentials.js';
import { compressibleText, mksquashfs, nixLikeTree, storeHash } from '../../../helpers/squashfs-image.js';
import { tempDir } from '../../../helpers/tmp.js';

async function builtScanPaths(): Promise<typeof scanPaths> {
  const built = path.join(fileURLToPath(new URL('../../../..', import.meta.url)), 'dist/core/scan/index.js');
  return ((await import(built)) as typeof import('../../../../src/core/scan/index.js')).scanPaths;
}

const quiet = { operatorSecrets: false } as const;

/** A store-like tree with keys in a plain file, a gzip file, a fragment-sized file and a big one. */
function tree(root: string): { key: string; token: string; gzPath: string; smallPath: string; largePath: string } {
  const key = sshKey('ed25519').privateKey;
  nixLikeTree(root, key);
  const token = githubToken();
  const share = `/nix/store/${storeHash()}-docs/share`;
  mkdirSync(path.join(root, share, 'man'), { recursive: true });
  // A small file whose tail shares a fragment with its neighbours, a token in it.
  const smallPath = `${share}/notes.txt`;
  writeFileSync(path.join(root, smallPath), `export GITHUB_TOKEN=${token}\n`);
  // A gzip member (a container inside a member), the key inside it.
  const plain = path.join(root, share, 'man', 'keys.txt');
  writeFileSync(plain, Buffer.concat([compressibleText(20000, 'man'), Buffer.from(key)]));
  execFileSync('gzip', ['-9', plain]);
  for (let index = 0; index < 200; index++) writeFileSync(path.join(root, share, `page-${index}.txt`), compressibleText(index * 37 % 3000, `page${index}`));
  // Over the 8 MiB a worker holds: streamed on the walking thread, its blocks decoded by the pool (or there).
  const largePath = `/nix/store/${storeHash()}-large/share/large.txt`;
  mkdirSync(path.dirname(path.join(root, largePath)), { recursive: true });
  writeFileSync(path.join(root, largePath), Buffer.concat([compressibleText(9 * 1024 * 1024, 'large'), Buffer.from(`\nGITHUB_TOKEN=${token}\n`)]));
  return { key, token, gzPath: `${share}/man/keys.txt.gz`, smallPath, largePath };
}

/** What a report says, the notes left out (a broken block's message names its position on one path only). */
function shape(findings: Finding[]): string[] {
  return findings.map((finding) => `${finding.rule} ${finding.fingerprint} ${(finding.chain ?? [finding.inner ?? '']).join(' › ')} ${finding.line ?? ''} ${finding.offset ?? ''}`);
}

describe('member pool', () => {
  it.each([
    ['zstd', ['-comp', 'zstd']],
    ['xz', ['-comp', 'xz']],
    ['gzip, 4K blocks', ['-comp', 'gzip', '-b', '4K']],
    ['lz4', ['-comp', 'lz4']],
    ['nothing compressed', ['-comp', 'gzip', '-noI', '-noD', '-noF']],
    ['every tail in a fragment', ['-comp', 'zstd', '-always-use-fragments']],
  ])('gives the walking thread\'s report for a %s image', async (_label, args) => {
    const scan = await builtScanPaths();
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    const { gzPath, smallPath, largePath } = tree(root);
    const image = path.join(dir, 'store.squashfs');
    mksquashfs(root, image, args);
    const alone = await scan([image], { ...quiet, memberThreads: 0 });
    // Two workers decode the large file's blocks too; a lone worker leaves them to the walking thread.
    for (const memberThreads of [1, 2]) {
      const pooled = await scan([image], { ...quiet, memberThreads });
      expect(shape(pooled.findings)).toEqual(shape(alone.findings));
      expect(pooled.files).toBe(alone.files);
      const chains = pooled.findings.map((finding) => (finding.chain ?? []).join(' › '));
      expect(chains).toContain(`${gzPath} › keys.txt`);
      expect(chains).toContain(smallPath);
      expect(chains).toContain(largePath);
      expect(pooled.findings.filter((finding) => finding.kind === 'unscanned')).toEqual([]);
    }
  });

  it('reports a member whose blocks do not decode as unscanned, as the walking thread does, and scans the rest', async () => {
    const scan = await builtScanPaths();
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    tree(root);
    // A file of many blocks, so that garbled frames fall in data blocks.
    const victim = `/nix/store/${storeHash()}-victim/data.txt`;
    mkdirSync(path.dirname(path.join(root, victim)), { recursive: true });
    writeFileSync(path.join(root, victim), compressibleText(300 * 1024, 'victim'));
    const clean = path.join(dir, 'store.squashfs');
    mksquashfs(root, clean, ['-comp', 'zstd', '-no-fragments']);
    const zbytes = readFileSync(clean);
    // Every data block is a zstd frame (28 b5 2f fd): garble three in the second quarter of the data.
    const frames: number[] = [];
    for (let index = zbytes.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); index >= 0; index = zbytes.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), index + 4)) frames.push(index);
    expect(frames.length).toBeGreaterThan(20);
    const garbled = Buffer.from(zbytes);
    for (const frame of frames.slice(Math.floor(frames.length / 4), Math.floor(frames.length / 4) + 3)) garbled.fill(0xee, frame + 6, frame + 40);
    const bad = path.join(dir, 'garbled.squashfs');
    writeFileSync(bad, garbled);
    const alone = await scan([bad], { ...quiet, memberThreads: 0 });
    const pooled = await scan([bad], { ...quiet, memberThreads: 2 });
    const unscanned = pooled.findings.filter((finding) => finding.kind === 'unscanned');
    expect(unscanned.length).toBeGreaterThan(0);
    expect(shape(pooled.findings)).toEqual(shape(alone.findings));
    // The members after the broken ones are still read: the keys and the token elsewhere are found.
    expect(pooled.findings.filter((finding) => finding.kind !== 'unscanned').length).toBeGreaterThan(2);
    expect(pooled.files).toBe(alone.files);
  });

  it('holds to the walk\'s limits for members scanned on the pool', async () => {
    const scan = await builtScanPaths();
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    tree(root);
    const image = path.join(dir, 'store.squashfs');
    mksquashfs(root, image, ['-comp', 'zstd']);
    const limits = { maxExpandedBytes: 2 * 1024 * 1024 };
    const alone = await scan([image], { ...quiet, limits, memberThreads: 0 });
    const pooled = await scan([image], { ...quiet, limits, memberThreads: 2 });
    for (const report of [alone, pooled]) expect(report.findings.map((finding) => finding.rule)).toContain('unscanned-limit');
  });
});

describe('member pool: the walking thread takes jobs itself while the workers are behind', () => {
  it('scans a job on the walking thread exactly as a worker does, fragments shared with other members or not', async () => {
    const dist = path.join(fileURLToPath(new URL('../../../..', import.meta.url)), 'dist/core/scan');
    const { MemberPool } = (await import(path.join(dist, 'reading/member-pool.js'))) as typeof import('../../../../src/core/scan/reading/member-pool.js');
    const { squashfs } = (await import(path.join(dist, 'formats/squashfs.js'))) as typeof import('../../../../src/core/scan/formats/squashfs.js');
    const { fileSource } = (await import(path.join(dist, 'formats/byte-source.js'))) as typeof import('../../../../src/core/scan/formats/byte-source.js');
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    const { smallPath } = tree(root);
    const image = path.join(dir, 'store.squashfs');
    mksquashfs(root, image, ['-comp', 'zstd', '-always-use-fragments']);
    const pool = MemberPool.start({ operatorSecrets: [], allow: new Map() }, 1)!;
    const source = await fileSource(image);
    try {
      let jobs = 0;
      const seen: string[] = [];
      for await (const member of squashfs.members(source, { jobsUpTo: 8 * 1024 * 1024, unreadable: () => undefined, problem: () => undefined })) {
        if (!member.job) {
          for await (const chunk of member.stream()) void chunk;
          continue;
        }
        jobs += 1;
        const target = { path: 'store.squashfs', inner: member.name, chain: [member.name] };
        const size = member.job.parts.reduce((sum, part) => sum + part.length, 0);
        const here = await pool.scanHere(target, member.job, {});
        await pool.reserve(size);
        const pending = pool.scan(target, member.job, {}, size);
        pool.flush();
        const there = await pending;
        expect(shape(here.findings), member.name).toEqual(shape(there.findings));
        expect(here.files).toBe(there.files);
        expect(here.unencrypted?.fingerprint).toBe(there.unencrypted?.fingerprint);
        seen.push(...here.findings.map((finding) => finding.inner ?? ''));
      }
      expect(jobs).toBeGreaterThan(200);
      expect(pool.scannedOnWalkingThread).toBe(jobs);
      // The token in a file whose tail lies in a fragment block shared with its neighbours.
      expect(seen).toContain(smallPath);
    } finally {
      await source.close();
      await pool.close();
    }
  });
});
