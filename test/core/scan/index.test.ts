import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { bech32 } from 'bech32';
import { describe, expect, it } from 'vitest';
import { createLeakGate, formatScanReport, scanPaths, toSarif, type ScanReport } from '../../../src/core/scan/index.js';
import {
  ageKeyFile,
  fakeTokens,
  githubToken,
  nixCacheSecretKey,
  opensslKeys,
  pgpSecretKey,
  puttyKeys,
  randomString,
  sshKey,
  wireguardKey,
} from '../../helpers/credentials.js';
import { encValue, sopsNixFiles, sopsYamlBlock } from '../../helpers/sops-repo.js';
import { git, tempDir, writeTree } from '../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

function kindsAt(report: ScanReport, file: string): string[] {
  return report.findings.filter((finding) => finding.path === file || finding.inner === file).map((finding) => finding.rule);
}

function expectNoSecretIn(report: ScanReport, secrets: string[]): void {
  const json = JSON.stringify(report);
  const human = formatScanReport(report);
  const sarif = JSON.stringify(toSarif(report, '0.0.0'));
  for (const secret of secrets) {
    expect(json).not.toContain(secret);
    expect(human).not.toContain(secret);
    expect(sarif).not.toContain(secret);
  }
}

function bech32Identity(prefix: string, bytes: number): string {
  return bech32.encode(prefix, bech32.toWords(randomBytes(bytes)), 100_000).toUpperCase();
}

