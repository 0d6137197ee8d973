/**
 * The leak gate at the product level: `build` refuses to finalize a seed when any byte it would write
 * holds a credential (and leaves nothing behind), honours the profile allowlist, builds a realistic
 * sops-nix repository cleanly; `verify` rescans the media. All key material is made at test time.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { appendFile, open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeBundle, writeSafetensors } from '../helpers/bundles.js';
import { cliEnv, runCli, type CliResult } from '../helpers/cli.js';
import { ageKeyFile, fakeTokens, githubToken, sshKey } from '../helpers/credentials.js';
import { sopsConfig, sopsNixFiles } from '../helpers/sops-repo.js';
import { gitRepo, listTree, tempDir, writeTree } from '../helpers/tmp.js';

const MiB = 1024 * 1024;

const nixRepo = {
  'flake.nix': '{ outputs = { self, nixpkgs }: { }; }\n',
  'hosts/workstation/configuration.nix': '{ ... }: { networking.hostName = "dubnium"; }\n',
  '.gitignore': 'result\n',
};

interface Finding {
  path: string;
  inner?: string;
  kind: string;
  rule: string;
  fingerprint: string;
  offset?: number;
  allowed?: { reason: string };
}


/**
 * A private HOME (no developer keys loaded) and a private TMPDIR, so the test can see that the
 * build's local work folder (where the source archive is packed and scanned) is removed too.
 */
async function isolatedEnv(extra: NodeJS.ProcessEnv = {}) {
  const home = await tempDir('dubnium-seed-home-');
  const tmp = await tempDir('dubnium-seed-tmp-');
  return { env: cliEnv({ HOME: home, TMPDIR: tmp, ...extra }), tmp };
}

function expectNoSecret(result: CliResult, secrets: string[]): void {
  for (const secret of secrets) {
    const parts = secret.includes('\n') ? secret.split('\n').filter((line) => line.length >= 16 && !line.startsWith('-----')) : [secret];
    for (const part of parts) {
      expect(result.stdout).not.toContain(part);
      expect(result.stderr).not.toContain(part);
    }
  }
}

async function expectNothingLeftBehind(target: string, tmp: string): Promise<void> {
  // Absent, or an empty folder: no manifest, no payload, no partial or journal files, no empty subfolders.
  expect(listTree(target)).toEqual([]);
  expect(listTree(tmp)).toEqual([]);
}

async function bundle(extraFiles: Record<string, string | Buffer> = {}, shardBytes?: number) {
  const models = await tempDir('dubnium-seed-models-');
  return writeBundle(path.join(models, 'tiny-llama'), { shards: 1, extraFiles, ...(shardBytes ? { shardBytes } : {}) });
}

