/**
 * The container walker's bounds and bookkeeping, on archives made with the real tools: a nested zip
 * bomb ends within seconds at a limit, each limit from the options is honoured and named, an
 * `unscanned` finding can be allowlisted by its stable fingerprint, spool files never outlive a
 * scan, and the build's push-fed gate unpacks a large archive it was given chunk by chunk.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLeakGate, scanPaths } from '../../../../src/core/scan/index.js';
import { ageKeyFile, githubToken } from '../../../helpers/credentials.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

function spools(): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith('dubnium-scan-'));
}

/** 4 levels of zips, 10 entries each, 50 MiB of zeros at the bottom (~50 GiB expanded). */
async function zipBomb(): Promise<string> {
  const dir = await tempDir();
  writeFileSync(path.join(dir, 'z'), Buffer.alloc(50 * 1024 * 1024));
  execFileSync('zip', ['-q', 'level4.zip', 'z'], { cwd: dir });
  for (let level = 3; level >= 1; level--) {
    const names = Array.from({ length: 10 }, (_, index) => `c${index}.zip`);
    for (const name of names) execFileSync('cp', [`level${level + 1}.zip`, name], { cwd: dir });
    execFileSync('zip', ['-q', `level${level}.zip`, ...names], { cwd: dir });
  }
  return path.join(dir, 'level1.zip');
}

describe('container walker limits', () => {
  it('a nested zip bomb ends within seconds with an unscanned limit finding', async () => {
    const bomb = await zipBomb();
    const started = Date.now();
    const report = await scanPaths([bomb], quiet);
    const seconds = (Date.now() - started) / 1000;
    // Unbounded, this is ~50 GiB of inflating (minutes even unloaded); a loaded CI machine gets slack.
    expect(seconds).toBeLessThan(60);
    expect(report.findings).toHaveLength(1);
    expect(report.findings[0]).toMatchObject({ path: 'level1.zip', kind: 'unscanned', rule: 'unscanned-limit' });
    expect(report.findings[0]!.note).toMatch(/scan\.limits\.max(Ratio|ExpandedBytes)/);
  }, 180_000);

  it('honours maxDepth, maxExpandedBytes from the options, naming the limit and how to raise it', async () => {
    const root = await tempDir();
    const work = await tempDir();
    const token = githubToken('ghp');
    await writeTree(work, { 'env': `GH=${token}\n` });
    execFileSync('zip', ['-q', 'a.zip', 'env'], { cwd: work });
    execFileSync('zip', ['-q', '-0', 'b.zip', 'a.zip'], { cwd: work });
    execFileSync('tar', ['-czf', path.join(root, 'deep.tar.gz'), '-C', work, 'b.zip']);
    // Default limits: found three levels down.
    const found = await scanPaths([path.join(root, 'deep.tar.gz')], quiet);
    expect(found.findings.map((f) => [f.chain, f.rule])).toEqual([[['b.zip', 'a.zip', 'env'], 'github-token']]);
    // gzip (1) › tar (2) › b.zip (3) › a.zip (4): a depth of 3 stops at a.zip. Stored, a.zip's bytes
    // are in b.zip as they are: the flat scan of b.zip still sees the token.
    const shallow = await scanPaths([path.join(root, 'deep.tar.gz')], { ...quiet, limits: { maxDepth: 3 } });
    const limited = shallow.findings.filter((f) => f.kind === 'unscanned');
    expect(limited.map((f) => [f.inner, f.rule])).toEqual([['b.zip!a.zip', 'unscanned-limit']]);
    expect(limited[0]!.note).toMatch(/nested deeper than 3 levels \(scan\.limits\.maxDepth\); raise it/);

    const age = ageKeyFile();
    writeFileSync(path.join(root, 'zeros-then-key'), Buffer.concat([Buffer.alloc(4 * 1024 * 1024), Buffer.from(age.file)]));
    writeFileSync(path.join(root, 'zeros-then-key.gz'), execFileSync('gzip', ['-c', path.join(root, 'zeros-then-key')]));
    const bounded = await scanPaths([path.join(root, 'zeros-then-key.gz')], { ...quiet, limits: { maxExpandedBytes: 1024 * 1024 } });
    expect(bounded.findings.map((f) => [f.path, f.rule])).toEqual([['zeros-then-key.gz', 'unscanned-limit']]);
    expect(bounded.findings[0]!.note).toMatch(/more than 1 MiB \(scan\.limits\.maxExpandedBytes\); raise it in the profile/);
    const raised = await scanPaths([path.join(root, 'zeros-then-key.gz')], { ...quiet, limits: { maxExpandedBytes: 64 * 1024 * 1024 } });
    expect(raised.findings.map((f) => f.rule)).toEqual(['age-identity']);
  });

  it('an unscanned finding has a stable fingerprint and is accepted by the allowlist with a reason', async () => {
    const root = await tempDir();
    const work = await tempDir();
    await writeTree(work, { 'notes.txt': 'hello\n' });
    execFileSync('zip', ['-q', '-P', 'pw', path.join(root, 'vault.zip'), 'notes.txt'], { cwd: work });
    const first = await scanPaths([root], quiet);
    const again = await scanPaths([root], quiet);
    expect(first.findings).toHaveLength(1);
    expect(again.findings[0]!.fingerprint).toBe(first.findings[0]!.fingerprint);
    const allowed = await scanPaths([root], { ...quiet, allowlist: [{ fingerprint: first.findings[0]!.fingerprint, reason: 'vendor archive, password known to be empty of secrets' }] });
    expect(allowed.findings).toEqual([]);
    expect(allowed.allowed.map((f) => [f.kind, f.allowed?.reason])).toEqual([['unscanned', 'vendor archive, password known to be empty of secrets']]);
  });
});