describe('scanPaths: every class', () => {
  it('finds age, SSH, PEM, PKCS#8, PGP, PuTTY keys and vendor tokens, by structure', async () => {
    const root = await tempDir();
    const age = ageKeyFile();
    const keys = opensslKeys();
    const putty = puttyKeys();
    const tokens = fakeTokens();
    const gh = githubToken('ghp');
    const cache = nixCacheSecretKey();
    const wg = wireguardKey();
    const files: Record<string, string> = {
      'age/keys.txt': age.file,
      'age/pq.txt': `${bech32Identity('AGE-SECRET-KEY-PQ-', 64)}\n`,
      'age/plugin.txt': `${bech32Identity('AGE-PLUGIN-YUBIKEY-', 33)}\n`,
      'ssh/rsa': sshKey('rsa').privateKey,
      'ssh/ecdsa': sshKey('ecdsa').privateKey,
      'ssh/ed25519': sshKey('ed25519').privateKey,
      'ssh/ed25519-passphrase': sshKey('ed25519', 'correct horse').privateKey,
      'pem/rsa.pem': keys.rsaTraditional,
      'pem/ec.pem': keys.ecTraditional,
      'pem/rsa-enc.pem': keys.rsaEncryptedPem,
      'pem/p8.pem': keys.pkcs8,
      'pem/p8enc.pem': keys.pkcs8Encrypted,
      'pem/p8nocrypt.pem': keys.pkcs8NoCrypt,
      'pgp/secret.asc': pgpSecretKey(),
      'putty/v2.ppk': putty.v2,
      'putty/v3.ppk': putty.v3,
      'tokens/gh.env': `GITHUB_TOKEN=${gh}\n`,
      'tokens/gho.txt': `token: ${githubToken('gho')}\n`,
      'tokens/pat.txt': tokens.githubFineGrained,
      'tokens/hf.py': `token = "${tokens.huggingFace}"\n`,
      'tokens/openai.sh': `export OPENAI_API_KEY=${tokens.openAiLegacy}\n`,
      'tokens/openai-proj.json': JSON.stringify({ key: tokens.openAiProject }),
      'tokens/ts.nix': `{ authKey = "${tokens.tailscale}"; }\n`,
      'tokens/slack.yaml': `slack: ${tokens.slack}\n`,
      'tokens/aws.ini': `[default]\naws_access_key_id = ${tokens.awsKeyId}\naws_secret_access_key = ${tokens.awsSecret}\n`,
      'tokens/.git-credentials': `https://alice:${randomString(20)}@git.dubnium-corp.net\n`,
      'nix/nix.conf': `access-tokens = github.com=${randomString(40)}\n`,
      'nix/cache-priv-key.pem': `${cache.secret}\n`,
      'nix/wg.conf': `[Interface]\nPrivateKey = ${wg}\nListenPort = 51820\n`,
      'nix/yggdrasil.nix': `{ services.yggdrasil.settings = { PrivateKey = "${randomBytes(64).toString('hex')}"; Peers = [ ]; }; }\n`,
      'db/.pgpass': `# app database\n*:*:*:replicator:*\ndb.internal:5432:app:appuser:${randomString(14)}\n`,
      'nix/yggdrasil.conf': `{\n  PrivateKey: ${randomBytes(64).toString('hex')}\n  PublicKey: ${randomBytes(32).toString('hex')}\n}\n`,
      'nix/users.nix': `{ users.users.alice.initialPassword = "hunter2-${randomString(6)}"; services.x.password = "p4ss-${randomString(6)}"; }\n`,
      'named/id_ed25519': 'not even a key, but named like one\n',
      'named/ssh_host_rsa_key': 'garbage\n',
    };
    await writeTree(root, files);
    const report = await scanPaths([root], quiet);
    const expected: Record<string, string> = {
      'age/keys.txt': 'age-identity',
      'age/pq.txt': 'age-pq-identity',
      'age/plugin.txt': 'age-plugin-identity',
      'ssh/rsa': 'openssh-private-key',
      'ssh/ecdsa': 'openssh-private-key',
      'ssh/ed25519': 'openssh-private-key',
      'ssh/ed25519-passphrase': 'openssh-private-key',
      'pem/rsa.pem': 'pem-private-key',
      'pem/ec.pem': 'pem-private-key',
      'pem/rsa-enc.pem': 'pem-private-key',
      'pem/p8.pem': 'pkcs8-private-key',
      'pem/p8enc.pem': 'pkcs8-private-key',
      'pem/p8nocrypt.pem': 'pkcs8-private-key',
      'pgp/secret.asc': 'pgp-private-key',
      'putty/v2.ppk': 'putty-private-key',
      'putty/v3.ppk': 'putty-private-key',
      'tokens/gh.env': 'github-token',
      'tokens/gho.txt': 'github-token',
      'tokens/pat.txt': 'github-fine-grained-token',
      'tokens/hf.py': 'huggingface-token',
      'tokens/openai.sh': 'openai-key',
      'tokens/openai-proj.json': 'openai-key',
      'tokens/ts.nix': 'tailscale-key',
      'tokens/slack.yaml': 'slack-token',
      'tokens/aws.ini': 'aws-access-key-pair',
      'tokens/.git-credentials': 'url-credentials',
      'nix/nix.conf': 'nix-access-token',
      'nix/cache-priv-key.pem': 'nix-cache-secret-key',
      'nix/wg.conf': 'wireguard-private-key',
      'nix/yggdrasil.nix': 'hex-private-key',
      'nix/yggdrasil.conf': 'hex-private-key',
      'db/.pgpass': 'pgpass-password',
      'nix/users.nix': 'nix-plaintext-password',
      'named/id_ed25519': 'ssh-private-key-file',
      'named/ssh_host_rsa_key': 'ssh-private-key-file',
    };
    for (const [file, rule] of Object.entries(expected)) expect(kindsAt(report, file), file).toContain(rule);
    expect(report.findings.find((f) => f.path === 'ssh/ed25519-passphrase')?.note).toContain('passphrase-encrypted');
    expect(report.findings.find((f) => f.path === 'age/plugin.txt')?.note).toMatch(/^age-plugin-[a-z0-9]+ identity: decrypts wherever its token or device is at hand; allowlist it/);
    expect(report.findings.filter((f) => f.path === 'nix/users.nix')).toHaveLength(2);
    expect(report.files).toBe(Object.keys(files).length);
    expectNoSecretIn(report, [age.identity, gh, tokens.huggingFace, tokens.awsSecret, wg, cache.secret.split(':')[1]!]);
    // Fingerprints are stable across runs and carry the rule.
    const again = await scanPaths([root], quiet);
    expect(again.findings.map((f) => f.fingerprint)).toEqual(report.findings.map((f) => f.fingerprint));
    expect(report.findings[0]!.fingerprint).toMatch(/^[a-z0-9-]+:[0-9a-f]{16}$/);
  });

  it('finds a LUKS keyfile by its name and randomness, in a folder and in a zstd initrd', async () => {
    const root = await tempDir();
    const keyfile = randomBytes(4096);
    await writeTree(root, {
      'etc/secrets/luks.key': keyfile,
      'etc/secrets/disk-keyfile': randomBytes(512),
      'etc/secrets/root.key': `${randomBytes(48).toString('hex')}\n`,
      // Not key files: a word ending in "key", a public key, zeros, prose, a gzip stream.
      'data/monkey': randomBytes(4096),
      'etc/secrets/signing.pub.key': randomBytes(64),
      'etc/secrets/swap.key': Buffer.alloc(4096),
      'etc/secrets/readme.key': 'This file names the key, it is not one.\n',
      'etc/secrets/archive.key': gzipSync(randomBytes(2048)),
    });
    const report = await scanPaths([root], quiet);
    expect(report.findings.filter((f) => f.rule === 'random-key-file').map((f) => f.path).sort()).toEqual(['etc/secrets/disk-keyfile', 'etc/secrets/luks.key', 'etc/secrets/root.key']);
    expect(report.findings.filter((f) => f.rule !== 'random-key-file')).toEqual([]);
    expect(kindsAt(report, 'etc/secrets/luks.key')).toEqual(['random-key-file']);

    // `boot.initrd.secrets."/crypto_keyfile.bin"`: the keyfile in the initrd's newc cpio, zstd-compressed.
    const tree = path.join(root, 'initrd-root');
    await writeTree(tree, { 'crypto_keyfile.bin': keyfile, 'etc/hostname': 'dubnium\n' });
    const cpio = execFileSync('sh', ['-c', 'find . | LC_ALL=C sort | cpio -o -H newc --quiet | zstd -q -c'], { cwd: tree });
    await rm(tree, { recursive: true });
    await rm(path.join(root, 'etc'), { recursive: true });
    await rm(path.join(root, 'data'), { recursive: true });
    await writeFile(path.join(root, 'initrd'), cpio);
    const initrd = await scanPaths([root], quiet);
    expect(initrd.findings.map((f) => [f.path, f.inner, f.rule])).toEqual([['initrd', '/crypto_keyfile.bin', 'random-key-file']]);
  });

  it('finds JSON-escaped and base64-wrapped (Kubernetes Secret) keys', async () => {
    const root = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const age = ageKeyFile();
    await writeTree(root, {
      'escaped.json': JSON.stringify({ private_key: key }),
      'secret.yaml': `apiVersion: v1\nkind: Secret\ndata:\n  id_ed25519: ${Buffer.from(key).toString('base64')}\n  keys.txt: ${Buffer.from(age.file).toString('base64')}\n`,
    });
    const report = await scanPaths([root], quiet);
    expect(kindsAt(report, 'escaped.json')).toEqual(['openssh-private-key']);
    expect(kindsAt(report, 'secret.yaml').sort()).toEqual(['age-identity', 'openssh-private-key']);
    expect(report.findings.find((f) => f.path === 'secret.yaml')?.note).toContain('base64-wrapped');
  });

  it('does not flag placeholders, public material or encrypted files', async () => {
    const root = await tempDir();
    const age = ageKeyFile();
    const ssh = sshKey('ed25519');
    const keys = opensslKeys();
    const cache = nixCacheSecretKey();
    await writeTree(root, {
      'README.md': [
        'Put `github_token: ghp_example` and `openai_api_key: sk-example` in the user SOPS file.',
        'HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
        'ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa and ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
        'aws_access_key_id = AKIAIOSFODNN7EXAMPLE',
        'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
        'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ',
        '-----BEGIN OPENSSH PRIVATE KEY-----',
        '...',
        '-----END OPENSSH PRIVATE KEY-----',
        'git clone https://user:${TOKEN}@github.com/org/repo',
        'HF_TOKEN=${config.sops.placeholder.model-provider-token}',
        'users.users.root.hashedPassword = "$y$j9T$abc$def";',
        'passwordFile = config.sops.secrets.pw.path;',
        // Documentation hosts (RFC 2606): whatever the password looks like, it is an example.
        `const url = new URL('https://abc:xyz@example.com'); // https://deploy:${randomBytes(9).toString('hex')}@git.example.org/repo`,
        `curl https://bot:${randomBytes(9).toString('hex')}@api.example/v1`,
        `fetch https://deploy:${randomBytes(9).toString('hex')}@gitlab.example.invalid/x.tar.gz`,
        `recipient ${age.recipient}`,
        `trusted-public-keys = ${cache.public}`,
        // Yggdrasil: the public half, a placeholder and a hash of a key are not keys.
        `PublicKey: ${randomBytes(32).toString('hex')}`,
        `PrivateKey = "${'0'.repeat(128)}";`,
        `private_key_sha256 = "${randomBytes(32).toString('hex')}"`,
      ].join('\n'),
      'keys/id_ed25519.pub': ssh.publicKey,
      'keys/known_hosts': `host.example.invalid ${ssh.publicKey}`,
      'certs/ca.pem': keys.certificate,
      'flake.lock': JSON.stringify({ nodes: { nixpkgs: { locked: { narHash: `sha256-${randomBytes(32).toString('base64')}`, rev: randomBytes(20).toString('hex') } } } }),
      'secrets/agenix.age': Buffer.concat([Buffer.from('age-encryption.org/v1\n-> X25519 abc\n'), randomBytes(200)]).toString('latin1'),
    });
    const report = await scanPaths([root], quiet);
    expect(report.findings).toEqual([]);
    expect(report.problems).toEqual([]);
  });

  it('a credential URL to a real-looking host next to the documentation ones is still found', async () => {
    const root = await tempDir();
    await writeTree(root, { 'notes.md': `see https://abc:xyz@example.com and https://deploy:${randomBytes(9).toString('hex')}@git.example-corp.net/repo\n` });
    const report = await scanPaths([root], quiet);
    expect(report.findings.map((finding) => finding.rule)).toEqual(['url-credentials']);
  });
});