describe('build: the leak gate stops a secret committed in the repository', () => {
  const cases: { name: string; files: () => Record<string, string>; secret: (files: Record<string, string>) => string; path: string; kind: RegExp }[] = [
    { name: 'an age-keygen key file', files: () => ({ ...nixRepo, 'keys.txt': ageKeyFile().file }), secret: (files) => /AGE-SECRET-KEY-1\S+/.exec(files['keys.txt']!)![0], path: 'keys.txt', kind: /age-identity/ },
    { name: 'an OpenSSH private key named deploy_key', files: () => ({ ...nixRepo, 'deploy/deploy_key': sshKey('ed25519').privateKey }), secret: (files) => files['deploy/deploy_key']!, path: 'deploy/deploy_key', kind: /private-key/ },
    {
      name: 'a decrypted SOPS file under a .sops.yaml path_regex',
      files: () => ({ ...nixRepo, '.sops.yaml': sopsConfig(ageKeyFile().recipient), 'secrets/hosts/workstation.yaml': 'model_provider:\n    token: plainly-not-encrypted-value\n' }),
      secret: () => 'plainly-not-encrypted-value',
      path: 'secrets/hosts/workstation.yaml',
      kind: /sops-unencrypted-file/,
    },
  ];
  for (const item of cases) {
    it(`${item.name}: exit 4 naming path and kind, and nothing on the target`, async () => {
      const files = item.files();
      const repo = await gitRepo(files);
      const model = await bundle();
      const target = path.join(await tempDir(), 'seed');
      const { env, tmp } = await isolatedEnv();
      const result = await runCli(['build', '--repo', repo, '--model', model.dir, '--target', target], { env });
      expect(result.stderr).not.toMatch(/internal error/);
      expect(result.code).toBe(4);
      expect(result.stderr).toMatch(item.kind);
      expect(result.stderr).toContain(`/${item.path}`);
      expect(result.stderr).toMatch(/Nothing was finalized on the media/);
      expectNoSecret(result, [item.secret(files)]);
      await expectNothingLeftBehind(target, tmp);
    });
  }

  it('--json on exit 4 prints one JSON document with the findings', async () => {
    const files = { ...nixRepo, 'keys.txt': ageKeyFile().file };
    const repo = await gitRepo(files);
    const target = path.join(await tempDir(), 'seed');
    const { env, tmp } = await isolatedEnv();
    const result = await runCli(['build', '--repo', repo, '--target', target, '--json'], { env });
    expect(result.code).toBe(4);
    const document = JSON.parse(result.stdout) as { ok: boolean; exitCode: number; error: { type: string; message: string }; findings: Finding[] };
    expect(document).toMatchObject({ ok: false, exitCode: 4, error: { type: 'SecretsFoundError' } });
    expect(document.findings).toHaveLength(1);
    const [finding] = document.findings;
    expect(finding).toMatchObject({ kind: 'age-identity', rule: 'age-identity' });
    expect(finding!.path).toMatch(/^source\/.+\.tar\.gz$/);
    expect(finding!.inner).toMatch(/^[^/]+\/keys\.txt$/);
    expect(finding!.fingerprint).toMatch(/^age-identity:[0-9a-f]{16}$/);
    expectNoSecret(result, [/AGE-SECRET-KEY-1\S+/.exec(files['keys.txt'])![0]]);
    await expectNothingLeftBehind(target, tmp);
  });
});

