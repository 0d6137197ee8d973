/**
 * Signed seeds end to end: `build --sign` with a key file and through a real ssh-agent, `verify
 * --signer` (fingerprint and .pub forms, folders and a FAT image), and the seed's own
 * seed-install.sh --signer, which must refuse an unsigned seed, a stale signature and another
 * signer with nothing written. Keys are made fresh by ssh-keygen for every test.
 */
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBundle } from '../helpers/bundles.js';
import { cliEnv, runCli } from '../helpers/cli.js';
import { makeKey, startAgent, type TestKey } from '../helpers/ssh-signing.js';
import { git, gitRepo, listTree, tempDir, writeTree } from '../helpers/tmp.js';

let repo = '';
let bundleDir = '';

let workspace = '';
beforeAll(async () => {
  // Not tempDir(): that folder goes after the first test, and every test builds from this one.
  workspace = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-sign-'));
  repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'hosts/a/default.nix': '{ ... }: { }\n' }, path.join(workspace, 'repo'));
  bundleDir = (await writeBundle(path.join(workspace, 'models', 'tiny-llama'), { shards: 2 })).dir;
}, 60_000);
afterAll(async () => {
  if (workspace) await rm(workspace, { recursive: true, force: true });
});

const noAgent = cliEnv({ SSH_AUTH_SOCK: '' });

async function build(target: string, extra: string[], env: NodeJS.ProcessEnv = noAgent) {
  return runCli(['build', '--repo', repo, '--model', bundleDir, '--target', target, ...extra], { env });
}

async function buildOk(target: string, extra: string[], env?: NodeJS.ProcessEnv) {
  const result = await build(target, [...extra, '--no-verify', '--json'], env);
  if (result.code !== 0) throw new Error(`build failed (${result.code}): ${result.stderr}`);
  return JSON.parse(result.stdout) as { signature: { fingerprint: string; via: string; file: string } | null };
}

/** Runs the seed's own seed-install.sh under dash into a fresh root holding one file; returns what it did and whether the root changed. */
async function install(seed: string, args: string[]) {
  const root = await tempDir();
  await writeTree(root, { 'etc/nixos/hardware-configuration.nix': '{ }\n' });
  const before = listTree(root);
  const result = spawnSync('dash', [path.join(seed, 'seed-install.sh'), '--root', root, ...args], { encoding: 'utf8', timeout: 120_000, env: { PATH: process.env.PATH } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, unchanged: JSON.stringify(listTree(root)) === JSON.stringify(before), root };
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('build --sign with a key file', () => {
  it('signs, prints the fingerprint, verifies with --signer (fingerprint and .pub), and installs with --signer', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_ed25519');
    const seed = path.join(dir, 'seed');
    const result = await build(seed, ['--sign', key.file]);
    expect(result.stderr).not.toMatch(/internal error/);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`signed  dubnium-seed.json.sig by ${key.fingerprint} (ED25519 id_ed25519@example.invalid, key file)`);
    expect(result.stdout).toContain(`seed-install.sh --root /mnt --signer ${key.fingerprint}`);
    expect(existsSync(path.join(seed, 'dubnium-seed.json.sig'))).toBe(true);
    // The key itself never reaches the media.
    const keyBytes = await readFile(key.file, 'utf8');
    for (const file of listTree(seed).filter((name) => !name.endsWith('/') && existsSync(path.join(seed, name)))) {
      if ((await readFile(path.join(seed, file)).catch(() => Buffer.alloc(0))).includes(keyBytes.split('\n')[1]!)) throw new Error(`${file} holds the key`);
    }

    const byFingerprint = await runCli(['verify', seed, '--signer', key.fingerprint], { env: noAgent });
    expect(byFingerprint.code).toBe(0);
    expect(byFingerprint.stdout).toContain(`signature  signed by ${key.fingerprint} (ED25519); the required signer`);
    expect(byFingerprint.stdout).not.toMatch(/UNEXPECTED/);
    const byPub = await runCli(['verify', seed, '--signer', key.pub, '--json'], { env: noAgent });
    expect(byPub.code).toBe(0);
    expect(JSON.parse(byPub.stdout).signature).toEqual({ state: 'valid', fingerprint: key.fingerprint, keyType: 'ED25519', expected: key.fingerprint, signerMatches: true });

    const installed = await install(seed, ['--signer', key.fingerprint]);
    expect(installed.stderr).toBe('');
    expect(installed.status).toBe(0);
    expect(installed.stdout).toContain(`signature: dubnium-seed.json is signed by ${key.fingerprint} (the required signer)`);
    expect(existsSync(path.join(installed.root, 'var/lib/dubnium/models/tiny-llama/config.json'))).toBe(true);

    // busybox sh, as some live systems run it: the same check passes.
    const busybox = spawnSync('busybox', ['sh', path.join(seed, 'seed-install.sh'), '--root', await tempDir(), '--dry-run', '--signer', key.fingerprint], { encoding: 'utf8', timeout: 120_000 });
    expect(busybox.stderr).toBe('');
    expect(busybox.status).toBe(0);
    expect(busybox.stdout).toContain(`signed by ${key.fingerprint} (the required signer)`);
  }, 180_000);

  it('reports the signer without checking it when --signer is not given', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id');
    const seed = path.join(dir, 'seed');
    await buildOk(seed, ['--sign', key.file]);
    const human = await runCli(['verify', seed], { env: noAgent });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`signature  signed by ${key.fingerprint} (ED25519); signer not checked`);
    const json = await runCli(['verify', seed, '--json'], { env: noAgent });
    expect(JSON.parse(json.stdout).signature).toEqual({ state: 'valid', fingerprint: key.fingerprint, keyType: 'ED25519' });
    const installed = await install(seed, ['--dry-run']);
    expect(installed.status).toBe(0);
    expect(installed.stdout).toContain('signature: the seed carries dubnium-seed.json.sig, NOT checked');
  }, 120_000);
});