describe('tar detection', () => {
  it('text that holds "ustar" at byte 257 (a tar library\'s own source) is scanned as text, not as a broken tar', async () => {
    const root = await tempDir();
    const prefix = `// headers for the tar format\nconst ZEROS = '${'0'.repeat(40)}';\nconst MAGIC = Buffer.from(`;
    const source = `${prefix}${' '.repeat(256 - prefix.length)}'ustar\\x00', 'binary');\n${'// more source\n'.repeat(60)}`;
    expect(source.indexOf('ustar')).toBe(257);
    await writeTree(root, { 'headers.js': source });
    const report = await scanPaths([root], quiet);
    expect(report.findings).toEqual([]);
    expect(report.problems).toEqual([]);
  });

  it('real tar files (POSIX and GNU formats) are still unpacked member by member', async () => {
    const root = await tempDir();
    const work = await tempDir();
    const token = githubToken('ghp');
    await writeTree(work, { 'inner/deploy.env': `GITHUB_TOKEN=${token}\n` });
    for (const format of ['posix', 'gnu', 'ustar']) {
      execFileSync('tar', [`--format=${format}`, '-cf', path.join(root, `${format}.tar`), '-C', work, 'inner']);
    }
    const report = await scanPaths([root], quiet);
    expect(report.findings.map((finding) => `${finding.path}!${finding.inner}`).sort()).toEqual(['gnu.tar!inner/deploy.env', 'posix.tar!inner/deploy.env', 'ustar.tar!inner/deploy.env']);
  });
});