describe('build: the leak gate stops a secret in a model bundle', () => {
  it('a token in tokenizer_config.json: exit 4, nothing finalized, files written in this run removed', async () => {
    const repo = await gitRepo(nixRepo);
    const token = fakeTokens().huggingFace;
    const model = await bundle({ 'tokenizer_config.json': `${JSON.stringify({ model_max_length: 512, hub_token: token }, null, 2)}\n` });
    const target = path.join(await tempDir(), 'seed');
    const { env, tmp } = await isolatedEnv();
    const result = await runCli(['build', '--repo', repo, '--model', model.dir, '--target', target, '--json'], { env });
    expect(result.code).toBe(4);
    const document = JSON.parse(result.stdout) as { findings: Finding[] };
    expect(document.findings.map((finding) => [finding.path, finding.kind])).toEqual([['models/tiny-llama/tokenizer_config.json', 'huggingface-token']]);
    expect(result.stderr).toMatch(/huggingface-token in models\/tiny-llama\/tokenizer_config\.json/);
    expectNoSecret(result, [token]);
    // The source archive and seed-install.sh were written before the bundle files: they are gone too.
    await expectNothingLeftBehind(target, tmp);
  });

  it('a secret inside a shard larger than 16 MiB (streamed), across a 4 MiB chunk boundary', async () => {
    const repo = await gitRepo(nixRepo);
    const age = ageKeyFile();
    const model = await bundle({}, 17 * MiB + 123);
    const shard = path.join(model.dir, model.shards[0]!);
    expect(statSync(shard).size).toBeGreaterThan(16 * MiB);
    const handle = await open(shard, 'r+');
    await handle.write(Buffer.from(age.identity), 0, age.identity.length, 4 * MiB - 10);
    await handle.close();
    const target = path.join(await tempDir(), 'seed');
    const { env, tmp } = await isolatedEnv();
    const result = await runCli(['build', '--repo', repo, '--model', model.dir, '--target', target, '--json'], { env });
    expect(result.code).toBe(4);
    const document = JSON.parse(result.stdout) as { findings: Finding[] };
    expect(document.findings.map((finding) => [finding.path, finding.kind, finding.offset])).toEqual([[`models/tiny-llama/${model.shards[0]}`, 'age-identity', 4 * MiB - 10]]);
    expectNoSecret(result, [age.identity]);
    await expectNothingLeftBehind(target, tmp);
  });

  it('an age identity in the safetensors __metadata__ of a big shard', async () => {
    const repo = await gitRepo(nixRepo);
    const age = ageKeyFile();
    const model = await bundle();
    const shard = path.join(model.dir, model.shards[0]!);
    // Rewrite the shard with the identity in its header metadata; the tensor bytes follow as usual.
    await writeSafetensors(shard, [{ name: 'model.layers.0.large.weight', dtype: 'U8', shape: [17 * MiB] }], { metadata: { format: 'pt', note: age.identity } });
    expect(statSync(shard).size).toBeGreaterThan(16 * MiB);
    const target = path.join(await tempDir(), 'seed');
    const { env, tmp } = await isolatedEnv();
    const result = await runCli(['build', '--repo', repo, '--model', model.dir, '--target', target, '--json'], { env });
    expect(result.stderr).not.toMatch(/internal error/);
    expect(result.code).toBe(4);
    const document = JSON.parse(result.stdout) as { findings: Finding[] };
    expect(document.findings.map((finding) => [finding.path, finding.kind])).toEqual([[`models/tiny-llama/${model.shards[0]}`, 'age-identity']]);
    await expectNothingLeftBehind(target, tmp);
  });

  it('an allowlisted finding lets the build succeed and is listed in allowedFindings', async () => {
    const repo = await gitRepo(nixRepo);
    const token = githubToken('ghp');
    const model = await bundle({ 'README.md': `Downloaded with ${token}\n` });
    const target = path.join(await tempDir(), 'seed');
    const { env } = await isolatedEnv();
    const refused = await runCli(['build', '--repo', repo, '--model', model.dir, '--target', target, '--json'], { env });
    expect(refused.code).toBe(4);
    const [finding] = (JSON.parse(refused.stdout) as { findings: Finding[] }).findings;
    expect(finding).toMatchObject({ path: 'models/tiny-llama/README.md', rule: 'github-token' });

    const profile = path.join(await tempDir(), 'allow.yaml');
    await writeFile(profile, `scan:\n  allow:\n    - fingerprint: ${finding!.fingerprint}\n      reason: revoked token kept in the upstream model card\n`);
    const result = await runCli(['build', '--profile', profile, '--repo', repo, '--model', model.dir, '--target', target, '--json'], { env });
    expect(result.stderr).not.toMatch(/internal error/);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; allowedFindings: Finding[]; verify: { ok: boolean; findings: Finding[]; allowed: Finding[] } };
    expect(report.ok).toBe(true);
    expect(report.allowedFindings).toEqual([expect.objectContaining({ path: 'models/tiny-llama/README.md', fingerprint: finding!.fingerprint, allowed: { reason: 'revoked token kept in the upstream model card' } })]);
    expect(report.verify.findings).toEqual([]);
    expect(report.verify.allowed.map((item) => item.fingerprint)).toEqual([finding!.fingerprint]);
    expect(existsSync(path.join(target, 'dubnium-seed.json'))).toBe(true);
    expectNoSecret(result, [token]);

    // The human report shows it as allowed too.
    const again = await runCli(['build', '--profile', profile, '--repo', repo, '--model', model.dir, '--target', target], { env });
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/allowed github-token in models\/tiny-llama\/README\.md: revoked token kept in the upstream model card/);
  });
});

