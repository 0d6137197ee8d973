/**
 * verifySeed against a real seed (built once by the CLI) and hostile or broken variants of it:
 * manifests that are truncated, not JSON, of another format, huge, or re-laid out; paths that
 * leave the root; links to outside; hostile tarballs; a bundle that no longer validates; and
 * what the report says about the page cache on ext4 and on tmpfs.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderManifest } from '../../src/core/manifest.js';
import { verifySeed, type VerifyReport } from '../../src/core/verify-seed.js';
import { buildSeedTemplate } from '../helpers/cli.js';
import { mountedExt4 } from '../helpers/loop-fs.js';
import { githubToken } from '../helpers/credentials.js';
import { tempDir } from '../helpers/tmp.js';
import { craftArchive, readManifest, reseal, sha256, type CraftedEntry } from '../helpers/hostile-seed.js';

let template = '';
let workspace = '';

beforeAll(async () => {
  workspace = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-verify-core-'));
  template = await buildSeedTemplate(workspace, { shards: 2 });
}, 120_000);

afterAll(async () => {
  if (workspace) await rm(workspace, { recursive: true, force: true });
});

/** A fresh copy of the built seed, inside a folder that also holds `outside/` (beside the seed). */
async function freshSeed(): Promise<{ seed: string; outside: string }> {
  const base = await tempDir();
  const seed = path.join(base, 'seed');
  execFileSync('cp', ['-a', template, seed]);
  const outside = path.join(base, 'outside');
  await mkdir(outside);
  return { seed, outside };
}


const verify = (root: string, extra: Partial<Parameters<typeof verifySeed>[0]> = {}) => verifySeed({ root, scan: false, ...extra });
const kinds = (report: VerifyReport) => report.problems.map((problem) => `${problem.kind} ${problem.path}`);


describe('the leak scan', () => {
  it('uses each call\'s own allowlist: a gate from an earlier verify in the same process is never reused', async () => {
    const { seed } = await freshSeed();
    const token = githubToken('ghp');
    await writeFile(path.join(seed, 'notes.txt'), `token ${token}\n`);
    const first = await verify(seed, { scan: { allowlist: [], operatorSecrets: false } });
    expect(first.findings.map((finding) => `${finding.path} ${finding.rule}`)).toEqual(['notes.txt github-token']);
    const allow = [{ fingerprint: first.findings[0]!.fingerprint, reason: 'test token' }];
    const second = await verify(seed, { scan: { allowlist: allow, operatorSecrets: false } });
    expect(second.findings).toEqual([]);
    expect(second.allowed.map((finding) => finding.allowed?.reason)).toEqual(['test token']);
  });
});

describe('a clean seed', () => {
  it('verifies with no problems and says what it checked', async () => {
    const { seed } = await freshSeed();
    const report = await verify(seed, { scan: { allowlist: [], operatorSecrets: true } });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    const manifest = await readManifest(seed);
    expect(report.files).toBe(manifest.files.length);
    expect(report.bytes).toBe(manifest.files.reduce((sum, file) => sum + file.size, 0));
    expect(report.checked.join('\n')).toMatch(/manifest: format 1/);
    expect(report.checked.join('\n')).toMatch(/source archive: \d+ entries/);
    expect(report.checked.join('\n')).toMatch(/model bundles: 1 of 1 validate/);
    expect(report.checked.join('\n')).toMatch(/leak scan of every byte/);
  });
});

