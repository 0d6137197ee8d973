/**
 * The small-file fast path (whole buffer, no copy, no promise) and the worker threads of scanPaths:
 * neither may lose a finding. Secrets are made fresh at test time.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bech32 } from 'bech32';
import { describe, expect, it } from 'vitest';
import { scanPaths, type ScanReport } from '../../../../src/core/scan/index.js';
import { fakeTokens, githubToken, opensslKeys, sshKey, wireguardKey } from '../../../helpers/credentials.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

/** A small Nix module like the 20,000 of the benchmark, with `secret` inside a string literal. */
function nixModule(index: number, secret = ''): string {
  return `{ config, lib, pkgs, ... }:\n{\n  # module ${index}\n  services.example${index} = {\n    enable = true;\n    description = "${randomBytes(32).toString('hex')}";\n    environmentFile = config.sops.secrets."svc-${index}".path;\n${secret}  };\n}\n`;
}

function rulesByPath(report: ScanReport): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const finding of report.findings) out.set(finding.path, [...(out.get(finding.path) ?? []), finding.rule].sort());
  return out;
}

function samples(): Record<string, { text: string; rule: string }> {
  const tokens = fakeTokens();
  const keys = opensslKeys();
  const age = bech32.encode('AGE-SECRET-KEY-', bech32.toWords(randomBytes(32)), 100_000).toUpperCase();
  const pem = keys.rsaTraditional;
  return {
    age: { text: `    identity = "${age}";\n`, rule: 'age-identity' },
    openssh: { text: `    key = ''\n${sshKey('ed25519').privateKey}'';\n`, rule: 'openssh-private-key' },
    pem: { text: `    key = ''\n${pem}'';\n`, rule: 'pem-private-key' },
    pkcs8: { text: `    key = ''\n${keys.pkcs8Encrypted}'';\n`, rule: 'pkcs8-private-key' },
    github: { text: `    token = "${githubToken('ghs')}";\n`, rule: 'github-token' },
    huggingface: { text: `    token = "${tokens.huggingFace}";\n`, rule: 'huggingface-token' },
    openai: { text: `    key = "${tokens.openAiProject}";\n`, rule: 'openai-key' },
    aws: { text: `    aws_secret_access_key = "${tokens.awsSecret}";\n`, rule: 'aws-secret-access-key' },
    url: { text: `    url = "https://deploy:${randomBytes(12).toString('hex')}@git.dubnium-corp.net/repo";\n`, rule: 'url-credentials' },
    password: { text: `    initialPassword = "${randomBytes(9).toString('base64url')}";\n`, rule: 'nix-plaintext-password' },
    wireguard: { text: `    privateKey = "${wireguardKey()}";\n`, rule: 'wireguard-private-key' },
    wrapped: { text: `    data = "${Buffer.from(pem).toString('base64')}";\n`, rule: 'pem-private-key' },
    accessTokens: { text: `    extraOptions = "access-tokens = github.com=${randomBytes(16).toString('hex')}";\n`, rule: 'nix-access-token' },
  };
}

describe('small-file fast path', () => {
  it('finds a secret of each major class in a small .nix file', async () => {
    const root = await tempDir();
    const cases = samples();
    const files: Record<string, string> = {};
    for (const [name, sample] of Object.entries(cases)) files[`hosts/${name}.nix`] = nixModule(1, sample.text);
    files['hosts/clean.nix'] = nixModule(2);
    await writeTree(root, files);
    const report = await scanPaths([root], quiet);
    const found = rulesByPath(report);
    for (const [name, sample] of Object.entries(cases)) expect(found.get(`hosts/${name}.nix`), name).toContain(sample.rule);
    expect(found.has('hosts/clean.nix')).toBe(false);
    expect(report.files).toBe(Object.keys(files).length);
  });

  it('still finds a decrypted secrets file that a .sops.yaml in a parent folder governs, and only there', async () => {
    const root = await tempDir();
    await writeTree(root, {
      'repo/.sops.yaml': 'creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n    age: age1example\n',
      'repo/secrets/db.yaml': 'password: plain-value\n',
      'other/secrets/db.yaml': 'password: plain-value\n',
    });
    const report = await scanPaths([root], quiet);
    expect(report.findings.filter((finding) => finding.rule === 'sops-unencrypted-file').map((finding) => finding.path)).toEqual(['repo/secrets/db.yaml']);
  });
});

describe('reading small files', () => {
  it('reads each file whole whatever its size around the 64 KiB read buffer, and counts every byte', async () => {
    const root = await tempDir();
    const token = githubToken('ghp');
    const files: Record<string, string> = { 'empty.nix': '' };
    // The token ends exactly at the last byte: a read cut short at the buffer's end would miss it.
    for (const size of [token.length + 1, 65535, 65536, 65537, 131072, 200000]) {
      files[`size-${size}.nix`] = `${'#'.repeat(size - token.length - 1)}\n${token}`;
    }
    await writeTree(root, files);
    const report = await scanPaths([root], quiet);
    const found = rulesByPath(report);
    for (const name of Object.keys(files).filter((item) => item !== 'empty.nix')) expect(found.get(name), name).toEqual(['github-token']);
    expect(report.files).toBe(Object.keys(files).length);
    expect(report.bytes).toBe(Object.values(files).reduce((sum, text) => sum + Buffer.byteLength(text), 0));
    expect(report.problems).toEqual([]);
  });
});

