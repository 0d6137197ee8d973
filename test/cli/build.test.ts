/**
 * `dubnium-seed build` and `verify` end to end: real git repositories, generated model bundles,
 * real tar/gzip and sha256sum, and a real loop-mounted ext4 filesystem.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile, writeFile, open, rm, symlink, unlink, chmod } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { breakBundle, writeBundle, writeHfCache } from '../helpers/bundles.js';
import { cliEnv, interruptMidCopy, runCli } from '../helpers/cli.js';
import { mountedExt4 } from '../helpers/loop-fs.js';
import { git, gitRepo, listTree, tempDir, writeTree } from '../helpers/tmp.js';

const nixRepo = {
  'flake.nix': '{ outputs = { self, nixpkgs }: { }; }\n',
  'hosts/workstation/configuration.nix': '{ ... }: { networking.hostName = "dubnium"; }\n',
  'modules/vllm.nix': '{ lib, ... }: { }\n',
  '.gitignore': 'result\n*.local\n',
};

async function fixture(bundleSpec: Parameters<typeof writeBundle>[1] = {}) {
  const repo = await gitRepo(nixRepo);
  const models = await tempDir('dubnium-seed-models-');
  const bundle = await writeBundle(path.join(models, 'tiny-llama'), bundleSpec);
  return { repo, bundle };
}

function sha256(file: string): string {
  return createHash('sha256').update(execFileSync('cat', [file])).digest('hex');
}


describe('build from flags', () => {
  it('writes a complete seed that sha256sum -c accepts, with one top-level folder in the archive', async () => {
    const { repo, bundle } = await fixture();
    const target = path.join(await tempDir(), 'seed');
    const result = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', target, '--json']);
    expect(result.stderr).not.toMatch(/internal error/);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.ok).toBe(true);
    expect(report.verify.ok).toBe(true);

    execFileSync('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: target });
    const manifest = JSON.parse(await readFile(path.join(target, 'dubnium-seed.json'), 'utf8'));
    expect(manifest.format).toBe(1);
    expect(manifest.source.commit).toBe(git(repo, 'rev-parse', 'HEAD').trim());
    expect(manifest.source.dirty).toBe(false);
    expect(manifest.bundles).toEqual([expect.objectContaining({ name: 'tiny-llama', dir: 'models/tiny-llama', kind: 'folder' })]);
    const listed = (await readFile(path.join(target, 'SHA256SUMS'), 'utf8')).trim().split('\n').map((line) => line.slice(66));
    expect(listed).toEqual(manifest.files.map((file: { path: string }) => file.path));
    expect(listed).toContain('seed-install.sh');
    for (const file of bundle.files) expect(listed).toContain(`models/tiny-llama/${file}`);

    const tops = new Set(execFileSync('tar', ['-tzf', path.join(target, manifest.source.file)], { encoding: 'utf8' }).trim().split('\n').map((entry) => entry.split('/')[0]));
    expect([...tops]).toEqual([manifest.source.topFolder]);
    expect(listTree(target).filter((entry) => entry.includes('partial') || entry.includes('journal'))).toEqual([]);
  });

  it('gives identical archives from two builds of the same tree, and records a dirty tree', async () => {
    const { repo, bundle } = await fixture();
    const first = path.join(await tempDir(), 'a');
    const second = path.join(await tempDir(), 'b');
    expect((await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', first, '--no-verify'])).code).toBe(0);
    // Touch every file: mtimes must not leak into the archive.
    execFileSync('find', [repo, '-path', `${repo}/.git`, '-prune', '-o', '-type', 'f', '-exec', 'touch', '-d', '2030-01-01', '{}', '+']);
    expect((await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', second, '--no-verify'])).code).toBe(0);
    const manifestA = JSON.parse(await readFile(path.join(first, 'dubnium-seed.json'), 'utf8'));
    const manifestB = JSON.parse(await readFile(path.join(second, 'dubnium-seed.json'), 'utf8'));
    expect(manifestA.source.file).toBe(manifestB.source.file);
    expect(sha256(path.join(first, manifestA.source.file))).toBe(sha256(path.join(second, manifestB.source.file)));

    await writeFile(path.join(repo, 'modules/vllm.nix'), '{ lib, ... }: { services.vllm.enable = true; }\n');
    await writeFile(path.join(repo, 'notes.local'), 'ignored\n');
    await writeFile(path.join(repo, 'untracked.nix'), '{ }\n');
    await unlink(path.join(repo, 'flake.nix'));
    const third = path.join(await tempDir(), 'c');
    const dirty = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', third, '--json', '--no-verify']);
    expect(dirty.code).toBe(0);
    const manifestC = JSON.parse(await readFile(path.join(third, 'dubnium-seed.json'), 'utf8'));
    expect(manifestC.source.dirty).toBe(true);
    expect(manifestC.source.changedPaths).toEqual(expect.arrayContaining(['modules/vllm.nix', 'flake.nix']));
    const entries = execFileSync('tar', ['-tzf', path.join(third, manifestC.source.file)], { encoding: 'utf8' });
    expect(entries).not.toMatch(/flake\.nix/);
    expect(entries).not.toMatch(/notes\.local/);
    expect(entries).not.toMatch(/untracked\.nix/);
    expect(entries).toMatch(/modules\/vllm\.nix/);
  });

  it('builds a Hugging Face cache repository folder, named after the repo, checking blob digests', async () => {
    const { repo } = await fixture();
    const staging = await tempDir();
    const bundle = await writeBundle(path.join(staging, 'src'), { shards: 2 });
    const cache = await tempDir('dubnium-seed-hub-');
    const written = await writeHfCache(cache, 'acme/Tiny-Chat', bundle.dir);
    const target = path.join(await tempDir(), 'seed');
    const result = await runCli(['build', '--repo', repo, '--model', written.repoDir, '--target', target, '--json']);
    expect(result.code).toBe(0);
    const manifest = JSON.parse(await readFile(path.join(target, 'dubnium-seed.json'), 'utf8'));
    expect(manifest.bundles[0]).toMatchObject({ name: 'Tiny-Chat', kind: 'hf-cache', repoId: 'acme/Tiny-Chat', revision: written.revision });
    // Real files, no symlinks, on the seed.
    for (const entry of listTree(path.join(target, 'models'))) {
      expect(statSync(path.join(target, 'models', entry)).isSymbolicLink()).toBe(false);
    }

    // A corrupt LFS blob is caught while copying: exit 2, and no manifest.
    const shardBlob = Object.entries(written.blobs).find(([rel]) => rel.endsWith('.safetensors'))![1].blob;
    const blobPath = path.join(written.repoDir, 'blobs', shardBlob);
    const handle = await open(blobPath, 'r+');
    const size = (await handle.stat()).size;
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    await handle.write(Buffer.from([last[0]! ^ 0xff]), 0, 1, size - 1);
    await handle.close();
    const other = path.join(await tempDir(), 'seed');
    const corrupt = await runCli(['build', '--repo', repo, '--model', written.repoDir, '--target', other]);
    expect(corrupt.code).toBe(2);
    expect(corrupt.stderr).toMatch(/do not match the digest/);
    expect(existsSync(path.join(other, 'dubnium-seed.json'))).toBe(false);
  });
});

describe('invalid input writes nothing', () => {
  for (const kind of ['corrupt-shard-header', 'index-missing-shard'] as const) {
    it(`${kind}: exit 2 naming the file, target untouched`, async () => {
      const { repo, bundle } = await fixture();
      const named = await breakBundle(bundle, kind);
      const target = path.join(await tempDir(), 'seed');
      const result = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', target]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(named);
      expect(result.stderr).toMatch(new RegExp(`^dubnium-seed: .*${named.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
      expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(existsSync(target)).toBe(false);
    });
  }

  it('a folder that is not a git work tree is refused unless --plain-folder', async () => {
    const folder = await tempDir();
    await writeTree(folder, { 'configuration.nix': '{ }\n' });
    const target = path.join(await tempDir(), 'seed');
    const refused = await runCli(['build', '--repo', folder, '--target', target]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--plain-folder/);
    const accepted = await runCli(['build', '--repo', folder, '--target', target, '--plain-folder', '--json']);
    expect(accepted.code).toBe(0);
    expect(JSON.parse(accepted.stdout).source.plainFolder).toBe(true);
  });

  it('a scripted build with no target is a usage error naming the flag, without waiting for input', async () => {
    const { repo } = await fixture();
    const result = await runCli(['build', '--repo', repo]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--target/);
  });

  it('profile errors are printed as path: message', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'bad.yaml'), 'source:\n  repo: 12\nmodels:\n  - name: x\ncolour: blue\n');
    const result = await runCli(['build', '--profile', path.join(dir, 'bad.yaml'), '--target', path.join(dir, 'seed')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/source\.repo: /);
    expect(result.stderr).toMatch(/models\.0\.path: /);
    expect(result.stderr).toMatch(/colour/);
  });

  it('a target holding other files is refused', async () => {
    const { repo, bundle } = await fixture();
    const target = await tempDir();
    await writeFile(path.join(target, 'thesis.pdf'), 'mine');
    const result = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', target]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/thesis\.pdf/);
  });
});

describe('on a loop-mounted ext4 filesystem', () => {
  it('refuses a too-small filesystem up front: exit 2, needs X has Y, no manifest', async () => {
    const { repo, bundle } = await fixture({ shards: 2, shardBytes: 24 * 1024 * 1024 });
    const mount = await mountedExt4(32);
    const result = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', mount]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/needs .* has .* free/);
    expect(listTree(mount)).toEqual([]);
  });

  it('a build killed mid-copy leaves no manifest; verify says incomplete; a rerun completes', async () => {
    const { repo, bundle } = await fixture({ shards: 2, shardBytes: 192 * 1024 * 1024 });
    const mount = await mountedExt4(640);
    const killed = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', mount, '--no-verify'], {
      onSpawn: (child) => interruptMidCopy(child, path.join(mount, 'models', 'tiny-llama'), 8 * 1024 * 1024, 'SIGKILL'),
    });
    expect(killed.signal).toBe('SIGKILL');
    expect(existsSync(path.join(mount, 'dubnium-seed.json'))).toBe(false);

    const incomplete = await runCli(['verify', mount, '--json']);
    expect(incomplete.code).toBe(3);
    const report = JSON.parse(incomplete.stdout);
    expect(report.complete).toBe(false);
    expect(report.problems.map((problem: { kind: string }) => problem.kind)).toEqual(expect.arrayContaining(['incomplete', 'partial']));

    const rerun = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', mount, '--json']);
    expect(rerun.code).toBe(0);
    const rebuilt = JSON.parse(rerun.stdout);
    expect(rebuilt.reused.length).toBeGreaterThan(0); // complete files from the killed run were kept
    expect(rebuilt.verify.ok).toBe(true);
    execFileSync('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: mount });
    const again = await runCli(['verify', mount]);
    expect(again.code).toBe(0);
  });

  it('verify finds one flipped byte and names the file; a rerun of the build repairs it', async () => {
    const { repo, bundle } = await fixture();
    const mount = await mountedExt4(64);
    expect((await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', mount])).code).toBe(0);
    const shard = path.join(mount, 'models', 'tiny-llama', bundle.shards[0]!);
    const handle = await open(shard, 'r+');
    const size = (await handle.stat()).size;
    const offset = Math.floor(size / 2);
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    await handle.write(Buffer.from([byte[0]! ^ 0x01]), 0, 1, offset);
    await handle.close();
    const result = await runCli(['verify', mount]);
    expect(result.code).toBe(3);
    expect(result.stdout).toContain(`models/tiny-llama/${bundle.shards[0]} does not match its checksum`);
    const json = JSON.parse((await runCli(['verify', mount, '--json'])).stdout);
    expect(json.problems).toEqual([expect.objectContaining({ path: `models/tiny-llama/${bundle.shards[0]}`, kind: 'corrupt' })]);
    expect(json.cacheBypass).toBe('all');

    const repaired = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', mount, '--json']);
    expect(repaired.code).toBe(0);
    expect(JSON.parse(repaired.stdout).written).toEqual([`models/tiny-llama/${bundle.shards[0]}`]);
  });

  it('verify reports unexpected, missing and symlinked files', async () => {
    const { repo, bundle } = await fixture();
    const mount = await mountedExt4(64);
    expect((await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', mount, '--no-verify'])).code).toBe(0);
    await writeFile(path.join(mount, 'models', 'extra.txt'), 'added later');
    await rm(path.join(mount, 'models', 'tiny-llama', 'generation_config.json'));
    const tokenizer = path.join(mount, 'models', 'tiny-llama', 'tokenizer_config.json');
    const copy = path.join(await tempDir(), 'tokenizer_config.json');
    await writeFile(copy, await readFile(tokenizer));
    await rm(tokenizer);
    await symlink(copy, tokenizer);
    await chmod(copy, 0o644);
    const json = JSON.parse((await runCli(['verify', mount, '--json'])).stdout);
    const byPath = Object.fromEntries(json.problems.map((problem: { path: string; kind: string }) => [problem.path, problem.kind]));
    expect(byPath).toEqual({
      'models/extra.txt': 'unexpected',
      'models/tiny-llama/generation_config.json': 'missing',
      'models/tiny-llama/tokenizer_config.json': 'not-regular',
    });
  });
});

describe('output contract', () => {
  it('--json puts exactly one JSON document on stdout, progress on stderr', async () => {
    const { repo, bundle } = await fixture();
    const target = path.join(await tempDir(), 'seed');
    const result = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', target, '--json'], { env: cliEnv() });
    expect(() => JSON.parse(result.stdout)).not.toThrow();
    const failing = await runCli(['verify', path.join(target, 'nope'), '--json']);
    expect(failing.code).toBe(2);
    expect(JSON.parse(failing.stdout)).toMatchObject({ ok: false, exitCode: 2 });
  });

  it('no subcommand without a terminal prints usage on stderr and exits 2', async () => {
    const result = await runCli([]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/Usage: dubnium-seed/);
    expect(result.stdout).toBe('');
  });
});