describe('build: an allowlisted secret in the repository', () => {
  it('is listed once in allowedFindings although the archive is scanned while packed and again as it is copied', async () => {
    const age = ageKeyFile();
    const repo = await gitRepo({ ...nixRepo, 'ci/keys.txt': age.file });
    const target = path.join(await tempDir(), 'seed');
    const { env } = await isolatedEnv();
    const refused = await runCli(['build', '--repo', repo, '--target', target, '--json'], { env });
    expect(refused.code).toBe(4);
    const [finding] = (JSON.parse(refused.stdout) as { findings: Finding[] }).findings;
    const profile = path.join(await tempDir(), 'allow.yaml');
    await writeFile(profile, `scan:\n  allow:\n    - fingerprint: ${finding!.fingerprint}\n      reason: CI-only key, never used for a host\n`);
    const result = await runCli(['build', '--profile', profile, '--repo', repo, '--target', target, '--json'], { env });
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { allowedFindings: Finding[]; verify: { allowed: Finding[] } };
    expect(report.allowedFindings.map((item) => [item.inner, item.fingerprint])).toEqual([[finding!.inner, finding!.fingerprint]]);
    expect(report.verify.allowed.map((item) => item.fingerprint)).toEqual([finding!.fingerprint]);
    expectNoSecret(result, [age.identity]);
  });
});

describe('build: a realistic sops-nix repository', () => {
  it('builds with exit 0 and no findings', async () => {
    const repo = await gitRepo({ ...nixRepo, ...sopsNixFiles() });
    const model = await bundle();
    const target = path.join(await tempDir(), 'seed');
    const { env } = await isolatedEnv();
    const result = await runCli(['build', '--repo', repo, '--model', model.dir, '--target', target, '--json'], { env });
    expect(result.stderr).not.toMatch(/internal error|Credentials found/);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; allowedFindings: Finding[]; verify: { ok: boolean; findings: Finding[] } };
    expect(report.ok).toBe(true);
    expect(report.allowedFindings).toEqual([]);
    expect(report.verify.findings).toEqual([]);
  });
});

describe('verify rescans the media', () => {
  async function cleanSeed() {
    const repo = await gitRepo(nixRepo);
    const model = await bundle();
    const target = path.join(await tempDir(), 'seed');
    const { env } = await isolatedEnv();
    const built = await runCli(['build', '--repo', repo, '--model', model.dir, '--target', target, '--no-verify'], { env });
    expect(built.code).toBe(0);
    const clean = await runCli(['verify', target, '--json'], { env });
    expect(clean.code).toBe(0);
    return { target, env };
  }

  it('a private key dropped into models/<bundle>/: exit 4 (over 3 for the unexpected file), finding with its path', async () => {
    const { target, env } = await cleanSeed();
    const key = sshKey('ed25519').privateKey;
    await writeFile(path.join(target, 'models/tiny-llama/notes.txt'), `left here by mistake:\n${key}`);
    const result = await runCli(['verify', target, '--json'], { env });
    expect(result.code).toBe(4);
    const report = JSON.parse(result.stdout) as { ok: boolean; findings: Finding[]; problems: { path: string; kind: string }[] };
    expect(report.ok).toBe(false);
    expect(report.findings.map((finding) => [finding.path, finding.kind, finding.rule])).toEqual([['models/tiny-llama/notes.txt', 'private-key', 'openssh-private-key']]);
    expect(report.problems).toEqual(expect.arrayContaining([expect.objectContaining({ path: 'models/tiny-llama/notes.txt', kind: 'unexpected' })]));
    expectNoSecret(result, [key]);

    const human = await runCli(['verify', target], { env });
    expect(human.code).toBe(4);
    expect(human.stdout).toMatch(/SECRET\s+models\/tiny-llama\/notes\.txt.*private-key/);
    expectNoSecret(human, [key]);
  });

  it('a key appended to an existing file, with SHA256SUMS and the manifest left stale: still exit 4', async () => {
    const { target, env } = await cleanSeed();
    const age = ageKeyFile();
    const config = path.join(target, 'models/tiny-llama/config.json');
    const before = createHash('sha256').update(await readFile(config)).digest('hex');
    await appendFile(config, `\n${age.file}`);
    expect((await readFile(path.join(target, 'SHA256SUMS'), 'utf8'))).toContain(before);
    const result = await runCli(['verify', target, '--json'], { env });
    expect(result.code).toBe(4);
    const report = JSON.parse(result.stdout) as { findings: Finding[]; problems: { path: string; kind: string }[] };
    expect(report.findings.map((finding) => [finding.path, finding.kind])).toEqual([['models/tiny-llama/config.json', 'age-identity']]);
    expect(report.problems.map((problem) => problem.path)).toContain('models/tiny-llama/config.json');
    expectNoSecret(result, [age.identity]);
  });

  it('a key inside the source archive on the media is found as an archive member', async () => {
    const { target, env } = await cleanSeed();
    const key = sshKey('ed25519').privateKey;
    const root = await tempDir();
    await writeTree(root, { 'top/id_ed25519': key });
    const manifest = JSON.parse(await readFile(path.join(target, 'dubnium-seed.json'), 'utf8')) as { source: { file: string } };
    const { execFileSync } = await import('node:child_process');
    execFileSync('tar', ['-czf', path.join(target, manifest.source.file), '-C', root, 'top']);
    const result = await runCli(['verify', target, '--json'], { env });
    expect(result.code).toBe(4);
    const report = JSON.parse(result.stdout) as { findings: Finding[] };
    expect(report.findings).toEqual(expect.arrayContaining([expect.objectContaining({ path: manifest.source.file, inner: 'top/id_ed25519', kind: 'private-key' })]));
    expectNoSecret(result, [key]);
  });
});