describe('container walker reading', () => {
  it('spools a large zip inside a tar to a private temp file, finds the key with its chain, and removes the spool', async () => {
    const root = await tempDir();
    const work = await tempDir();
    const token = githubToken('ghp');
    await writeTree(work, { 'weights.bin': randomBytes(9 * 1024 * 1024), 'cfg/env': `GH=${token}\n` });
    // Stored, so the zip is over the in-memory limit and must be read at random from a spool.
    execFileSync('zip', ['-q', '-0', '-r', 'bundle.zip', 'weights.bin', 'cfg'], { cwd: work });
    execFileSync('tar', ['-cf', path.join(root, 'release.tar'), '-C', work, 'bundle.zip']);
    const before = spools();
    const report = await scanPaths([path.join(root, 'release.tar')], quiet);
    expect(report.findings.map((f) => [f.path, f.chain, f.rule])).toEqual([['release.tar', ['bundle.zip', 'cfg/env'], 'github-token']]);
    expect(spools()).toEqual(before);
  });

  it("the build's push-fed gate unpacks a large tar.gz given chunk by chunk, whatever its size says", async () => {
    const work = await tempDir();
    const age = ageKeyFile();
    await writeTree(work, { 'noise.bin': randomBytes(9 * 1024 * 1024), 'etc/keys.txt': age.file });
    execFileSync('tar', ['-czf', path.join(work, 'model.tar.gz'), '-C', work, 'noise.bin', 'etc']);
    const bytes = readFileSync(path.join(work, 'model.tar.gz'));
    expect(bytes.length).toBeGreaterThan(8 * 1024 * 1024);
    const gate = await createLeakGate(quiet);
    for (const size of [bytes.length, undefined]) {
      const scanner = gate.open({ path: 'models/model.tar.gz', ...(size !== undefined ? { size } : {}) });
      for (let offset = 0; offset < bytes.length; offset += 1024 * 1024) scanner.update(bytes.subarray(offset, offset + 1024 * 1024));
      const findings = await scanner.finish();
      expect(findings.map((f) => [f.path, f.inner, f.kind])).toEqual([['models/model.tar.gz', 'etc/keys.txt', 'age-identity']]);
    }
  });
});