async function sopsNixRepo(): Promise<{ root: string; recipient: string }> {
  const root = await tempDir();
  const files = sopsNixFiles();
  await writeTree(root, files);
  const recipient = /&host (age1[0-9a-z]+)/.exec(files['.sops.yaml']!)![1]!;
  return { root, recipient };
}

describe('SOPS awareness', () => {
  it('a realistic sops-nix repository has zero findings', async () => {
    const { root } = await sopsNixRepo();
    const report = await scanPaths([root], quiet);
    expect(report.findings).toEqual([]);
  });

  it('finds a decrypted secrets file and a plaintext value beside a sops block', async () => {
    const { root, recipient } = await sopsNixRepo();
    await writeTree(root, {
      'secrets/decrypted.yaml': 'service_name:\n    token: example-but-real\n',
      'secrets/leaky.yaml': `db:\n    password: plain-value\n    other: ${encValue()}\n${sopsYamlBlock(recipient)}`,
    });
    const report = await scanPaths([root], quiet);
    expect(kindsAt(report, 'secrets/decrypted.yaml')).toEqual(['sops-unencrypted-file']);
    expect(kindsAt(report, 'secrets/leaky.yaml')).toEqual(['sops-plaintext-value']);
    expect(report.findings.find((f) => f.path === 'secrets/leaky.yaml')?.note).toContain('db/password');
    expectNoSecretIn(report, ['plain-value', 'example-but-real']);
  });

  it('an empty value beside a sops block is not plaintext (SOPS writes "" as it is), in YAML, JSON and dotenv', async () => {
    const { root, recipient } = await sopsNixRepo();
    const meta = (format: 'json' | 'dotenv') => {
      const mac = encValue();
      return format === 'json'
        ? `"sops": {"age": [{"recipient": "${recipient}", "enc": "x"}], "mac": "${mac}", "version": "3.8.1"}`
        : `sops_age__list_0__map_recipient=${recipient}\nsops_mac=${mac}\nsops_version=3.8.1\n`;
    };
    await writeTree(root, {
      'secrets/empty.yaml': `_netrc: ""\n_gitconfig: ''\nreal: ${encValue()}\n${sopsYamlBlock(recipient)}`,
      'secrets/empty.json': `{"netrc": "", "real": "${encValue()}", ${meta('json')}}\n`,
      'secrets/empty.env': `NETRC=\nREAL=${encValue()}\n${meta('dotenv')}`,
    });
    const report = await scanPaths([root], quiet);
    expect(report.findings).toEqual([]);
  });

  it('the gate applies a given .sops.yaml to repoPath, also for archive members', async () => {
    const gate = await createLeakGate({ ...quiet, sopsConfig: 'creation_rules:\n  - path_regex: ^secrets/.*\\.yaml$\n' });
    const open = gate.open({ path: 'source/repo.tar.gz', inner: 'repo/secrets/a.yaml', repoPath: 'secrets/a.yaml' });
    open.update(Buffer.from('token: hello\n'));
    expect((await open.finish()).map((f) => f.kind)).toEqual(['sops-unencrypted-file']);
    const other = gate.open({ path: 'source/repo.tar.gz', inner: 'repo/docs/a.yaml', repoPath: 'docs/a.yaml' });
    other.update(Buffer.from('token: hello\n'));
    expect(await other.finish()).toEqual([]);
  });

  it('finds a decrypted file inside a tar.gz using the .sops.yaml packed with it', async () => {
    const { root } = await sopsNixRepo();
    await writeTree(root, { 'secrets/decrypted.env': 'TOKEN=plain\n' });
    const out = await tempDir();
    execFileSync('tar', ['-czf', path.join(out, 'src.tar.gz'), '-C', path.dirname(root), path.basename(root)]);
    const report = await scanPaths([path.join(out, 'src.tar.gz')], quiet);
    expect(report.findings.map((f) => [f.path, f.inner, f.rule])).toEqual([['src.tar.gz', `${path.basename(root)}/secrets/decrypted.env`, 'sops-unencrypted-file']]);
  });

  it('in a squashfs, applies a .sops.yaml deep in the store (files scanned on worker threads too); without one, the same files are clean', async () => {
    const { root } = await sopsNixRepo();
    // Many small files around it: the walker hands files up to 8 MiB to its member threads.
    const files: Record<string, string> = { 'secrets/decrypted.env': 'TOKEN=plain\n' };
    for (let index = 0; index < 40; index += 1) files[`modules/m${index}.nix`] = `{ ... }: { networking.hostName = "h${index}"; }\n`;
    await writeTree(root, files);
    const tree = await tempDir();
    const store = path.join(tree, 'nix/store/0123456789abcdfghijklmnpqrsvwxyz-source');
    await mkdir(path.dirname(store), { recursive: true });
    execFileSync('cp', ['-r', root, store]);
    await rm(path.join(store, '.git'), { recursive: true, force: true });
    const out = await tempDir();
    const image = path.join(out, 'store.squashfs');
    execFileSync('mksquashfs', [tree, image, '-noappend', '-quiet', '-no-progress', '-comp', 'zstd']);
    const report = await scanPaths([image], quiet);
    expect(report.findings.map((f) => [f.inner, f.rule])).toEqual([['/nix/store/0123456789abcdfghijklmnpqrsvwxyz-source/secrets/decrypted.env', 'sops-unencrypted-file']]);

    await rm(path.join(store, '.sops.yaml'));
    const without = path.join(out, 'no-config.squashfs');
    execFileSync('mksquashfs', [tree, without, '-noappend', '-quiet', '-no-progress', '-comp', 'zstd']);
    const clean = await scanPaths([without], quiet);
    expect(clean.findings).toEqual([]);
    expect(clean.problems).toEqual([]);
  });
});