describe('the manifest', () => {
  it('truncated: a manifest problem, and the files are still checked against SHA256SUMS', async () => {
    const { seed } = await freshSeed();
    const file = path.join(seed, 'dubnium-seed.json');
    await truncate(file, Math.floor((await stat(file)).size / 2));
    const report = await verify(seed);
    expect(kinds(report)).toEqual(['manifest dubnium-seed.json']);
    expect(report.problems[0]!.message).toMatch(/not valid JSON/);
    expect(report.files).toBeGreaterThan(3);
  });

  it('not JSON at all', async () => {
    const { seed } = await freshSeed();
    await writeFile(path.join(seed, 'dubnium-seed.json'), '<html>not a manifest</html>\n');
    const report = await verify(seed);
    expect(kinds(report)).toEqual(['manifest dubnium-seed.json']);
    expect(report.problems[0]!.message).toMatch(/dubnium-seed\.json is not valid JSON/);
  });

  it('format 2 says which format this version reads and what to do', async () => {
    const { seed } = await freshSeed();
    await reseal(seed, (manifest) => void ((manifest as { format: number }).format = 2));
    const report = await verify(seed);
    expect(kinds(report)).toEqual(['manifest dubnium-seed.json']);
    expect(report.problems[0]!.message).toMatch(/format 2; this tool reads format 1/);
    expect(report.problems[0]!.action).toMatch(/newer dubnium-seed/);
  });

  it('a schema violation names the field', async () => {
    const { seed } = await freshSeed();
    await reseal(seed, (manifest) => void ((manifest.totals as { files: unknown }).files = 'many'));
    const report = await verify(seed);
    expect(report.problems.map((problem) => problem.message)).toEqual([expect.stringMatching(/totals\.files/)]);
  });

  it('a 100 MB manifest is refused from its size, quickly, without being read', async () => {
    const { seed } = await freshSeed();
    const file = path.join(seed, 'dubnium-seed.json');
    await truncate(file, 100 * 1024 * 1024);
    const started = Date.now();
    const report = await verify(seed);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(kinds(report)).toEqual(['manifest dubnium-seed.json']);
    expect(report.problems[0]!.message).toMatch(/is 104857600 bytes, more than .* \(refused unread\)/);
  });

  it('a change selfSha256 cannot see (its own line re-indented) is still caught', async () => {
    const { seed } = await freshSeed();
    const file = path.join(seed, 'dubnium-seed.json');
    await writeFile(file, (await readFile(file, 'utf8')).replace('\n  "selfSha256"', '\n\t"selfSha256"'));
    const report = await verify(seed);
    expect(kinds(report)).toEqual(['manifest dubnium-seed.json']);
    expect(report.problems[0]!.message).toMatch(/changed after it was written/);
  });

  it('a symlink or a FIFO in place of the manifest is never followed or opened', async () => {
    const { seed, outside } = await freshSeed();
    const file = path.join(seed, 'dubnium-seed.json');
    await writeFile(path.join(outside, 'm.json'), await readFile(file));
    await rm(file);
    await symlink(path.join(outside, 'm.json'), file);
    expect((await verify(seed)).problems[0]!.message).toMatch(/symlink \(never followed\)/);
    await rm(file);
    execFileSync('mkfifo', [file]);
    expect((await verify(seed)).problems[0]!.message).toMatch(/not a regular file/);
  });
});

describe('paths outside the seed are never read', () => {
  it('a manifest entry ../outside/passwd whose hash matches is refused, and not read', async () => {
    const { seed, outside } = await freshSeed();
    const bytes = Buffer.from('root:x:0:0::/root:/bin/sh\n');
    await writeFile(path.join(outside, 'passwd'), bytes);
    const before = await verify(seed);
    await reseal(seed, (manifest) => manifest.files.push({ path: '../outside/passwd', size: bytes.length, sha256: sha256(bytes) }));
    const report = await verify(seed);
    expect(report.problems.map((problem) => problem.message)).toEqual(
      expect.arrayContaining([expect.stringMatching(/files\.\d+\.path: must be a relative path inside the seed/)]),
    );
    expect(report.bytes).toBe(before.bytes);
    expect(report.files).toBe(before.files);
  });

  it('a SHA256SUMS entry ../../etc/passwd is refused, and not read', async () => {
    const { seed } = await freshSeed();
    const sums = path.join(seed, 'SHA256SUMS');
    const passwd = await readFile('/etc/passwd');
    const before = await verify(seed);
    await writeFile(sums, `${await readFile(sums, 'utf8')}${sha256(passwd)}  ../../etc/passwd\n`);
    const report = await verify(seed);
    expect(report.problems.map((problem) => problem.message)).toEqual(
      expect.arrayContaining([expect.stringMatching(/SHA256SUMS line \d+: path "\.\.\/\.\.\/etc\/passwd" leaves the seed root/)]),
    );
    expect(report.files).toBe(before.files);
    expect(report.bytes).toBe(before.bytes);
  });

  it('a payload file swapped for a symlink to an identical file outside: not-regular', async () => {
    const { seed, outside } = await freshSeed();
    const victim = path.join(seed, 'models/tiny-llama/config.json');
    await writeFile(path.join(outside, 'config.json'), await readFile(victim));
    await rm(victim);
    await symlink(path.join(outside, 'config.json'), victim);
    const report = await verify(seed);
    expect(kinds(report)).toEqual(['not-regular models/tiny-llama/config.json']);
    expect(report.problems[0]!.message).toMatch(/is a symlink; seed files are always regular files/);
  });

  it('a bundle folder swapped for a symlink to an identical copy outside: nothing under it is read', async () => {
    const { seed, outside } = await freshSeed();
    const bundle = path.join(seed, 'models/tiny-llama');
    execFileSync('cp', ['-a', bundle, path.join(outside, 'tiny-llama')]);
    await rm(bundle, { recursive: true });
    await symlink(path.join(outside, 'tiny-llama'), bundle);
    const before = (await readManifest(seed)).files.filter((file) => !file.path.startsWith('models/'));
    const report = await verify(seed);
    expect(report.files).toBe(before.length);
    expect(report.problems.filter((problem) => problem.path.startsWith('models/tiny-llama/')).every((problem) => problem.kind === 'not-regular')).toBe(true);
    expect(kinds(report)).toContain('not-regular models/tiny-llama');
    expect(report.problems.some((problem) => problem.kind === 'bundle')).toBe(false);
  });
});

