/**
 * Private flake inputs travel on the seed (issue 12), end to end with the real Nix (nix-bin, offline,
 * private state and chroot stores): `build` carries an input locked as `git+ssh://` from a local Nix
 * store or a local clone, `seed-install.sh` registers it in a fresh store, and `nix eval --offline`
 * of the installed flake succeeds there, and fails without the seed's input.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliEnv, runCli } from '../helpers/cli.js';
import { ageKeyFile, sshKey } from '../helpers/credentials.js';
import { sopsEncrypt } from '../helpers/sops-encrypt.js';
import { tempDir } from '../helpers/tmp.js';
import { fixedOutputSourcePath } from '../../src/core/flake/store-path.js';
import { makeFlakeFixture, type FlakeFixture } from '../core/flake/flake-fixture.js';

interface InstallResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function install(fixture: FlakeFixture, seed: string, root: string, extra: string[] = [], env: NodeJS.ProcessEnv = fixture.nix.env, shell = 'sh'): InstallResult {
  const result = spawnSync(shell === 'sh' ? 'sh' : shell, [...(shell === 'sh' ? [] : ['sh']), path.join(seed, 'seed-install.sh'), '--root', root, '--live-store', path.join(fixture.dir, 'live-store'), ...extra], {
    env,
    encoding: 'utf8',
    timeout: 300_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

async function build(args: string[], fixture: FlakeFixture) {
  return runCli(['build', '--repo', fixture.configRepo, '--json', '--no-operator-secrets', ...args], { env: cliEnv({ HOME: fixture.nix.env.HOME }) });
}

function evalValue(fixture: FlakeFixture, store: string, flake: string, attribute = 'value') {
  return fixture.nix.attempt('nix', ['--store', store, 'eval', '--offline', '--raw', `path:${flake}#${attribute}`]);
}

async function expectInstallsAndEvaluates(fixture: FlakeFixture, seed: string): Promise<void> {
  const root = path.join(fixture.dir, `root-${path.basename(seed)}`);
  await mkdir(root);
  const installed = install(fixture, seed, root);
  expect(installed.stderr).toBe('');
  expect(installed.code).toBe(0);
  const storePath = fixedOutputSourcePath(fixture.narHash);
  expect(installed.stdout).toContain(`registered flake input secrets as ${storePath}`);
  expect(installed.stdout).toContain(`next: nixos-install --root ${root} --flake ${root}/etc/nixos#<host>`);
  expect(installed.stdout).toMatch(/names no host/);
  // Registered in the target's store and in the live one.
  expect(existsSync(path.join(root, storePath))).toBe(true);
  expect(existsSync(path.join(fixture.dir, 'live-store', storePath))).toBe(true);
  // The installed flake evaluates offline against the target's store, the private repository gone.
  const evaluated = evalValue(fixture, root, path.join(root, 'etc/nixos'));
  expect(evaluated.stderr.split('\n').filter((line) => line && !/warning/.test(line))).toEqual([]);
  expect(evaluated.stdout).toBe('secret-module');
  // The second private input, a folder elsewhere on the operator's machine, is not needed either.
  expect(installed.stdout).toMatch(/registered flake input notes as \/nix\/store\/[0-9a-z]{32}-source/);
  await rm(fixture.extraFolder, { recursive: true, force: true });
  expect(evalValue(fixture, root, path.join(root, 'etc/nixos'), 'note').stdout).toBe('private note');

  // The same evaluation without the seed's input: Nix tries git over ssh and fails.
  const bare = path.join(fixture.dir, `bare-${path.basename(seed)}`);
  await mkdir(path.join(bare, 'etc/nixos'), { recursive: true });
  const archive = (await readdir(path.join(seed, 'source'))).find((name) => name.endsWith('.tar.gz'))!;
  execFileSync('tar', ['-xzf', path.join(seed, 'source', archive), '-C', path.join(bare, 'etc/nixos'), '--strip-components=1']);
  const without = evalValue(fixture, bare, path.join(bare, 'etc/nixos'));
  expect(without.code).not.toBe(0);
  expect(without.stderr).toMatch(/git|ssh/);
}

describe('private flake inputs on the seed', () => {
  it('carries an input found in a local Nix store; seed-install.sh registers it; the flake evaluates offline', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir);
    const seed = path.join(dir, 'seed-store');
    const built = await build(['--target', seed, '--nix-store', fixture.store], fixture);
    expect(built.stderr).not.toMatch(/Error|error:/);
    expect(built.code).toBe(0);
    const json = JSON.parse(built.stdout);
    const inputs = Object.fromEntries(json.flake.inputs.map((input: { name: string }) => [input.name, input]));
    // Public inputs are left alone; the relative path input is already in the archive.
    expect(inputs.nixpkgs).toMatchObject({ class: 'fetched', url: 'github:NixOS/nixpkgs' });
    expect(inputs.nixpkgs.file).toBeUndefined();
    expect(inputs.local).toMatchObject({ class: 'in-repo' });
    expect(inputs.local.file).toBeUndefined();
    expect(inputs.secrets).toMatchObject({ class: 'carried', type: 'git', url: 'ssh://git@unreachable.invalid/operator/nix-secrets.git', rev: fixture.rev, narHash: fixture.narHash, storePath: fixedOutputSourcePath(fixture.narHash), from: 'store' });
    expect(inputs.secrets.reason).toMatch(/ssh/);
    expect(inputs.notes).toMatchObject({ class: 'carried', type: 'path', from: 'store' });
    expect(inputs.notes.reason).toMatch(/absolute path/);
    const short = Buffer.from(fixture.narHash.slice('sha256-'.length), 'base64').toString('hex').slice(0, 12);
    expect(inputs.secrets.file).toBe(`inputs/secrets-${short}.tar.gz`);
    // Listed in SHA256SUMS with the manifest's digest, verified by coreutils; one top folder `source/`.
    const sums = await readFile(path.join(seed, 'SHA256SUMS'), 'utf8');
    expect(sums).toContain(`${inputs.secrets.sha256}  ${inputs.secrets.file}`);
    execFileSync('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: seed });
    const members = execFileSync('tar', ['-tzf', path.join(seed, inputs.secrets.file)], { encoding: 'utf8' }).trim().split('\n');
    expect(members[0]).toBe('source/');
    expect(members.every((member) => member === 'source/' || member.startsWith('source/'))).toBe(true);
    expect(json.verify.ok).toBe(true);
    expect(json.verify.checked.join('\n')).toMatch(/flake inputs: 2 of 2 carried inputs have the locked NAR hash/);
    // The tarball's tree is exactly the locked tree: nix hash path of it unpacked gives the narHash.
    const unpacked = await mkdtemp(path.join(tmpdir(), 'dubnium-input-'));
    execFileSync('tar', ['-xzf', path.join(seed, inputs.secrets.file), '-C', unpacked]);
    expect(fixture.nix.run('nix', ['hash', 'path', path.join(unpacked, 'source')]).trim()).toBe(fixture.narHash);
    execFileSync('rm', ['-rf', unpacked]);

    await expectInstallsAndEvaluates(fixture, seed);

    // A second build of the same lock gives the same bytes (deterministic like the source archive).
    const again = path.join(dir, 'seed-again');
    expect((await build(['--target', again, '--nix-store', fixture.store, '--no-verify'], fixture)).code).toBe(0);
    expect(await readFile(path.join(again, inputs.secrets.file))).toEqual(await readFile(path.join(seed, inputs.secrets.file)));
  });

  it('carries an input from a local clone named in the profile, with the same bytes as from the store', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir);
    const emptyStore = path.join(dir, 'empty-store');
    await mkdir(emptyStore);
    const profile = path.join(dir, 'profile.yaml');
    await writeFile(profile, [
      'source:',
      `  repo: ${fixture.configRepo}`,
      '  inputClones:',
      `    secrets: ${fixture.privateRepo}`,
      `  nixStore: ${emptyStore}`,
      '  flakeHost: workstation',
      `target:`,
      `  folder: ${path.join(dir, 'seed-clone')}`,
      '',
    ].join('\n'));
    const built = await runCli(['build', '--profile', profile, '--json', '--no-operator-secrets'], { env: cliEnv({ HOME: fixture.nix.env.HOME }) });
    expect(built.stderr).not.toMatch(/Error/);
    expect(built.code).toBe(0);
    const json = JSON.parse(built.stdout);
    const secrets = json.flake.inputs.find((input: { name: string }) => input.name === 'secrets');
    expect(secrets).toMatchObject({ class: 'carried', from: 'clone', narHash: fixture.narHash });
    // The path input is not in this (empty) store: its own folder is used, proved by its narHash.
    expect(json.flake.inputs.find((input: { name: string }) => input.name === 'notes')).toMatchObject({ class: 'carried', from: 'folder' });
    expect(json.flake.host).toBe('workstation');
    const seed = path.join(dir, 'seed-clone');

    // The same input from the store packs to the same bytes.
    const fromStore = path.join(dir, 'seed-store');
    expect((await build(['--target', fromStore, '--nix-store', fixture.store, '--no-verify'], fixture)).code).toBe(0);
    expect(await readFile(path.join(fromStore, secrets.file))).toEqual(await readFile(path.join(seed, secrets.file)));

    const root = path.join(dir, 'root');
    await mkdir(root);
    const installed = install(fixture, seed, root);
    expect(installed.code).toBe(0);
    expect(installed.stdout).toContain(`next: nixos-install --root ${root} --flake ${root}/etc/nixos#workstation`);
    expect(evalValue(fixture, root, path.join(root, 'etc/nixos')).stdout).toBe('secret-module');
    // The private repository is not needed at install: the input evaluates with it gone.
    execFileSync('rm', ['-rf', fixture.privateRepo, fixture.extraFolder]);
    expect(evalValue(fixture, root, path.join(root, 'etc/nixos')).stdout).toBe('secret-module');
    expect(evalValue(fixture, root, path.join(root, 'etc/nixos'), 'note').stdout).toBe('private note');
  });

  it('an input whose bytes are nowhere on this machine stops the build with exit 2, naming both ways to provide it', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir);
    const emptyStore = path.join(dir, 'empty-store');
    await mkdir(emptyStore);
    const seed = path.join(dir, 'seed');
    const built = await build(['--target', seed, '--nix-store', emptyStore], fixture);
    expect(built.code).toBe(2);
    expect(built.stderr).toMatch(/Flake input secrets \(ssh:\/\/git@unreachable\.invalid\/operator\/nix-secrets\.git\) must travel on the seed/);
    expect(built.stderr).toMatch(/build or evaluate the flake once here/);
    expect(built.stderr).toMatch(/source\.inputClones/);
    expect(existsSync(path.join(seed, 'dubnium-seed.json'))).toBe(false);
  });

  it('a key committed inside the private input makes build exit 4 and leaves no manifest', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir, { 'keys/deploy_ed25519': sshKey('ed25519').privateKey });
    const seed = path.join(dir, 'seed');
    const built = await build(['--target', seed, '--nix-store', fixture.store], fixture);
    expect(built.code).toBe(4);
    expect(built.stderr).toMatch(/Credentials found in flake input secrets/);
    expect(built.stderr).toMatch(/openssh-private-key/);
    expect(existsSync(path.join(seed, 'dubnium-seed.json'))).toBe(false);
    expect(existsSync(path.join(seed, 'inputs'))).toBe(false);
  });

  it('a SOPS value quoted inside the private input (its own file\'s, or the repository\'s) makes build exit 4, naming the key path, never the value', async () => {
    const dir = await tempDir();
    const key = ageKeyFile();
    const own = `input-${randomBytes(8).toString('hex')}`;
    const repoValue = `repo-${randomBytes(8).toString('hex')}`;
    const inputSecrets = await sopsEncrypt({ api: { token: own } }, { recipients: [key.recipient], format: 'yaml' });
    // The private input: its own SOPS file, and notes quoting both values as prose (no pattern rule knows them).
    const fixture = await makeFlakeFixture(dir, {
      'secrets/api.yaml': inputSecrets.text,
      'docs/notes.md': `Rotate the API token ${own} monthly; the backup password is ${repoValue}.\n`,
    });
    const repoSecrets = await sopsEncrypt({ backup: { password: repoValue } }, { recipients: [key.recipient], format: 'yaml' });
    await mkdir(path.join(fixture.configRepo, 'secrets'), { recursive: true });
    await writeFile(path.join(fixture.configRepo, 'secrets/host.yaml'), repoSecrets.text);
    execFileSync('git', ['add', '-A'], { cwd: fixture.configRepo });
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-qm', 'secrets'], { cwd: fixture.configRepo });
    const keyFile = path.join(dir, 'age-keys.txt');
    await writeFile(keyFile, key.file, { mode: 0o600 });
    const seed = path.join(dir, 'seed');
    const built = await runCli(['build', '--repo', fixture.configRepo, '--json', '--target', seed, '--nix-store', fixture.store], {
      env: cliEnv({ HOME: fixture.nix.env.HOME, SOPS_AGE_KEY_FILE: keyFile }),
    });
    expect(built.code, built.stderr).toBe(4);
    expect(built.stderr).toMatch(/Credentials found in flake input secrets/);
    expect(built.stderr).toMatch(/sops-value/);
    expect(built.stderr).toContain('secrets/api.yaml: api/token');
    expect(built.stderr).toContain('secrets/host.yaml: backup/password');
    for (const value of [own, repoValue]) {
      expect(built.stdout).not.toContain(value);
      expect(built.stderr).not.toContain(value);
    }
    expect(existsSync(path.join(seed, 'dubnium-seed.json'))).toBe(false);
    expect(existsSync(path.join(seed, 'inputs'))).toBe(false);
  });

  it('bytes that differ from the lock (a changed local folder) stop the build with exit 2 and no manifest', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir);
    // A clone whose locked commit exists, but a local `path:` input that changed since it was locked.
    const folder = path.join(dir, 'private-modules');
    await mkdir(folder);
    await writeFile(path.join(folder, 'default.nix'), '{ }\n');
    const narHash = fixture.nix.run('nix', ['hash', 'path', folder]).trim();
    const lockFile = path.join(fixture.configRepo, 'flake.lock');
    const lock = JSON.parse(await readFile(lockFile, 'utf8'));
    lock.nodes.modules = { flake: false, locked: { lastModified: 1, narHash, path: folder, type: 'path' }, original: { path: folder, type: 'path' } };
    lock.nodes.root.inputs.modules = 'modules';
    await writeFile(lockFile, `${JSON.stringify(lock, null, 2)}\n`);
    await writeFile(path.join(folder, 'default.nix'), '{ changed = true; }\n');
    const seed = path.join(dir, 'seed');
    const built = await build(['--target', seed, '--nix-store', fixture.store, '--include-untracked'], fixture);
    expect(built.code).toBe(2);
    expect(built.stderr).toMatch(/The bytes found for flake input modules at the folder .* do not match flake\.lock/);
    expect(existsSync(path.join(seed, 'dubnium-seed.json'))).toBe(false);
  });

  it('seed-install.sh without nix-store on PATH installs the rest and says the inputs were not registered', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir);
    const seed = path.join(dir, 'seed');
    expect((await build(['--target', seed, '--nix-store', fixture.store, '--no-verify'], fixture)).code).toBe(0);
    const applets = path.join(dir, 'busybox-bin');
    await mkdir(applets);
    for (const applet of execFileSync('busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean)) await symlink('/usr/bin/busybox', path.join(applets, applet));
    const root = path.join(dir, 'root');
    await mkdir(root);
    const installed = install(fixture, seed, root, [], { PATH: applets }, '/usr/bin/busybox');
    expect(installed.code).toBe(0);
    expect(installed.stderr).toMatch(/nix-store is not on PATH: the carried flake inputs are NOT registered/);
    expect(existsSync(path.join(root, 'etc/nixos/flake.nix'))).toBe(true);
    expect(existsSync(path.join(root, 'nix'))).toBe(false);
  });

  it('--dry-run lists the inputs it would register and writes nothing', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir);
    const seed = path.join(dir, 'seed');
    expect((await build(['--target', seed, '--nix-store', fixture.store, '--no-verify'], fixture)).code).toBe(0);
    const root = path.join(dir, 'root');
    await mkdir(root);
    const dry = install(fixture, seed, root, ['--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`would register flake input secrets (inputs/secrets-`);
    expect(dry.stdout).toContain(fixedOutputSourcePath(fixture.narHash));
    expect(await readdir(root)).toEqual([]);
  });
});