describe('containers and encodings', () => {
  it('looks inside tar.gz, zip, zip-in-tar.gz, gz and UTF-16', async () => {
    const root = await tempDir();
    const work = await tempDir();
    const gh = githubToken();
    const age = ageKeyFile();
    await writeTree(work, { 'inner/token.txt': `GH=${gh}\n`, 'inner/keys.txt': age.file });
    execFileSync('tar', ['-czf', path.join(root, 'a.tar.gz'), '-C', work, 'inner']);
    execFileSync('zip', ['-qr', path.join(work, 'b.zip'), 'inner'], { cwd: work });
    execFileSync('cp', [path.join(work, 'b.zip'), path.join(root, 'b.zip')]);
    await mkdir(path.join(work, 'nest'));
    execFileSync('cp', [path.join(work, 'b.zip'), path.join(work, 'nest', 'b.zip')]);
    execFileSync('tar', ['-czf', path.join(root, 'nested.tgz'), '-C', work, 'nest']);
    await writeFile(path.join(root, 'c.txt.gz'), gzipSync(Buffer.from(age.file)));
    await writeFile(path.join(root, 'utf16.txt'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`token ${gh}\r\n`, 'utf16le')]));
    await writeFile(path.join(root, 'utf16-nobom.txt'), Buffer.from(`key file\n${age.file}`, 'utf16le'));
    const report = await scanPaths([root], quiet);
    const located = report.findings.map((f) => `${f.path}|${f.inner ?? ''}|${f.rule}`).sort();
    expect(located).toEqual(
      [
        'a.tar.gz|inner/keys.txt|age-identity',
        'a.tar.gz|inner/token.txt|github-token',
        'b.zip|inner/keys.txt|age-identity',
        'b.zip|inner/token.txt|github-token',
        'c.txt.gz|c.txt|age-identity',
        'nested.tgz|nest/b.zip!inner/keys.txt|age-identity',
        'nested.tgz|nest/b.zip!inner/token.txt|github-token',
        'utf16-nobom.txt||age-identity',
        'utf16.txt||github-token',
      ].sort(),
    );
  });

  it("finds a secret committed then deleted, in the repository's .git objects", async () => {
    const root = await tempDir();
    const hf = fakeTokens().huggingFace;
    await writeTree(root, { 'config.py': `TOKEN = "${hf}"\n`, 'README.md': 'hi\n' });
    git(root, 'init', '-q');
    git(root, 'add', '-A');
    git(root, 'commit', '-q', '-m', 'oops');
    await rm(path.join(root, 'config.py'));
    git(root, 'add', '-A');
    git(root, 'commit', '-q', '-m', 'remove');
    const report = await scanPaths([root], quiet);
    expect(report.findings.length).toBeGreaterThan(0);
    for (const finding of report.findings) {
      expect(finding.path).toMatch(/^\.git\/objects\//);
      expect(finding.inner).toBe('(git blob)');
      expect(finding.rule).toBe('huggingface-token');
    }
  });

  it('reports unreadable containers as unscanned findings, with the reason', async () => {
    const root = await tempDir();
    const work = await tempDir();
    await writeTree(work, { 'a.txt': 'hello\n' });
    execFileSync('zip', ['-q', '-P', 'pw', path.join(root, 'enc.zip'), 'a.txt'], { cwd: work });
    const gz = gzipSync(Buffer.from('x'.repeat(10000)));
    await writeFile(path.join(root, 'bad.gz'), gz.subarray(0, 20));
    const report = await scanPaths([root], quiet);
    expect(report.findings.map((f) => `${f.path}|${f.inner ?? ''}|${f.kind}|${f.rule}`).sort()).toEqual(['bad.gz||unscanned|unscanned-truncated', 'enc.zip|a.txt|unscanned|unscanned-encrypted']);
    expect(report.findings.every((f) => /^not scanned \((truncated|encrypted)\): /.test(f.note ?? ''))).toBe(true);
  });

  it('reports a symlink leaving the root and never follows it', async () => {
    const root = await tempDir();
    const outside = await tempDir();
    await writeTree(outside, { 'keys.txt': ageKeyFile().file });
    await symlink(path.join(outside, 'keys.txt'), path.join(root, 'link'));
    const report = await scanPaths([root], quiet);
    expect(report.findings).toEqual([]);
    expect(report.problems).toEqual([expect.objectContaining({ path: 'link', message: expect.stringContaining('outside') })]);
  });

  it('finds a token in safetensors metadata and a key after an image end, in large files', async () => {
    const root = await tempDir();
    const hf = fakeTokens().huggingFace;
    const header = Buffer.from(JSON.stringify({ __metadata__: { note: `uploaded with ${hf}` }, w: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }));
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    await writeFile(path.join(root, 'model.safetensors'), Buffer.concat([length, header, randomBytes(9 * 1024 * 1024)]));
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), randomBytes(1000), Buffer.from('IEND'), Buffer.from(ageKeyFile().file)]);
    await writeFile(path.join(root, 'picture.png'), png);
    const report = await scanPaths([root], quiet);
    expect(kindsAt(report, 'model.safetensors')).toEqual(['huggingface-token']);
    expect(kindsAt(report, 'picture.png')).toEqual(['age-identity']);
  });
});

