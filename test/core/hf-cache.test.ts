import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import {
  createExpectedDigestHasher,
  expectedDigestFromBlobName,
  hfRepoOfSnapshot,
  isHfCacheRepo,
  listHfCacheRepos,
  listHfRevisions,
  repoIdFromFolderName,
  resolveHfSnapshot,
} from '../../src/core/hf-cache.js';
import { makeSafetensors, writeHfCache } from '../helpers/bundles.js';
import { tempDir } from '../helpers/tmp.js';

const REV_A = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
const REV_B = 'a1b2ffff00000000000000000000000000000000';
const REV_C = 'c0ffee0000000000000000000000000000000001';

function sha256sum(file: string): string {
  return execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0]!;
}

function gitHashObject(file: string): string {
  return execFileSync('git', ['hash-object', '--no-filters', file], { encoding: 'utf8' }).trim();
}

async function threeRevisions(): Promise<string> {
  const cache = await tempDir();
  await writeHfCache(cache, 'acme/tiny', { 'config.json': '{"v":1}' }, { revision: REV_A, refName: null });
  await writeHfCache(cache, 'acme/tiny', { 'config.json': '{"v":2}' }, { revision: REV_B, refName: 'pr/7' });
  const main = await writeHfCache(cache, 'acme/tiny', { 'config.json': '{"v":3}' }, { revision: REV_C });
  return main.repoDir;
}

describe('blob digests', () => {
  it('reads the algorithm from the blob name', () => {
    expect(expectedDigestFromBlobName('a'.repeat(64))).toEqual({ algorithm: 'sha256', hex: 'a'.repeat(64) });
    expect(expectedDigestFromBlobName('0'.repeat(40))).toEqual({ algorithm: 'git-sha1', hex: '0'.repeat(40) });
    expect(expectedDigestFromBlobName('A'.repeat(64))).toBeUndefined();
    expect(expectedDigestFromBlobName('abc.incomplete')).toBeUndefined();
  });

  it('names blobs as the hub does, checked against sha256sum and git hash-object', async () => {
    const cache = await tempDir();
    const weights = makeSafetensors([{ name: 'w', dtype: 'F32', shape: [64] }]);
    const written = await writeHfCache(cache, 'acme/tiny', { 'config.json': '{"model_type":"llama"}\n', 'model.safetensors': weights, 'sub/notes.txt': 'hi\n' });
    const blobs = path.join(written.repoDir, 'blobs');
    const lfs = written.blobs['model.safetensors']!;
    expect(lfs.algorithm).toBe('sha256');
    expect(lfs.blob).toBe(sha256sum(path.join(blobs, lfs.blob)));
    for (const relPath of ['config.json', 'sub/notes.txt']) {
      const small = written.blobs[relPath]!;
      expect(small.algorithm).toBe('git-sha1');
      expect(small.blob).toBe(gitHashObject(path.join(blobs, small.blob)));
    }
    // Snapshot entries are relative symlinks into blobs/, as huggingface_hub creates them.
    expect(await readlink(path.join(written.snapshotDir, 'model.safetensors'))).toBe(`../../blobs/${lfs.blob}`);
    expect(await readlink(path.join(written.snapshotDir, 'sub', 'notes.txt'))).toBe(`../../../blobs/${written.blobs['sub/notes.txt']!.blob}`);
    expect(await readFile(path.join(written.snapshotDir, 'sub', 'notes.txt'), 'utf8')).toBe('hi\n');
    expect(await readFile(path.join(written.repoDir, 'refs', 'main'), 'utf8')).toBe(written.revision);
  });

  it('checks streamed bytes against sha256 and git-sha1 digests', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'blob');
    const content = Buffer.from('some tokenizer bytes\n'.repeat(1000));
    await writeFile(file, content);
    for (const expected of [
      { algorithm: 'sha256' as const, hex: sha256sum(file) },
      { algorithm: 'git-sha1' as const, hex: gitHashObject(file) },
    ]) {
      const hasher = createExpectedDigestHasher(expected, content.length);
      hasher.update(content.subarray(0, 777));
      hasher.update(content.subarray(777));
      expect(hasher.check()).toEqual({ ok: true, actual: expected.hex });
      const flipped = Buffer.from(content);
      flipped[5] = flipped[5]! ^ 1;
      const bad = createExpectedDigestHasher(expected, content.length);
      bad.update(flipped);
      expect(bad.check().ok).toBe(false);
    }
  });
});

