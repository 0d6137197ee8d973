/**
 * `dubnium-seed scan` end to end: the built CLI on real files, folders and tar.gz archives holding
 * credentials made at test time. Asserts exit codes, the JSON and SARIF shapes, allowlists,
 * operator secrets, and that no secret value ever reaches stdout or stderr.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliEnv, PROJECT_ROOT, runCli, type CliResult } from '../helpers/cli.js';
import { ageKeyFile, fakeTokens, githubToken, sshKey } from '../helpers/credentials.js';
import { tempDir, writeTree } from '../helpers/tmp.js';

interface JsonFinding {
  path: string;
  inner?: string;
  kind: string;
  rule: string;
  fingerprint: string;
  allowed?: { reason: string };
}

/** Every line of an armored key body, and any other secret string: none may be printed. */
function secretParts(secret: string): string[] {
  const lines = secret
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length >= 16 && !line.startsWith('-----'));
  return lines.length > 0 ? lines : [secret];
}

function expectNoSecret(result: CliResult, secrets: string[]): void {
  for (const secret of secrets) {
    for (const part of secretParts(secret)) {
      expect(result.stdout, 'stdout carries a secret').not.toContain(part);
      expect(result.stderr, 'stderr carries a secret').not.toContain(part);
    }
  }
}

/** A scan fixture: a loose key file, a folder with an age key, and a tar.gz holding a token. */
async function mixedFixture() {
  const dir = await tempDir();
  const ssh = sshKey('ed25519');
  const age = ageKeyFile();
  const token = githubToken('ghp');
  await writeTree(dir, {
    'loose/deploy_key': ssh.privateKey,
    'tree/hosts/keys.txt': age.file,
    'tree/README.md': 'Put `github_token: ghp_example` into secrets/user.yaml.\n',
    'packed/inner/config.env': `GITHUB_TOKEN=${token}\n`,
  });
  execFileSync('tar', ['-czf', path.join(dir, 'bundle.tar.gz'), '-C', path.join(dir, 'packed'), 'inner']);
  const home = await tempDir('dubnium-seed-home-');
  return { dir, home, ssh, age, token, args: [path.join(dir, 'loose/deploy_key'), path.join(dir, 'tree'), path.join(dir, 'bundle.tar.gz')] };
}