describe('build: content the gate cannot read fails closed', () => {
  it('an encrypted zip in the repository is an unscanned finding: exit 4, nothing finalized; allowlisted with a reason, the build goes on', async () => {
    const { execFileSync } = await import('node:child_process');
    const work = await tempDir();
    await writeTree(work, { 'notes.txt': 'vendor notes\n' });
    execFileSync('zip', ['-q', '-P', 'pw', 'blob.zip', 'notes.txt'], { cwd: work });
    const repo = await gitRepo({ ...nixRepo, 'vendor/blob.zip': await readFile(path.join(work, 'blob.zip')) });
    const target = path.join(await tempDir(), 'seed');
    const { env, tmp } = await isolatedEnv();
    const refused = await runCli(['build', '--repo', repo, '--target', target, '--json'], { env });
    expect(refused.code).toBe(4);
    const findings = (JSON.parse(refused.stdout) as { findings: (Finding & { chain?: string[] })[] }).findings;
    expect(findings).toHaveLength(1);
    expect(findings[0]).toMatchObject({ kind: 'unscanned', rule: 'unscanned-encrypted' });
    expect(findings[0]!.path).toMatch(/^source\/.+\.tar\.gz$/);
    expect(findings[0]!.inner).toMatch(/^[^/]+\/vendor\/blob\.zip!notes\.txt$/);
    expect(findings[0]!.chain).toEqual([findings[0]!.inner!.split('!')[0], 'notes.txt']);
    expect(existsSync(path.join(target, 'dubnium-seed.json'))).toBe(false);
    await expectNothingLeftBehind(target, tmp);

    const profile = path.join(await tempDir(), 'allow.yaml');
    await writeFile(profile, `scan:\n  allow:\n    - fingerprint: ${findings[0]!.fingerprint}\n      reason: vendor archive, checked by hand\n`);
    const result = await runCli(['build', '--profile', profile, '--repo', repo, '--target', target, '--json'], { env });
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { allowedFindings: Finding[] };
    expect(report.allowedFindings.map((item) => [item.kind, item.fingerprint])).toEqual([['unscanned', findings[0]!.fingerprint]]);
    expect(existsSync(path.join(target, 'dubnium-seed.json'))).toBe(true);
    // verify of the media sees the same unscanned member, with the same fingerprint.
    const verify = await runCli(['verify', target, '--json'], { env });
    expect(verify.code).toBe(4);
    expect((JSON.parse(verify.stdout) as { findings: Finding[] }).findings.map((item) => item.fingerprint)).toEqual([findings[0]!.fingerprint]);
    const allowedVerify = await runCli(['verify', target, '--profile', profile, '--json'], { env });
    expect(allowedVerify.code).toBe(0);
  }, 180_000);
});