describe('build --sign through ssh-agent', () => {
  it('signs with only the public key named (the private key file is gone), and the seed verifies and installs', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_agent');
    const agent = await startAgent(dir);
    agent.add(key);
    await rename(key.file, path.join(dir, 'moved-away'));
    const seed = path.join(dir, 'seed');
    const built = await buildOk(seed, ['--sign', key.pub], cliEnv(agent.env));
    expect(built.signature).toMatchObject({ fingerprint: key.fingerprint, via: 'ssh-agent', file: 'dubnium-seed.json.sig' });
    for (const signer of [key.fingerprint, key.pub]) {
      const verified = await runCli(['verify', seed, '--signer', signer], { env: noAgent });
      expect(verified.code).toBe(0);
    }
    const installed = await install(seed, ['--signer', key.fingerprint]);
    expect(installed.status).toBe(0);
  }, 120_000);

  it('exits 2 naming the fingerprint when the agent does not hold the key, and writes nothing', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_absent');
    const agent = await startAgent(dir);
    const seed = path.join(dir, 'seed');
    const result = await build(seed, ['--sign', key.pub], cliEnv(agent.env));
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(new RegExp(`ssh-agent does not hold the private key of ${escape(key.fingerprint)}`));
    expect(existsSync(seed)).toBe(false);
  }, 60_000);
});

describe('refusals', () => {
  it('exits 2 at once for a passphrase-protected key file in scripted mode, with the ssh-agent advice', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_locked', { passphrase: 'a passphrase' });
    const seed = path.join(dir, 'seed');
    const started = Date.now();
    const result = await Promise.race([
      build(seed, ['--sign', key.file]),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('build --sign with a passphrase key hung')), 30_000)),
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/protected by a passphrase.*load it into ssh-agent \(ssh-add .*id_locked\) and pass the public key \(--sign .*id_locked\.pub\)/);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(existsSync(seed)).toBe(false);
  }, 60_000);

  it('a --sign key file inside the repository still blocks the build (exit 4)', async () => {
    const dir = await tempDir();
    const inside = await gitRepo({ 'flake.nix': '{ }\n' }, path.join(dir, 'repo'));
    const key = makeKey(inside, 'signing-key');
    git(inside, 'add', '-A');
    git(inside, 'commit', '-q', '-m', 'oops');
    const seed = path.join(dir, 'seed');
    const result = await runCli(['build', '--repo', inside, '--target', seed, '--sign', key.file], { env: noAgent });
    expect(result.code).toBe(4);
    expect(existsSync(path.join(seed, 'dubnium-seed.json'))).toBe(false);
    expect(existsSync(path.join(seed, 'dubnium-seed.json.sig'))).toBe(false);
  }, 60_000);
});