describe('scan PATH...', () => {
  it('exits 0 on a clean folder and says so', async () => {
    const dir = await tempDir();
    const home = await tempDir('dubnium-seed-home-');
    await writeTree(dir, { 'flake.nix': '{ outputs = { self }: { }; }\n', 'docs/x.md': 'token: hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n' });
    const result = await runCli(['scan', dir], { env: cliEnv({ HOME: home }) });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Clean: no credentials found/);
    const json = await runCli(['scan', '--json', dir], { env: cliEnv({ HOME: home }) });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ command: 'scan', ok: true, findings: [], allowed: [], files: 2 });
  });

  it('a file, a folder and a tar.gz together: exit 4, paths relative to each root, no secret printed', async () => {
    const fixture = await mixedFixture();
    const env = cliEnv({ HOME: fixture.home });
    const secrets = [fixture.ssh.privateKey, fixture.age.identity, fixture.token];

    const human = await runCli(['scan', ...fixture.args], { env });
    expect(human.code).toBe(4);
    expect(human.stdout).toMatch(/FOUND\s+private-key in deploy_key\b/);
    expect(human.stdout).toMatch(/FOUND\s+age-identity in hosts\/keys\.txt\b/);
    expect(human.stdout).toMatch(/FOUND\s+github-token in bundle\.tar\.gz › inner\/config\.env\b/);
    expect(human.stdout).not.toMatch(/README/);
    expectNoSecret(human, secrets);

    const json = await runCli(['scan', '--json', ...fixture.args], { env });
    expect(json.code).toBe(4);
    const report = JSON.parse(json.stdout) as { ok: boolean; findings: JsonFinding[]; allowed: JsonFinding[] };
    expect(report.ok).toBe(false);
    const located = report.findings.map((finding) => [finding.path, finding.inner ?? null, finding.kind, finding.rule]);
    expect(located).toEqual([
      ['bundle.tar.gz', 'inner/config.env', 'github-token', 'github-token'],
      ['deploy_key', null, 'private-key', 'openssh-private-key'],
      ['hosts/keys.txt', null, 'age-identity', 'age-identity'],
    ]);
    for (const finding of report.findings) expect(finding.fingerprint).toMatch(/^[a-z0-9-]+:[0-9a-f]{16}$/);
    expectNoSecret(json, secrets);

    const sarif = await runCli(['scan', '--sarif', ...fixture.args], { env });
    expect(sarif.code).toBe(4);
    const log = JSON.parse(sarif.stdout);
    expect(log.version).toBe('2.1.0');
    expect(log.$schema).toMatch(/sarif/);
    expect(log.runs).toHaveLength(1);
    expect(log.runs[0].tool.driver.name).toBe('dubnium-seed');
    const ruleIds = log.runs[0].tool.driver.rules.map((rule: { id: string }) => rule.id);
    const results = log.runs[0].results as { ruleId: string; ruleIndex: number; level: string; message: { text: string }; locations: { physicalLocation: { artifactLocation: { uri: string } } }[] }[];
    expect(results.map((result) => result.ruleId).sort()).toEqual(['age-identity', 'github-token', 'openssh-private-key']);
    for (const result of results) {
      expect(ruleIds[result.ruleIndex]).toBe(result.ruleId);
      expect(result.message.text.length).toBeGreaterThan(0);
      expect(result.locations[0]!.physicalLocation.artifactLocation.uri).toMatch(/^(deploy_key|hosts\/keys\.txt|bundle\.tar\.gz)$/);
    }
    expectNoSecret(sarif, secrets);
  });

  it('an allowlisted fingerprint is shown as allowed, in human and JSON output, and exits 0', async () => {
    const fixture = await mixedFixture();
    const env = cliEnv({ HOME: fixture.home });
    const keyFile = fixture.args[0]!;
    const first = await runCli(['scan', '--json', keyFile], { env });
    expect(first.code).toBe(4);
    const [finding] = JSON.parse(first.stdout).findings as JsonFinding[];
    const profile = path.join(fixture.dir, 'allow.yaml');
    await writeFile(profile, `scan:\n  allow:\n    - fingerprint: ${finding!.fingerprint}\n      reason: throwaway deploy key for the test rig\n`);

    const json = await runCli(['scan', '--json', '--profile', profile, keyFile], { env });
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as { ok: boolean; findings: JsonFinding[]; allowed: JsonFinding[] };
    expect(report.ok).toBe(true);
    expect(report.findings).toEqual([]);
    expect(report.allowed).toEqual([expect.objectContaining({ path: 'deploy_key', fingerprint: finding!.fingerprint, allowed: { reason: 'throwaway deploy key for the test rig' } })]);

    const human = await runCli(['scan', '--profile', profile, keyFile], { env });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/ALLOWED\s+private-key in deploy_key.*reason: throwaway deploy key for the test rig/);
    expect(human.stdout).toMatch(/Clean: no credentials found \(1 allowed by the allowlist\)/);

    const sarif = await runCli(['scan', '--sarif', '--profile', profile, keyFile], { env });
    expect(sarif.code).toBe(0);
    expect(JSON.parse(sarif.stdout).runs[0].results[0].suppressions).toEqual([{ kind: 'external', justification: 'throwaway deploy key for the test rig' }]);

    // Only the allowlisted fingerprint is allowed: the other findings still fail the scan.
    const all = await runCli(['scan', '--json', '--profile', profile, ...fixture.args], { env });
    expect(all.code).toBe(4);
    expect((JSON.parse(all.stdout).findings as JsonFinding[]).map((item) => item.path)).toEqual(['bundle.tar.gz', 'hosts/keys.txt']);
    expectNoSecret(all, [fixture.ssh.privateKey, fixture.age.identity, fixture.token]);
  });

  it('matches an operator token from the environment exactly, says which sources were loaded, never the value', async () => {
    const dir = await tempDir();
    const home = await tempDir('dubnium-seed-home-');
    const token = fakeTokens().huggingFace;
    // A value with no vendor shape is found only as the operator's own secret.
    const opaque = `op-${fakeTokens().awsSecret.replace(/[+/]/g, 'x')}`;
    await writeTree(dir, { 'modules/vllm.nix': `{ environment.HF_TOKEN = "${token}"; }\n`, 'notes.txt': `remember ${opaque}\n` });
    const env = cliEnv({ HOME: home, HF_TOKEN: token, OPENAI_API_KEY: opaque });

    const json = await runCli(['scan', '--json', dir], { env });
    expect(json.code).toBe(4);
    const report = JSON.parse(json.stdout) as { findings: (JsonFinding & { note?: string })[]; operatorSecrets: { enabled: boolean; loaded: string[] } };
    expect(report.operatorSecrets.enabled).toBe(true);
    expect(report.operatorSecrets.loaded).toEqual(expect.arrayContaining(['env HF_TOKEN', 'env OPENAI_API_KEY']));
    // A value that also has a vendor shape is one finding, by its rule, marked as the operator's own.
    expect(report.findings.map((finding) => [finding.path, finding.rule, finding.note])).toEqual([
      ['modules/vllm.nix', 'huggingface-token', "the operator's own secret (env HF_TOKEN)"],
      ['notes.txt', 'operator-secret', 'matches env OPENAI_API_KEY'],
    ]);
    expectNoSecret(json, [token, opaque]);

    const human = await runCli(['scan', dir], { env });
    expect(human.code).toBe(4);
    expect(human.stdout).toMatch(/Operator secrets matched exactly: .*env HF_TOKEN/);
    expectNoSecret(human, [token, opaque]);

    // Without operator secrets the opaque value is invisible; the HF token is still caught by shape.
    const off = await runCli(['scan', '--json', '--no-operator-secrets', dir], { env });
    expect(off.code).toBe(4);
    const offReport = JSON.parse(off.stdout) as { findings: JsonFinding[]; operatorSecrets: { enabled: boolean; loaded: string[] } };
    expect(offReport.operatorSecrets).toEqual({ enabled: false, loaded: [] });
    expect(offReport.findings.map((finding) => [finding.path, finding.rule])).toEqual([['modules/vllm.nix', 'huggingface-token']]);
    const offHuman = await runCli(['scan', '--no-operator-secrets', dir], { env });
    expect(offHuman.stdout).toMatch(/Operator secrets: not loaded \(turned off/);
    expectNoSecret(offHuman, [token, opaque]);

    // The profile can turn it off too (flags > profile > default).
    const profile = path.join(await tempDir(), 'quiet.yaml');
    await writeFile(profile, 'scan:\n  operatorSecrets: false\n');
    const byProfile = await runCli(['scan', '--json', '--profile', profile, dir], { env });
    expect(JSON.parse(byProfile.stdout).operatorSecrets).toEqual({ enabled: false, loaded: [] });
  });

  it('loads the operator identity from SOPS_AGE_KEY_FILE and HOME, naming the files', async () => {
    const dir = await tempDir();
    const home = await tempDir('dubnium-seed-home-');
    const sopsKey = ageKeyFile();
    const userKey = sshKey('ed25519');
    await writeTree(home, { '.ssh/id_ed25519': userKey.privateKey, 'keys/sops.txt': sopsKey.file });
    // The identity pasted into a nix string, and one line of the SSH key in a comment.
    const keyLine = userKey.privateKey.split('\n')[2]!;
    // ...and the whole key file copied in: one finding, saying once whose key it is.
    await writeTree(dir, { 'a.nix': `{ x = "${sopsKey.identity}"; }\n`, 'b.txt': `# ${keyLine}\n`, 'c/id_ed25519': userKey.privateKey });
    const env = cliEnv({ HOME: home, SOPS_AGE_KEY_FILE: path.join(home, 'keys/sops.txt') });
    const json = await runCli(['scan', '--json', dir], { env });
    expect(json.code).toBe(4);
    const report = JSON.parse(json.stdout) as { findings: (JsonFinding & { note?: string })[]; operatorSecrets: { loaded: string[] } };
    expect(report.operatorSecrets.loaded).toEqual(expect.arrayContaining([`SOPS_AGE_KEY_FILE (${path.join(home, 'keys/sops.txt')})`, path.join(home, '.ssh/id_ed25519')]));
    expect(report.findings.map((finding) => [finding.path, finding.rule, finding.note])).toEqual([
      ['a.nix', 'age-identity', `the operator's own secret (SOPS_AGE_KEY_FILE (${path.join(home, 'keys/sops.txt')}))`],
      ['b.txt', 'operator-secret', `matches ${path.join(home, '.ssh/id_ed25519')}`],
      ['c/id_ed25519', 'openssh-private-key', `ssh-ed25519; the operator's own secret (${path.join(home, '.ssh/id_ed25519')})`],
    ]);
    expectNoSecret(json, [sopsKey.identity, keyLine]);
  });

  it('refuses --json with --sarif, and a missing path, with exit 2', async () => {
    const dir = await tempDir();
    const both = await runCli(['scan', '--json', '--sarif', dir], { env: cliEnv({ HOME: dir }) });
    expect(both.code).toBe(2);
    expect(JSON.parse(both.stdout)).toMatchObject({ ok: false, exitCode: 2 });
    const missing = await runCli(['scan', path.join(dir, 'nope')], { env: cliEnv({ HOME: dir }) });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope: no such file or folder/);
    expect(missing.stdout).toBe('');
  });

  it('reports an unreadable container as a finding, never skipping it silently', async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, 'tree'));
    await writeFile(path.join(dir, 'tree/broken.tar.gz'), Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), Buffer.alloc(64, 7)]));
    const result = await runCli(['scan', '--json', path.join(dir, 'tree')], { env: cliEnv({ HOME: dir }) });
    const report = JSON.parse(result.stdout) as { findings: JsonFinding[]; problems: { path: string }[] };
    expect(result.code).toBe(4);
    expect(report.findings.map((finding) => finding.path)).toEqual(['broken.tar.gz']);
  });
});