describe('the streaming gate', () => {
  it('finds keys straddling chunk boundaries in a multi-chunk binary stream, once', async () => {
    const gate = await createLeakGate(quiet);
    const chunk = 4 * 1024 * 1024;
    const data = randomBytes(3 * chunk);
    const key = Buffer.from(sshKey('ed25519').privateKey);
    const token = Buffer.from(`\n${githubToken()}\n`);
    key.copy(data, chunk - 100);
    token.copy(data, 2 * chunk - 20);
    const scanner = gate.open({ path: 'shard.safetensors', size: data.length });
    for (let offset = 0; offset < data.length; offset += chunk) scanner.update(data.subarray(offset, offset + chunk));
    const findings = await scanner.finish();
    expect(findings.map((f) => [f.rule, f.offset])).toEqual([
      ['openssh-private-key', chunk - 100],
      ['github-token', 2 * chunk - 19],
    ]);
  });

  it('finds a key split across many small chunks of a large text stream', async () => {
    const gate = await createLeakGate(quiet);
    const filler = Buffer.from('x = 1;\n'.repeat(1_500_000));
    const age = ageKeyFile();
    const data = Buffer.concat([filler, Buffer.from(age.file), filler]);
    const scanner = gate.open({ path: 'big.nix', size: data.length });
    for (let offset = 0; offset < data.length; offset += 1024 * 1024 + 7) scanner.update(data.subarray(offset, offset + 1024 * 1024 + 7));
    expect((await scanner.finish()).map((f) => f.rule)).toEqual(['age-identity']);
  });

  it('marks allowlisted findings as allowed', async () => {
    const root = await tempDir();
    await writeTree(root, { 'a.txt': githubToken(), 'b.txt': githubToken() });
    const first = await scanPaths([root], quiet);
    const allowedPrint = first.findings.find((f) => f.path === 'a.txt')!.fingerprint;
    const report = await scanPaths([root], { ...quiet, allowlist: [{ fingerprint: allowedPrint, reason: 'test fixture' }] });
    expect(report.findings.map((f) => f.path)).toEqual(['b.txt']);
    expect(report.allowed).toEqual([expect.objectContaining({ path: 'a.txt', allowed: { reason: 'test fixture' } })]);
    expect(formatScanReport(report)).toContain('ALLOWED');
    const sarif = toSarif(report, '1.2.3') as { version: string; runs: { tool: { driver: { name: string; version: string } }; results: { ruleId: string; suppressions?: unknown[]; partialFingerprints: Record<string, string> }[] }[] };
    expect(sarif.version).toBe('2.1.0');
    expect(sarif.runs[0]!.tool.driver).toMatchObject({ name: 'dubnium-seed', version: '1.2.3' });
    expect(sarif.runs[0]!.results).toHaveLength(2);
    expect(sarif.runs[0]!.results.filter((r) => r.suppressions)).toHaveLength(1);
    expect(sarif.runs[0]!.results[0]!.ruleId).toBe('github-token');
  });
});