describe('a seed not signed by the expected key', () => {
  it('rebuilt unsigned: the old signature is removed; copied back in, it is a bad signature for verify and seed-install', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id');
    const seed = path.join(dir, 'seed');
    await buildOk(seed, ['--sign', key.file]);
    const oldSignature = path.join(dir, 'old.sig');
    await copyFile(path.join(seed, 'dubnium-seed.json.sig'), oldSignature);

    await buildOk(seed, []);
    expect(existsSync(path.join(seed, 'dubnium-seed.json.sig'))).toBe(false);
    const unsigned = await runCli(['verify', seed, '--signer', key.fingerprint], { env: noAgent });
    expect(unsigned.code).toBe(3);
    expect(unsigned.stdout).toContain(`unsigned: the seed has no dubnium-seed.json.sig, so it cannot be shown to come from ${key.fingerprint}`);
    const plain = await runCli(['verify', seed, '--json'], { env: noAgent });
    expect(plain.code).toBe(0);
    expect(JSON.parse(plain.stdout).signature).toEqual({ state: 'unsigned' });
    const refusedUnsigned = await install(seed, ['--signer', key.fingerprint]);
    expect(refusedUnsigned.status).toBe(3);
    expect(refusedUnsigned.stderr).toContain('unsigned: the seed has no dubnium-seed.json.sig');
    expect(refusedUnsigned.unchanged).toBe(true);
    const notChecked = await install(seed, ['--dry-run']);
    expect(notChecked.stdout).toContain('signature: the seed is not signed (no dubnium-seed.json.sig); its signer was not checked');

    await copyFile(oldSignature, path.join(seed, 'dubnium-seed.json.sig'));
    const stale = await runCli(['verify', seed, '--signer', key.fingerprint], { env: noAgent });
    expect(stale.code).toBe(3);
    // Problem lines are upper-case kinds; the lower-case "signature" status line is not one.
    const problemLines = stale.stdout.split('\n').filter((line) => /^ {2}[A-Z-]+ {2,}/.test(line));
    expect(problemLines).toEqual([expect.stringMatching(new RegExp(`^ {2}SIGNATURE +bad signature: dubnium-seed\\.json\\.sig \\(key ${escape(key.fingerprint)}\\) does not verify for this manifest`))]);
    const refused = await install(seed, ['--signer', key.fingerprint]);
    expect(refused.status).toBe(3);
    expect(refused.stderr).toMatch(/signature check failed: bad signature: .* does not verify for this manifest.*nothing was written/);
    expect(refused.unchanged).toBe(true);
  }, 180_000);

  it('signed with another key: verify names both fingerprints, seed-install refuses with nothing written', async () => {
    const dir = await tempDir();
    const mine = makeKey(dir, 'mine');
    const theirs = makeKey(dir, 'theirs');
    const seed = path.join(dir, 'seed');
    await buildOk(seed, ['--sign', theirs.file]);
    const result = await runCli(['verify', seed, '--signer', mine.pub], { env: noAgent });
    expect(result.code).toBe(3);
    expect(result.stdout).toContain(`other signer: the seed is signed by ${theirs.fingerprint}, not by the expected ${mine.fingerprint}`);
    const json = await runCli(['verify', seed, '--signer', mine.fingerprint, '--json'], { env: noAgent });
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout).problems).toEqual([expect.objectContaining({ path: 'dubnium-seed.json.sig', kind: 'signature' })]);
    const refused = await install(seed, ['--signer', mine.fingerprint]);
    expect(refused.status).toBe(3);
    expect(refused.stderr).toContain(`other signer: the seed is signed by ${theirs.fingerprint}, not by the expected ${mine.fingerprint}`);
    expect(refused.unchanged).toBe(true);
  }, 120_000);

  it('payload and SHA256SUMS changed together under a signed manifest: seed-install refuses, as the manifest records the SHA256SUMS digest', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id');
    const seed = path.join(dir, 'seed');
    await buildOk(seed, ['--sign', key.file]);
    const target = 'models/tiny-llama/config.json';
    await writeFile(path.join(seed, target), '{"evil": true}\n');
    const sums = (await readFile(path.join(seed, 'SHA256SUMS'), 'utf8')).replace(/^[0-9a-f]{64}(?= {2}models\/tiny-llama\/config\.json$)/m, createHash('sha256').update('{"evil": true}\n').digest('hex'));
    await writeFile(path.join(seed, 'SHA256SUMS'), sums);
    const refused = await install(seed, ['--signer', key.fingerprint]);
    expect(refused.status).toBe(3);
    expect(refused.stderr).toContain('SHA256SUMS does not match the digest dubnium-seed.json records');
    expect(refused.unchanged).toBe(true);
  }, 120_000);

  it('--signer that is not a fingerprint or key is a usage error (exit 2)', async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, 'seed'));
    const result = await runCli(['verify', path.join(dir, 'seed'), '--signer', 'SHA256:abc'], { env: noAgent });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/not a whole SHA256 fingerprint/);
  });
});

describe('verify --signer of a partition image', () => {
  it('reads the signature out of a FAT image (mtools) and checks it', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id');
    const other: TestKey = makeKey(dir, 'other');
    const image = path.join(dir, 'seed.img');
    const built = await runCli(['build', '--repo', repo, '--model', bundleDir, '--image', image, '--filesystem', 'fat', '--label', 'SIGNEDSEED', '--sign', key.file, '--json'], { env: noAgent });
    expect(built.stderr).not.toMatch(/internal error/);
    expect(built.code).toBe(0);
    const good = await runCli(['verify', image, '--signer', key.fingerprint], { env: noAgent });
    expect(good.code).toBe(0);
    expect(good.stdout).toContain('the required signer');
    const bad = await runCli(['verify', image, '--signer', other.fingerprint], { env: noAgent });
    expect(bad.code).toBe(3);
    expect(bad.stdout).toContain(`other signer: the seed is signed by ${key.fingerprint}`);
  }, 180_000);
});
