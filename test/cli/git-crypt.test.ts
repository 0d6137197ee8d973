/**
 * git-crypt repositories, with the real git-crypt: a work tree left unlocked holds its secrets in
 * plaintext, and neither `scan` nor `build` lets them through; a locked one is clean (its
 * ciphertext, even under a key's name, is not a finding); the key itself is found wherever it lies.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Finding } from '../../src/core/types.js';
import { cliEnv, runCli } from '../helpers/cli.js';
import { makeIso } from '../helpers/installer-image.js';
import { mksquashfs, storeHash } from '../helpers/squashfs-image.js';
import { git, listTree, tempDir, writeTree } from '../helpers/tmp.js';


function gitCrypt(cwd: string, ...args: string[]): void {
  execFileSync('git-crypt', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: cwd, GIT_CONFIG_NOSYSTEM: '1' } });
}

/** Words no rule reads as a credential: only git-crypt's attributes make these files secret. */
const SECRET_NIX = '{ wifi = "correct horse battery staple"; door = "4711"; }\n';

/** A git-crypt repository, committed encrypted and left unlocked (as after `git-crypt unlock`), and its exported key. */
async function unlockedRepo(extra: Record<string, string | Buffer> = {}): Promise<{ repo: string; key: string }> {
  const repo = await tempDir('dubnium-seed-gitcrypt-');
  git(repo, 'init', '-q');
  gitCrypt(repo, 'init');
  await writeTree(repo, {
    'flake.nix': '{ outputs = { self }: { }; }\n',
    '.gitattributes': 'secrets/** filter=git-crypt diff=git-crypt\n*.key filter=git-crypt diff=git-crypt\n.gitattributes !filter !diff\nsecrets/README.md !filter !diff\n',
    'secrets/README.md': 'These files are encrypted with git-crypt.\n',
    'secrets/wifi.nix': SECRET_NIX,
    'secrets/ssh/id_ed25519': 'not really a key, but encrypted like one\n',
    'hosts/luks.key': 'a passphrase kept as a file\n',
    ...extra,
  });
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'initial');
  const key = path.join(await tempDir('dubnium-seed-gitcrypt-key-'), 'repo.key');
  gitCrypt(repo, 'export-key', key);
  return { repo, key };
}

async function scanJson(target: string): Promise<{ code: number | null; findings: Finding[] }> {
  const result = await runCli(['scan', '--json', '--no-operator-secrets', target], { env: cliEnv({ HOME: await tempDir('dubnium-seed-home-') }) });
  const document = JSON.parse(result.stdout) as { findings: Finding[] };
  return { code: result.code, findings: document.findings };
}