describe('operator secrets', () => {
  it('matches the operator identities and env tokens exactly, and says which were loaded', async () => {
    const home = await tempDir();
    const system = await tempDir();
    const age = ageKeyFile();
    const hostKey = sshKey('ed25519').privateKey;
    const opaque = randomString(40);
    await writeTree(home, { '.config/sops/age/keys.txt': age.file });
    await writeTree(system, { 'etc/ssh/ssh_host_ed25519_key': hostKey });
    const root = await tempDir();
    const bodyLine = hostKey.split('\n')[2]!;
    await writeTree(root, { 'leak.txt': `some value ${opaque} here\n`, 'age.txt': age.identity, 'fragment.txt': `pasted: ${bodyLine}\n` });
    const report = await scanPaths([root], { env: { OPAQUE: 'x', GITHUB_TOKEN: opaque }, home, systemRoot: system });
    expect(report.operatorSecrets.loaded).toEqual([path.join(home, '.config/sops/age/keys.txt'), path.join(system, 'etc/ssh/ssh_host_ed25519_key'), 'env GITHUB_TOKEN']);
    expect(kindsAt(report, 'leak.txt')).toEqual(['operator-secret']);
    expect(kindsAt(report, 'fragment.txt')).toEqual(['operator-secret']);
    expect(report.findings.find((f) => f.path === 'age.txt')?.note).toContain('operator');
    expectNoSecretIn(report, [opaque, age.identity, bodyLine]);
  });
});

describe('this repository', () => {
  it('scans clean', async () => {
    const repo = path.resolve(__dirname, '../../..');
    const parts = ['src', 'test', 'fixtures', 'profiles', 'README.md'].map((part) => path.join(repo, part));
    const { existsSync } = await import('node:fs');
    const report = await scanPaths(parts.filter((part) => existsSync(part)), quiet);
    expect(report.findings).toEqual([]);
  });
});
