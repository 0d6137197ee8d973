/**
 * The whole path an operator takes: `dubnium-seed build` makes a real seed (a generated bundle and
 * a git repository with a symlink and a path longer than tar's 100-byte name field), then the
 * seed's own seed-install.sh installs it under dash and under busybox sh, as on the live system.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, open, readFile, readlink, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBundle, type WrittenBundle } from '../helpers/bundles.js';
import { runCli } from '../helpers/cli.js';
import { git, gitRepo, tempDir } from '../helpers/tmp.js';

const longPath = `modules/${'very-long-folder-name/'.repeat(6)}hardware-tuning-for-the-workstation.nix`;
const repoFiles = {
  'flake.nix': '{ outputs = { self, nixpkgs }: { }; }\n',
  'hosts/workstation/configuration.nix': '{ ... }: { networking.hostName = "dubnium"; }\n',
  [longPath]: '{ ... }: { boot.kernelParams = [ "quiet" ]; }\n',
};

let workspace = '';
let seed = '';
let bundle: WrittenBundle;

beforeAll(async () => {
  workspace = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-install-e2e-'));
  const repo = await gitRepo(repoFiles, path.join(workspace, 'repo'));
  await symlink('hosts/workstation/configuration.nix', path.join(repo, 'configuration.nix'));
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'symlink');
  bundle = await writeBundle(path.join(workspace, 'models', 'tiny-llama'), { shards: 2 });
  seed = path.join(workspace, 'seed');
  const built = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', seed, '--json']);
  if (built.code !== 0) throw new Error(`test setup: build failed: ${built.stderr}`);
}, 120_000);

afterAll(async () => {
  if (workspace) await rm(workspace, { recursive: true, force: true });
});

const shells = [
  { name: 'dash', command: 'dash', args: [] as string[] },
  { name: 'busybox sh', command: 'busybox', args: ['sh'] },
];

describe.each(shells)("the seed's own seed-install.sh under $name", (shell) => {
  it('installs the bundle byte for byte and unpacks the source tree, symlink and long path included', async () => {
    expect(longPath.length).toBeGreaterThan(100);
    const root = await tempDir();
    const elsewhere = await tempDir();
    const result = spawnSync(shell.command, [...shell.args, path.join(seed, 'seed-install.sh'), '--root', root], { cwd: elsewhere, encoding: 'utf8', timeout: 120_000 });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/verified: all \d+ files match/);

    const installed = path.join(root, 'var/lib/dubnium/models/tiny-llama');
    const names = execFileSync('find', ['.', '-type', 'f'], { cwd: installed, encoding: 'utf8' }).trim().split('\n').map((name) => name.slice(2)).sort();
    expect(names).toEqual(bundle.files);
    for (const file of bundle.files) {
      expect((await readFile(path.join(installed, file))).equals(await readFile(path.join(bundle.dir, file))), file).toBe(true);
    }

    const nixos = path.join(root, 'etc/nixos');
    for (const [file, content] of Object.entries(repoFiles)) expect(await readFile(path.join(nixos, file), 'utf8'), file).toBe(content);
    expect((await lstat(path.join(nixos, 'configuration.nix'))).isSymbolicLink()).toBe(true);
    expect(await readlink(path.join(nixos, 'configuration.nix'))).toBe('hosts/workstation/configuration.nix');
    // Nothing temporary is left beside the destinations.
    expect(execFileSync('find', [root, '-name', '.*'], { encoding: 'utf8' }).trim()).toBe('');
  });

  it('a seed with one flipped shard byte installs nothing (exit 3)', async () => {
    const copy = path.join(await tempDir(), 'seed');
    execFileSync('cp', ['-a', seed, copy]);
    const shard = path.join(copy, 'models/tiny-llama', bundle.shards[0]!);
    const handle = await open(shard, 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 100);
    await handle.write(Buffer.from([byte[0]! ^ 0x40]), 0, 1, 100);
    await handle.close();
    const root = await tempDir();
    await mkdir(path.join(root, 'etc'));
    const result = spawnSync(shell.command, [...shell.args, path.join(copy, 'seed-install.sh'), '--root', root], { encoding: 'utf8', timeout: 120_000 });
    expect(result.status).toBe(3);
    expect(result.stderr).toContain(bundle.shards[0]);
    expect(execFileSync('find', [root], { encoding: 'utf8' }).trim().split('\n')).toEqual([root, path.join(root, 'etc')]);
  });
});