describe('the repository passes its own scan', () => {
  it('node dist/cli.js scan src test fixtures profiles README.md package.json .git exits 0', async () => {
    const home = await tempDir('dubnium-seed-home-');
    // .git: every object of the history, loose or packed, so no key material was ever committed
    // (left out only when the tests run from an export without one).
    const history = existsSync(path.join(PROJECT_ROOT, '.git')) ? ['.git'] : [];
    const result = await runCli(['scan', '--json', 'src', 'test', 'fixtures', 'profiles', 'README.md', 'package.json', ...history], { cwd: PROJECT_ROOT, env: cliEnv({ HOME: home }) });
    const report = JSON.parse(result.stdout) as { findings: JsonFinding[]; files: number };
    expect(report.findings).toEqual([]);
    expect(result.code).toBe(0);
    expect(report.files).toBeGreaterThan(50);
  });
});

describe('scan fails closed, bounded and interruptible', () => {
  /** 3 GiB of zeros then an age key, zstd-compressed (~100 KB): a long expansion, a ratio bomb. Made once for these tests. */
  let bomb: { dir: string; file: string; identity: string };
  const zeroBomb = async () => bomb;
  beforeAll(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-bomb-'));
    const age = ageKeyFile();
    const file = path.join(dir, 'zeros.zst');
    execFileSync('sh', ['-c', `{ head -c 3G /dev/zero; cat; } | zstd -q -1 -T1 > "$1"`, 'sh', file], { input: age.file });
    bomb = { dir, file, identity: age.identity };
  }, 180_000);
  afterAll(async () => {
    if (bomb) await rm(bomb.dir, { recursive: true, force: true });
  });

  it('exits 4 with an unscanned limit finding for a compression bomb, and honours a raised scan.limits.maxRatio from the profile', async () => {
    const { dir, file, identity } = await zeroBomb();
    const env = cliEnv();
    const bounded = await runCli(['scan', '--json', '--no-operator-secrets', file], { env });
    expect(bounded.code).toBe(4);
    const report = JSON.parse(bounded.stdout) as { ok: boolean; findings: (JsonFinding & { note?: string })[] };
    expect(report.ok).toBe(false);
    expect(report.findings.map((f) => [f.path, f.kind, f.rule])).toEqual([['zeros.zst', 'unscanned', 'unscanned-limit']]);
    expect(report.findings[0]!.note).toMatch(/scan\.limits\.maxRatio/);
    const human = await runCli(['scan', '--no-operator-secrets', file], { env });
    expect(human.stdout).toMatch(/FOUND\s+unscanned in zeros\.zst › zeros\s+\[unscanned-limit:[0-9a-f]{16}\]\s+not scanned \(limit\)/);

    const profile = path.join(dir, 'roomy.yaml');
    await writeFile(profile, 'scan:\n  limits:\n    maxRatio: 1000000\n');
    const roomy = await runCli(['scan', '--json', '--no-operator-secrets', '--profile', profile, file], { env });
    expect(roomy.code).toBe(4);
    expect((JSON.parse(roomy.stdout) as { findings: JsonFinding[] }).findings.map((f) => [f.inner, f.rule])).toEqual([['zeros', 'age-identity']]);
    expectNoSecret(roomy, [identity]);
    // A bad limit in the profile is a usage error.
    await writeFile(profile, 'scan:\n  limits:\n    maxDepth: 0\n');
    expect((await runCli(['scan', '--profile', profile, file], { env })).code).toBe(2);
  }, 240_000);

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} stops a scan busy inside a large archive within a second: exit 130`, async () => {
      const { dir, file } = await zeroBomb();
      const profile = path.join(dir, `roomy-${signal}.yaml`);
      await writeFile(profile, 'scan:\n  limits:\n    maxRatio: 1000000\n');
      let sentAt = 0;
      const result = await runCli(['scan', '--no-operator-secrets', '--profile', profile, file], {
        env: cliEnv(),
        onSpawn: (child) => {
          // Well into the 3 GiB expansion: once the scan has used a second of CPU (start-up takes a
          // fraction of one). A fixed delay missed a scan that finished first on an idle machine.
          const poll = setInterval(() => {
            let ticks = 0;
            try {
              const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
              ticks = Number(fields[11]) + Number(fields[12]); // utime + stime, in 1/100 s
            } catch {
              clearInterval(poll); // gone already
              return;
            }
            if (ticks < 100) return;
            clearInterval(poll);
            sentAt = Date.now();
            child.kill(signal);
          }, 20);
        },
      });
      const took = Date.now() - sentAt;
      expect(sentAt).toBeGreaterThan(0);
      expect(result.code).toBe(130);
      expect(result.stderr).toMatch(/cancelled/i);
      // One second to stop, plus slack for process teardown on a loaded machine.
      expect(took).toBeLessThan(1500);
    }, 120_000);
  }
});