describe('git-crypt: an unlocked work tree is a leak, a locked one is not', () => {
  it('scan: the files .gitattributes gives to git-crypt are findings while unlocked, and the key in .git too', async () => {
    const { repo } = await unlockedRepo();
    // The commit holds ciphertext, the work tree plaintext: what an unlocked clone looks like.
    expect(git(repo, 'show', 'HEAD:secrets/wifi.nix').startsWith('\0GITCRYPT\0')).toBe(true);
    expect(readFileSync(path.join(repo, 'secrets/wifi.nix'), 'utf8')).toBe(SECRET_NIX);
    const { code, findings } = await scanJson(repo);
    expect(code).toBe(4);
    const plaintext = findings.filter((finding) => finding.rule === 'git-crypt-plaintext').map((finding) => finding.path).sort();
    expect(plaintext).toEqual(['hosts/luks.key', 'secrets/ssh/id_ed25519', 'secrets/wifi.nix']);
    expect(findings.find((finding) => finding.rule === 'git-crypt-key')).toMatchObject({ path: '.git/git-crypt/keys/default', kind: 'private-key' });
    for (const finding of findings) expect(finding.fingerprint).toMatch(/^[a-z0-9-]+:[0-9a-f]{16}$/);
  });

  it('scan: once locked the same tree is clean, ciphertext named id_ed25519 or luks.key included', async () => {
    const { repo } = await unlockedRepo();
    gitCrypt(repo, 'lock');
    expect(readFileSync(path.join(repo, 'secrets/ssh/id_ed25519')).subarray(0, 10).toString('latin1')).toBe('\0GITCRYPT\0');
    const { code, findings } = await scanJson(repo);
    expect(findings).toEqual([]);
    expect(code).toBe(0);
  });

  it('scan: an exported git-crypt key is a finding in a folder, inside an archive and as base64', async () => {
    const { key } = await unlockedRepo();
    const folder = await tempDir('dubnium-seed-gitcrypt-keys-');
    writeFileSync(path.join(folder, 'backup-of-repo-key'), readFileSync(key));
    execFileSync('tar', ['-czf', path.join(folder, 'keys.tar.gz'), '-C', folder, 'backup-of-repo-key']);
    // As CI keeps it: base64 in a variable.
    writeFileSync(path.join(folder, 'ci.env'), `GIT_CRYPT_KEY=${readFileSync(key).toString('base64')}\n`);
    const { code, findings } = await scanJson(folder);
    expect(code).toBe(4);
    const keys = findings.filter((finding) => finding.rule === 'git-crypt-key');
    expect(keys.map((finding) => [finding.path, finding.inner])).toEqual([
      ['backup-of-repo-key', undefined],
      ['ci.env', undefined],
      ['keys.tar.gz', 'backup-of-repo-key'],
    ]);
    // One key, one fingerprint, whatever its form.
    expect(new Set(keys.map((finding) => finding.fingerprint)).size).toBe(1);
  });

  it('scan of an archive of the unlocked tree: plaintext members are found, a large one too, named through the archive', async () => {
    // Over 8 MiB, the member is streamed through the rules rather than held: its first bytes still say it is plaintext.
    const large = Buffer.alloc(9 * 1024 * 1024, 'backup line of nothing secret-looking\n');
    const { repo } = await unlockedRepo({ 'secrets/large.bin': large });
    const out = await tempDir('dubnium-seed-gitcrypt-tar-');
    execFileSync('tar', ['-czf', path.join(out, 'config.tar.gz'), '--exclude=.git', '-C', path.dirname(repo), path.basename(repo)]);
    const { code, findings } = await scanJson(path.join(out, 'config.tar.gz'));
    expect(code).toBe(4);
    const top = path.basename(repo);
    const found = findings.filter((finding) => finding.rule === 'git-crypt-plaintext');
    expect(found.map((finding) => finding.inner).sort()).toEqual([`${top}/hosts/luks.key`, `${top}/secrets/large.bin`, `${top}/secrets/ssh/id_ed25519`, `${top}/secrets/wifi.nix`]);
    expect(found.find((finding) => finding.inner!.endsWith('wifi.nix'))!.chain).toEqual([`${top}/secrets/wifi.nix`]);
    // The same archive of the locked tree: clean.
    gitCrypt(repo, 'lock');
    execFileSync('tar', ['-czf', path.join(out, 'locked.tar.gz'), '--exclude=.git', '-C', path.dirname(repo), path.basename(repo)]);
    expect(await scanJson(path.join(out, 'locked.tar.gz'))).toEqual({ code: 0, findings: [] });
  });

  it('scan of an installer ISO whose store holds the flake source copied from an unlocked work tree', async () => {
    const { repo } = await unlockedRepo();
    const root = await tempDir('dubnium-seed-gitcrypt-iso-');
    const squashRoot = path.join(root, 'store');
    const unlocked = `/nix/store/${storeHash()}-source`;
    const locked = `/nix/store/${storeHash()}-source`;
    const copy = (into: string) => execFileSync('cp', ['-a', `${repo}/.`, path.join(squashRoot, into)]);
    mkdirSync(path.join(squashRoot, unlocked), { recursive: true });
    copy(unlocked);
    gitCrypt(repo, 'lock');
    mkdirSync(path.join(squashRoot, locked), { recursive: true });
    copy(locked);
    for (const store of [unlocked, locked]) rmSync(path.join(squashRoot, store, '.git'), { recursive: true, force: true });
    // A source with attributes that have nothing to do with git-crypt, as nixpkgs' own.
    await writeTree(path.join(squashRoot, `nix/store/${storeHash()}-nixpkgs`), { '.gitattributes': '*.nix diff=nix\n', 'lib/default.nix': '{ }\n' });
    const isoRoot = path.join(root, 'iso');
    mkdirSync(isoRoot);
    mksquashfs(squashRoot, path.join(isoRoot, 'nix-store.squashfs'), ['-comp', 'zstd']);
    const iso = await makeIso(isoRoot, path.join(root, 'nixos.iso'));
    const { code, findings } = await scanJson(iso);
    expect(code).toBe(4);
    expect(findings.map((finding) => [finding.rule, finding.chain?.join(' › ')]).sort()).toEqual([
      ...['hosts/luks.key', 'secrets/ssh/id_ed25519', 'secrets/wifi.nix'].map((file) => ['git-crypt-plaintext', `/nix-store.squashfs › ${unlocked}/${file}`]),
      // Decrypted, it is a file named like an SSH key, as any other; the locked copy's ciphertext is not.
      ['ssh-private-key-file', `/nix-store.squashfs › ${unlocked}/secrets/ssh/id_ed25519`],
    ]);
  });

  it('build: exit 4 from an unlocked work tree with nothing written; a locked one builds and verifies', async () => {
    const { repo } = await unlockedRepo();
    const env = cliEnv({ HOME: await tempDir('dubnium-seed-home-') });
    const target = path.join(await tempDir(), 'seed');
    const refused = await runCli(['build', '--repo', repo, '--target', target, '--no-operator-secrets', '--json'], { env });
    expect(refused.code).toBe(4);
    const document = JSON.parse(refused.stdout) as { error: { type: string }; findings: Finding[] };
    expect(document.error.type).toBe('SecretsFoundError');
    expect(document.findings.map((finding) => finding.rule)).toContain('git-crypt-plaintext');
    expect(document.findings.find((finding) => finding.inner?.endsWith('/secrets/wifi.nix'))).toMatchObject({ kind: 'git-crypt-plaintext', path: expect.stringMatching(/^source\/.+\.tar\.gz$/) });
    expect(refused.stdout + refused.stderr).not.toContain('correct horse');
    expect(listTree(target)).toEqual([]);

    gitCrypt(repo, 'lock');
    const built = await runCli(['build', '--repo', repo, '--target', target, '--no-operator-secrets'], { env });
    expect(built.code).toBe(0);
    expect(built.stdout).toMatch(/^Seed written to /m);
    const verified = await runCli(['verify', target], { env });
    expect(verified.code).toBe(0);
  });

  it('build of a folder inside the work tree: the attributes of the folders above it and of .git/info/attributes count', async () => {
    const { repo } = await unlockedRepo({ 'hosts/alpha/host.env': 'HOST_NOTE=kept in git-crypt by .git/info/attributes\n' });
    writeFileSync(path.join(repo, '.git/info/attributes'), '*.env filter=git-crypt diff=git-crypt\n');
    const env = cliEnv({ HOME: await tempDir('dubnium-seed-home-') });
    const target = path.join(await tempDir(), 'seed');
    const refused = await runCli(['build', '--repo', path.join(repo, 'hosts'), '--target', target, '--no-operator-secrets', '--json'], { env });
    expect(refused.code).toBe(4);
    const document = JSON.parse(refused.stdout) as { findings: Finding[] };
    expect(document.findings.filter((finding) => finding.rule === 'git-crypt-plaintext').map((finding) => finding.inner!.replace(/^[^/]+\//, '')).sort()).toEqual(['alpha/host.env', 'luks.key']);
    expect(listTree(target)).toEqual([]);
  });
});

/**
 * A repository set up the way transcrypt sets one up (transcrypt is not in Debian 12): git's
 * `filter.crypt` runs `openssl enc -a` with the password from `.git/config` (`transcrypt.password`),
 * so git stores base64 that begins `U2FsdGVkX1`; the work tree is
 * plaintext, as after `transcrypt -c …`. Real git filters, real openssl.
 */
async function transcryptRepo(): Promise<{ repo: string; password: string }> {
  const repo = await tempDir('dubnium-seed-transcrypt-');
  git(repo, 'init', '-q');
  const password = randomBytes(24).toString('base64');
  mkdirSync(path.join(repo, '.git/crypt'));
  const openssl = 'ENC_PASS=$(git config transcrypt.password) exec openssl enc -aes-256-cbc -md MD5 -pass env:ENC_PASS -a';
  // openssl writes `Salted__` and a fresh salt; transcrypt derives its salt from the file and writes the same header.
  writeFileSync(path.join(repo, '.git/crypt/clean'), `#!/bin/sh\n${openssl} -e\n`, { mode: 0o755 });
  writeFileSync(path.join(repo, '.git/crypt/smudge'), `#!/bin/sh\n${openssl} -d\n`, { mode: 0o755 });
  git(repo, 'config', 'transcrypt.cipher', 'aes-256-cbc');
  git(repo, 'config', 'transcrypt.password', password);
  git(repo, 'config', 'filter.crypt.clean', '"$(git rev-parse --git-common-dir)"/crypt/clean %f');
  git(repo, 'config', 'filter.crypt.smudge', '"$(git rev-parse --git-common-dir)"/crypt/smudge');
  git(repo, 'config', 'filter.crypt.required', 'true');
  await writeTree(repo, {
    'flake.nix': '{ outputs = { self }: { }; }\n',
    '.gitattributes': 'secrets/*.nix filter=crypt diff=crypt merge=crypt\nhosts/luks.key filter=crypt-infra diff=crypt-infra\n',
    'secrets/wifi.nix': SECRET_NIX,
    'secrets/notes.md': 'not governed\n',
    'hosts/luks.key': 'a passphrase kept as a file\n',
  });
  git(repo, 'config', 'filter.crypt-infra.clean', '"$(git rev-parse --git-common-dir)"/crypt/clean %f');
  git(repo, 'config', 'filter.crypt-infra.smudge', '"$(git rev-parse --git-common-dir)"/crypt/smudge');
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'initial');
  return { repo, password };
}

/** `transcrypt --flush-credentials`: the password and filters leave `.git/config`, and the work tree is checked out as ciphertext. */
function transcryptLock(repo: string): void {
  for (const section of ['transcrypt', 'filter.crypt', 'filter.crypt-infra']) git(repo, 'config', '--remove-section', section);
  rmSync(path.join(repo, 'secrets/wifi.nix'));
  rmSync(path.join(repo, 'hosts/luks.key'));
  git(repo, 'checkout', '-f', 'HEAD', '--', '.');
}

describe('transcrypt: an unlocked work tree is a leak, a locked one is not', () => {
  it('scan: the files given to filter=crypt (and crypt-CONTEXT) are findings while unlocked, with the password in .git/config; locked, clean', async () => {
    const { repo, password } = await transcryptRepo();
    expect(git(repo, 'show', 'HEAD:secrets/wifi.nix').startsWith('U2FsdGVkX1')).toBe(true);
    const unlocked = await scanJson(repo);
    expect(unlocked.code).toBe(4);
    expect(unlocked.findings.filter((finding) => finding.rule === 'git-crypt-plaintext').map((finding) => finding.path).sort()).toEqual(['hosts/luks.key', 'secrets/wifi.nix']);
    expect(unlocked.findings.filter((finding) => finding.rule !== 'git-crypt-plaintext').map((finding) => [finding.path, finding.rule])).toEqual([['.git/config', 'config-password']]);
    expect(JSON.stringify(unlocked.findings)).not.toContain(password);

    transcryptLock(repo);
    expect(readFileSync(path.join(repo, 'hosts/luks.key'), 'latin1').startsWith('U2FsdGVkX1')).toBe(true);
    expect(await scanJson(repo)).toEqual({ code: 0, findings: [] });
  });

  it('build: exit 4 from an unlocked work tree with nothing written; a locked one builds', async () => {
    const { repo } = await transcryptRepo();
    const env = cliEnv({ HOME: await tempDir('dubnium-seed-home-') });
    const target = path.join(await tempDir(), 'seed');
    const refused = await runCli(['build', '--repo', repo, '--target', target, '--no-operator-secrets', '--json'], { env });
    expect(refused.code).toBe(4);
    const document = JSON.parse(refused.stdout) as { findings: Finding[] };
    expect(document.findings.filter((finding) => finding.rule === 'git-crypt-plaintext').map((finding) => finding.inner!.replace(/^[^/]+\//, '')).sort()).toEqual(['hosts/luks.key', 'secrets/wifi.nix']);
    expect(listTree(target)).toEqual([]);

    transcryptLock(repo);
    const built = await runCli(['build', '--repo', repo, '--target', target, '--no-operator-secrets'], { env });
    expect(built.code).toBe(0);
  });
});

describe("a work tree's .git/info/attributes", () => {
  it('scan of the work tree reads it after every .gitattributes, as git does', async () => {
    const { repo } = await unlockedRepo({ 'hosts/alpha/host.env': 'HOST_NOTE=kept in git-crypt by .git/info/attributes\n' });
    gitCrypt(repo, 'lock');
    writeFileSync(path.join(repo, '.git/info/attributes'), '*.env filter=git-crypt diff=git-crypt\nhosts/luks.key -filter\n');
    // Locked, what .gitattributes gave git-crypt is ciphertext; the file info/attributes gives it is plaintext, and so a finding.
    const { code, findings } = await scanJson(repo);
    expect(code).toBe(4);
    expect(findings.map((finding) => [finding.path, finding.rule])).toEqual([['hosts/alpha/host.env', 'git-crypt-plaintext']]);
  });
});

describe('a squashfs holding a work tree whose only attributes are in .git/info/attributes', () => {
  it('scan of the image reads them too: the plaintext they give to git-crypt is a finding', async () => {
    const root = await tempDir('dubnium-seed-info-attributes-squashfs-');
    const tree = path.join(root, 'store');
    const source = `nix/store/${storeHash()}-source`;
    await writeTree(path.join(tree, source), {
      '.git/info/attributes': 'secrets/*.env filter=git-crypt diff=git-crypt\n',
      'secrets/host.env': 'HOST_NOTE=kept in git-crypt by .git/info/attributes only\n',
      'flake.nix': '{ outputs = _: { }; }\n',
    });
    const image = path.join(root, 'store.squashfs');
    mksquashfs(tree, image, ['-comp', 'xz']);
    const { code, findings } = await scanJson(image);
    expect(code).toBe(4);
    expect(findings.map((finding) => [finding.rule, finding.chain?.join(' › ')])).toEqual([['git-crypt-plaintext', `/${source}/secrets/host.env`]]);
  });
});