describe('cache layout', () => {
  it('parses repo folder names', () => {
    expect(repoIdFromFolderName('models--Qwen--Qwen2.5-0.5B')).toBe('Qwen/Qwen2.5-0.5B');
    expect(repoIdFromFolderName('models--gpt2')).toBe('gpt2');
    expect(repoIdFromFolderName('datasets--org--set')).toBeUndefined();
    expect(repoIdFromFolderName('models--a--b--c')).toBeUndefined();
    expect(repoIdFromFolderName('models----x')).toBeUndefined();
  });

  it('recognizes repository, snapshot and hub root folders', async () => {
    const repoDir = await threeRevisions();
    const cache = path.dirname(repoDir);
    expect(await isHfCacheRepo(repoDir)).toBe(true);
    expect(await isHfCacheRepo(cache)).toBe(false);
    expect(await hfRepoOfSnapshot(path.join(repoDir, 'snapshots', REV_A))).toBe(repoDir);
    expect(await hfRepoOfSnapshot(repoDir)).toBeUndefined();
    await writeHfCache(cache, 'other/model', { 'config.json': '{}' });
    await mkdir(path.join(cache, 'models--not-a-repo'));
    expect(await listHfCacheRepos(cache)).toEqual(['models--acme--tiny', 'models--other--model']);
    expect(await listHfRevisions(repoDir)).toEqual({ refs: { main: REV_C, 'pr/7': REV_B }, snapshots: [REV_A, REV_B, REV_C] });
  });
});

describe('resolveHfSnapshot', () => {
  it('follows refs/main by default', async () => {
    const repoDir = await threeRevisions();
    const snapshot = await resolveHfSnapshot(repoDir);
    expect(snapshot).toEqual({
      repoDir,
      repoId: 'acme/tiny',
      revision: REV_C,
      ref: 'main',
      snapshotDir: path.join(repoDir, 'snapshots', REV_C),
      blobsDir: path.join(repoDir, 'blobs'),
    });
  });

  it('picks a revision by ref name, full hash and unique prefix', async () => {
    const repoDir = await threeRevisions();
    expect((await resolveHfSnapshot(repoDir, 'pr/7')).revision).toBe(REV_B);
    expect((await resolveHfSnapshot(repoDir, REV_A)).revision).toBe(REV_A);
    expect((await resolveHfSnapshot(repoDir, 'a1b2c3')).revision).toBe(REV_A);
    expect((await resolveHfSnapshot(repoDir, 'C0FFEE')).revision).toBe(REV_C);
  });

  it('lists the available revisions when the requested one is missing', async () => {
    const repoDir = await threeRevisions();
    const error = await resolveHfSnapshot(repoDir, 'deadbeef').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UsageError);
    const message = (error as UsageError).message;
    expect(message).toContain('Revision "deadbeef" not found');
    expect(message).toContain(`main -> ${REV_C}`);
    expect(message).toContain(`pr/7 -> ${REV_B}`);
    expect(message).toContain(`snapshots: ${REV_A}, ${REV_B}, ${REV_C}`);
    await expect(resolveHfSnapshot(repoDir, 'dev')).rejects.toThrow(/Revision "dev" not found/);
  });

  it('refuses an ambiguous prefix and path tricks', async () => {
    const repoDir = await threeRevisions();
    await expect(resolveHfSnapshot(repoDir, 'a1b2')).rejects.toThrow(new RegExp(`ambiguous.*${REV_A}, ${REV_B}`));
    await expect(resolveHfSnapshot(repoDir, '../../etc')).rejects.toThrow(/Invalid revision/);
  });

  it('reports refs/main pointing to a missing snapshot', async () => {
    const repoDir = await threeRevisions();
    await rm(path.join(repoDir, 'snapshots', REV_C), { recursive: true });
    await expect(resolveHfSnapshot(repoDir)).rejects.toThrow(new RegExp(`refs/main points to ${REV_C}, but snapshots/${REV_C} is missing`));
  });

  it('without refs/main uses the only snapshot, and asks when there are several', async () => {
    const cache = await tempDir();
    const single = await writeHfCache(cache, 'acme/one', { 'config.json': '{}' }, { revision: REV_A, refName: null });
    expect((await resolveHfSnapshot(single.repoDir)).revision).toBe(REV_A);
    expect(existsSync(path.join(single.repoDir, 'refs'))).toBe(false);
    await writeHfCache(cache, 'acme/one', { 'config.json': '{"b":1}' }, { revision: REV_B, refName: null });
    await expect(resolveHfSnapshot(single.repoDir)).rejects.toThrow(/no refs\/main and 2 snapshots; pass --revision/);
  });

  it('refuses a folder that is not a model repository', async () => {
    const cache = await tempDir();
    const written = await writeHfCache(cache, 'acme/set', { 'data.csv': 'a,b\n' });
    await expect(resolveHfSnapshot(written.repoDir)).resolves.toMatchObject({ revision: written.revision });
    const renamed = path.join(cache, 'datasets--acme--set');
    execFileSync('mv', [written.repoDir, renamed]);
    await expect(resolveHfSnapshot(renamed)).rejects.toThrow(/not a Hugging Face model cache folder/);
  });
});