describe('the source archive', () => {
  const hostile: [string, CraftedEntry[], RegExp][] = [
    ['a ../ entry', [{ name: 'top/', type: 'directory' }, { name: 'top/../../evil' }], /"top\/\.\.\/\.\.\/evil": path with "\.\." leaves/],
    ['an absolute path', [{ name: 'top/', type: 'directory' }, { name: '/etc/cron.d/evil' }], /"\/etc\/cron\.d\/evil": absolute path/],
    ['a symlink leaving the folder', [{ name: 'top/', type: 'directory' }, { name: 'top/link', type: 'symlink', linkname: '../../../etc' }], /symlink to "\.\.\/\.\.\/\.\.\/etc" leaves/],
    ['a device node', [{ name: 'top/', type: 'directory' }, { name: 'top/null', type: 'character-device' }], /"top\/null": character-device entries are not allowed/],
    [
      'an entry written through an inside symlink',
      [{ name: 'top/', type: 'directory' }, { name: 'top/here', type: 'symlink', linkname: '.' }, { name: 'top/here/out', type: 'symlink', linkname: '../x' }],
      /"top\/here\/out": lies beneath the symlink "top\/here"/,
    ],
  ];
  for (const [label, entries, message] of hostile) {
    it(`${label}: an archive problem, with the digests all matching`, async () => {
      const { seed } = await freshSeed();
      const manifest = await readManifest(seed);
      await craftArchive(path.join(seed, manifest.source.file), entries);
      await reseal(seed, (edited) => void (edited.source.topFolder = 'top'));
      const report = await verify(seed);
      expect(report.problems.length).toBeGreaterThan(0);
      expect(report.problems.every((problem) => problem.kind === 'archive' && problem.path === manifest.source.file)).toBe(true);
      expect(report.problems.map((problem) => problem.message)).toEqual(expect.arrayContaining([expect.stringMatching(message)]));
      expect(report.problems[0]!.action).toMatch(/Do not unpack this archive/);
    });
  }

  it('a damaged archive whose digest was resealed does not open: archive problem', async () => {
    const { seed } = await freshSeed();
    const manifest = await readManifest(seed);
    await writeFile(path.join(seed, manifest.source.file), Buffer.from('\x1f\x8bnot really gzip'));
    await reseal(seed);
    const report = await verify(seed);
    expect(report.problems.map((problem) => problem.message)).toEqual(expect.arrayContaining([expect.stringMatching(/does not open/)]));
  });
});

describe('SHA256SUMS and the manifest agree', () => {
  it('an entry edited in both SHA256SUMS and the manifest digest, but not in the file list, is caught', async () => {
    const { seed } = await freshSeed();
    const sums = path.join(seed, 'SHA256SUMS');
    const text = await readFile(sums, 'utf8');
    const edited = text.replace(/^[0-9a-f]{64}/, '0'.repeat(64));
    await writeFile(sums, edited);
    const manifest = await readManifest(seed);
    manifest.checksums.sha256 = sha256(edited);
    const { selfSha256: _drop, ...rest } = manifest;
    await writeFile(path.join(seed, 'dubnium-seed.json'), renderManifest(rest));
    const report = await verify(seed);
    expect(report.problems).toEqual([expect.objectContaining({ kind: 'checksums', path: manifest.files[0]!.path, message: expect.stringMatching(/disagree/) })]);
  });
});

describe('bundles still validate', () => {
  it('a same-size shard with a broken header, resealed everywhere, is a bundle problem', async () => {
    const { seed } = await freshSeed();
    const manifest = await readManifest(seed);
    const shard = manifest.files.find((file) => file.path.endsWith('.safetensors'))!.path;
    const handle = await open(path.join(seed, shard), 'r+');
    const field = Buffer.alloc(8);
    field.writeBigUInt64LE(1n << 33n);
    await handle.write(field, 0, 8, 0);
    await handle.close();
    await reseal(seed);
    const report = await verify(seed);
    expect(kinds(report)).toEqual(['bundle models/tiny-llama']);
    expect(report.problems[0]!.message).toContain(path.posix.basename(shard));
  });
});

describe('the page cache', () => {
  it('on a loop-mounted ext4 filesystem every read bypasses it', async () => {
    const mount = await mountedExt4(64);
    execFileSync('cp', ['-a', `${template}/.`, mount]);
    const report = await verify(mount);
    expect(report.problems).toEqual([]);
    expect(report.cacheBypass).toBe('all');
  });

  it('on tmpfs (memory is the storage) it honestly says none', async () => {
    const mount = await tempDir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mount]);
    try {
      execFileSync('cp', ['-a', `${template}/.`, mount]);
      const report = await verify(mount);
      expect(report.problems).toEqual([]);
      expect(report.cacheBypass).toBe('none');
    } finally {
      execFileSync('umount', [mount]);
    }
  });

  it('bypassCache: false reads through the cache and says so', async () => {
    const { seed } = await freshSeed();
    expect((await verify(seed, { bypassCache: false })).cacheBypass).toBe('none');
  });
});