/** Worker threads run compiled modules only: the build (npm run build), which the CLI tests use too. */
async function builtScanPaths(): Promise<typeof scanPaths> {
  const built = path.join(fileURLToPath(new URL('../../../..', import.meta.url)), 'dist/core/scan/index.js');
  return ((await import(built)) as typeof import('../../../../src/core/scan/index.js')).scanPaths;
}

describe('worker threads', () => {
  it('give the same report as the main thread alone, in the same order', async () => {
    const scanBuilt = await builtScanPaths();
    const root = await tempDir();
    const cases = Object.values(samples());
    const files: Record<string, string> = {};
    // 2,000 files, secrets spread over the whole list (first batch, middle, last file).
    for (let index = 0; index < 2000; index++) {
      const sample = index % 157 === 0 || index === 1999 ? cases[index % cases.length] : undefined;
      files[`hosts/h${index % 20}/module-${String(index).padStart(4, '0')}.nix`] = nixModule(index, sample?.text);
    }
    await writeTree(root, files);
    const single = await scanBuilt([root], { ...quiet, threads: 1 });
    const threaded = await scanBuilt([root], { ...quiet, threads: 2 });
    expect(single.files).toBe(2000);
    expect(single.findings.length).toBeGreaterThanOrEqual(14);
    expect(threaded).toEqual(single);
  });
});

/** A tree of `count` clean Nix modules, m/0000.nix upwards. */
async function cleanModules(count: number): Promise<{ root: string; files: Record<string, string> }> {
  const root = await tempDir();
  const files: Record<string, string> = {};
  for (let index = 0; index < count; index++) files[`m/${String(index).padStart(4, '0')}.nix`] = nixModule(index);
  await writeTree(root, files);
  return { root, files };
}

describe('read-ahead worker', () => {
  it('gives the same report as reading every file on the scanning thread, through many turns of its ring', async () => {
    const scanBuilt = await builtScanPaths();
    const root = await tempDir();
    const cases = Object.values(samples());
    const files: Record<string, string> = {};
    for (let index = 0; index < 2400; index++) {
      const sample = index % 97 === 0 || index === 2399 ? cases[index % cases.length] : undefined;
      // Sizes from empty to just under and over the 64 KiB read, so the 4 MiB ring wraps often.
      const padding = index % 50 === 7 ? '' : '#'.repeat([10, 3000, 40_000, 65_400, 65_536, 70_000][index % 6]!);
      files[`hosts/h${index % 24}/module-${String(index).padStart(4, '0')}.nix`] = index % 50 === 7 ? '' : `${padding}\n${nixModule(index, sample?.text)}`;
    }
    await writeTree(root, files);
    const plain = await scanBuilt([root], { ...quiet, threads: 1, readAhead: false });
    const ahead = await scanBuilt([root], { ...quiet, threads: 1, readAhead: true });
    expect(plain.files).toBe(2400);
    expect(plain.findings.length).toBeGreaterThanOrEqual(cases.length);
    expect(ahead).toEqual(plain);
  });

  it('stops with CancelledError soon after the signal is aborted (Ctrl-C), with or without the worker', async () => {
    const scanBuilt = await builtScanPaths();
    const { root } = await cleanModules(3000);
    for (const readAhead of [true, false]) {
      const controller = new AbortController();
      let seen = 0;
      let seenAtAbort = 0;
      const scan = scanBuilt([root], {
        ...quiet,
        threads: 1,
        readAhead,
        signal: controller.signal,
        onProgress: () => {
          seen++;
          if (seen === 100) {
            seenAtAbort = seen;
            controller.abort();
          }
        },
      });
      await expect(scan).rejects.toMatchObject({ name: 'CancelledError' });
      // Looked for between batches of files: well before the 3,000 are done.
      expect(seen - seenAtAbort, `readAhead ${readAhead}`).toBeLessThan(1000);
    }
  });

  it('reports files that vanish after the walk as unreadable, whichever thread meets them', async () => {
    const scanBuilt = await builtScanPaths();
    const { root, files } = await cleanModules(3000);
    const doomed = Object.keys(files).filter((_, index) => index % 100 === 3);
    let removed = false;
    const report = await scanBuilt([root], {
      ...quiet,
      threads: 1,
      readAhead: true,
      // The first file scanned removes others: the worker and the scanning thread each meet some of them.
      onProgress: () => {
        if (removed) return;
        removed = true;
        for (const name of doomed) rmSync(path.join(root, name));
      },
    });
    const unreadable = report.findings.filter((finding) => finding.rule === 'unscanned-read-error').map((finding) => finding.path);
    // Only files the worker had read before the removal may come through clean.
    expect(doomed).toEqual(expect.arrayContaining(unreadable));
    expect(unreadable.length).toBeGreaterThanOrEqual(doomed.length - 3);
    expect(report.problems.map((problem) => problem.path).sort()).toEqual([...unreadable].sort());
    expect(report.files).toBe(3000 - unreadable.length);
  });
});
