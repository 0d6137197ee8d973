/**
 * Issue 16: the operator's own SOPS values become exact-match needles. Real SOPS files (real AES-GCM,
 * a data key really age-encrypted to a fresh identity, a valid MAC), a value quoted in plaintext,
 * base64 or inside a tar.gz elsewhere: `scan` and `build` exit 4 naming the SOPS key path, and the
 * value appears nowhere in what they print.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { identityToRecipient } from 'age-encryption';
import { describe, expect, it } from 'vitest';
import { sshEd25519ToAgeIdentity } from '../../src/core/scan/rules/sops-decrypt.js';
import { writeBundle } from '../helpers/bundles.js';
import { cliEnv, runCli, type CliResult } from '../helpers/cli.js';
import { ageKeyFile, sshKey } from '../helpers/credentials.js';
import { sopsEncrypt } from '../helpers/sops-encrypt.js';
import { gitRepo, tempDir, writeTree } from '../helpers/tmp.js';

interface Fixture {
  repo: string;
  home: string;
  keyFile: string;
  values: { backup: string; ldap: string; wifi: string };
}

/** A sops-nix repository: an encrypted host file, and docs, a Kubernetes Secret and a backup quoting its values. */
async function fixture(options: { quote?: boolean; sshRecipient?: string } = {}): Promise<Fixture> {
  const key = ageKeyFile();
  const home = await tempDir('dubnium-sops-home-');
  const keyFile = path.join(home, 'age-keys.txt');
  writeFileSync(keyFile, key.file, { mode: 0o600 });
  const values = {
    backup: `restic-${randomBytes(8).toString('hex')}`,
    ldap: `bind-${randomBytes(8).toString('hex')}`,
    wifi: `wlan ${randomBytes(6).toString('hex')} lagoon`,
  };
  const host = await sopsEncrypt(
    { backup: { repo_password: values.backup, retention_days: 30 }, ldap: { bind_password: values.ldap, enabled: true } },
    { recipients: [options.sshRecipient ?? key.recipient], format: 'yaml' },
  );
  const wifi = await sopsEncrypt({ WIFI_PSK: values.wifi }, { recipients: [key.recipient], format: 'dotenv' });
  const files: Record<string, string | Buffer> = {
    '.sops.yaml': `creation_rules:\n  - path_regex: secrets/.*\n    age: ${key.recipient}\n`,
    'flake.nix': '{ outputs = _: { }; }\n',
    'secrets/hosts/workstation.yaml': host.text,
    'secrets/wifi.env': wifi.text,
    'docs/restore.md': '# Restore\n\nAsk the operator for the repository password.\n',
  };
  if (options.quote !== false) {
    // Quoted as prose: no pattern rule knows this shape; only the SOPS value can find it.
    files['docs/restore.md'] = `# Restore\n\nThe repository password is ${values.backup} (ask before you rotate it).\n`;
    files['k8s/ldap-secret.yaml'] = `apiVersion: v1\nkind: Secret\nmetadata:\n  name: ldap\ndata:\n  bindCredential: ${Buffer.from(values.ldap).toString('base64')}\n`;
  }
  const repo = await gitRepo(files);
  if (options.quote !== false) {
    // A backup of the Wi-Fi settings, as a tar.gz made by the real tar.
    const staging = await tempDir();
    await writeTree(staging, { 'etc/NetworkManager/system-connections/home.nmconnection': `[wifi-security]\nkey-mgmt=wpa-psk\n# passphrase: ${values.wifi}\n` });
    mkdirSync(path.join(repo, 'backups'), { recursive: true });
    execFileSync('tar', ['-czf', path.join(repo, 'backups/nm.tar.gz'), '-C', staging, 'etc']);
    execFileSync('git', ['add', '-A'], { cwd: repo });
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-qm', 'backup'], { cwd: repo });
  }
  return { repo, home, keyFile, values };
}

function expectNoValue(result: CliResult, values: Fixture['values']): void {
  for (const value of Object.values(values)) {
    for (const form of [value, Buffer.from(value).toString('base64'), encodeURIComponent(value)]) {
      expect(result.stdout).not.toContain(form);
      expect(result.stderr).not.toContain(form);
    }
  }
}

describe('scan with the operator\'s SOPS values', () => {
  it('exits 4 naming the SOPS key path of each value quoted as text, base64 and inside a tar.gz; never prints a value', async () => {
    const { repo, home, keyFile, values } = await fixture();
    const env = cliEnv({ HOME: home, SOPS_AGE_KEY_FILE: keyFile });
    const result = await runCli(['scan', repo], { env });
    expect(result.code, result.stderr).toBe(4);
    expect(result.stdout).toContain(`Operator secrets matched exactly: SOPS_AGE_KEY_FILE (${keyFile}), 3 values from 2 SOPS files.`);
    expect(result.stdout).toMatch(/FOUND {4}sops-value in docs\/restore\.md:3 .*the value of secrets\/hosts\/workstation\.yaml: backup\/repo_password$/m);
    expect(result.stdout).toMatch(/FOUND {4}sops-value in k8s\/ldap-secret\.yaml:6 .*the value of secrets\/hosts\/workstation\.yaml: ldap\/bind_password \(base64\)$/m);
    expect(result.stdout).toMatch(/FOUND {4}sops-value in backups\/nm\.tar\.gz › etc\/NetworkManager\/system-connections\/home\.nmconnection:3 .*the value of secrets\/wifi\.env: WIFI_PSK$/m);
    expect(result.stdout).not.toMatch(/FOUND .* in secrets\//);
    expectNoValue(result, values);

    const json = await runCli(['scan', repo, '--json'], { env });
    expect(json.code).toBe(4);
    const report = JSON.parse(json.stdout) as { findings: { path: string; kind: string; rule: string; fingerprint: string; note: string }[]; operatorSecrets: { loaded: string[] } };
    // The committed copies are found in the git objects too (loose objects are read).
    const inGit = report.findings.filter((finding) => finding.path.startsWith('.git/objects/'));
    expect(inGit.length).toBe(3);
    expect(report.findings.filter((finding) => !inGit.includes(finding)).map((finding) => [finding.path, finding.kind]).sort()).toEqual([
      ['backups/nm.tar.gz', 'sops-value'],
      ['docs/restore.md', 'sops-value'],
      ['k8s/ldap-secret.yaml', 'sops-value'],
    ]);
    for (const finding of report.findings) expect(finding.fingerprint).toMatch(/^sops-value:[0-9a-f]{16}$/);
    expect(report.operatorSecrets.loaded).toContain('3 values from 2 SOPS files');
    expectNoValue(json, values);
    const sarif = await runCli(['scan', repo, '--sarif'], { env });
    expect(sarif.code).toBe(4);
    expectNoValue(sarif, values);
  });

  it('decrypts nothing without an identity, or with --no-operator-secrets: the same tree is clean', async () => {
    const { repo, home, keyFile } = await fixture();
    const without = await runCli(['scan', repo], { env: cliEnv({ HOME: home }) });
    expect(without.code, without.stdout).toBe(0);
    expect(without.stdout).toContain('Operator secrets matched exactly: none found to load.');
    const off = await runCli(['scan', repo, '--no-operator-secrets'], { env: cliEnv({ HOME: home, SOPS_AGE_KEY_FILE: keyFile }) });
    expect(off.code, off.stdout).toBe(0);
    expect(off.stdout).toContain('Operator secrets: not loaded');
  });

  it('decrypts files encrypted to the age recipient of the operator\'s ed25519 SSH key (ssh-to-age)', async () => {
    const ssh = sshKey('ed25519');
    const recipient = await identityToRecipient(sshEd25519ToAgeIdentity(ssh.privateKey)!);
    const { repo, home, values } = await fixture({ sshRecipient: recipient });
    mkdirSync(path.join(home, '.ssh'), { mode: 0o700 });
    writeFileSync(path.join(home, '.ssh/id_ed25519'), ssh.privateKey, { mode: 0o600 });
    const result = await runCli(['scan', repo], { env: cliEnv({ HOME: home }) });
    expect(result.code).toBe(4);
    expect(result.stdout).toContain('2 values from 1 SOPS file');
    expect(result.stdout).toContain('the value of secrets/hosts/workstation.yaml: backup/repo_password');
    // The Wi-Fi file is encrypted to the age key, not loaded here: said, not failed.
    expect(result.stdout).toMatch(/^NOTE {5}secrets\/wifi\.env: SOPS file not decrypted \(not encrypted to any loaded age identity\)/m);
    expectNoValue(result, values);
  });

  it('reports a SOPS file whose MAC does not verify, and still matches its values', async () => {
    const { repo, home, keyFile, values } = await fixture({ quote: false });
    const file = path.join(repo, 'secrets/hosts/workstation.yaml');
    // An edit sops would not make: an unencrypted key added by hand (the MAC covers every value).
    writeFileSync(file, readFileSync(file, 'utf8').replace('backup:\n', 'backup:\n    note_unencrypted: added by hand\n'));
    const result = await runCli(['scan', repo], { env: cliEnv({ HOME: home, SOPS_AGE_KEY_FILE: keyFile }) });
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/^PROBLEM {2}secrets\/hosts\/workstation\.yaml: SOPS file does not verify: its MAC does not match its values/m);
    expect(result.stdout).toContain('3 values from 2 SOPS files');
    expectNoValue(result, values);
  });
});

describe('build with the operator\'s SOPS values', () => {
  it('exits 4 before writing anything when the source archive quotes a value, naming the key path', async () => {
    const { repo, home, keyFile, values } = await fixture();
    const work = await tempDir();
    const bundle = await writeBundle(path.join(work, 'models', 'tiny'), { shards: 1 });
    const target = path.join(work, 'seed');
    const result = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', target, '--no-verify'], { env: cliEnv({ HOME: home, SOPS_AGE_KEY_FILE: keyFile }) });
    expect(result.code, result.stderr).toBe(4);
    expect(result.stderr).toContain('the value of secrets/hosts/workstation.yaml: backup/repo_password');
    expect(result.stderr).toContain('the value of secrets/wifi.env: WIFI_PSK');
    expect(existsSync(path.join(target, 'dubnium-seed.json'))).toBe(false);
    expectNoValue(result, values);

    const json = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', target, '--no-verify', '--json'], { env: cliEnv({ HOME: home, SOPS_AGE_KEY_FILE: keyFile }) });
    expect(json.code).toBe(4);
    expect(json.stdout).toContain('sops-value');
    expectNoValue(json, values);

    // Without the identity the values are unknown: the same repository builds.
    const clean = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', target, '--no-verify', '--json'], { env: cliEnv({ HOME: home }) });
    expect(clean.code, clean.stderr).toBe(0);
  });

  it('builds a repository whose SOPS files are only encrypted, reporting the values it loaded', async () => {
    const { repo, home, keyFile, values } = await fixture({ quote: false });
    const work = await tempDir();
    const bundle = await writeBundle(path.join(work, 'models', 'tiny'), { shards: 1 });
    const result = await runCli(['build', '--repo', repo, '--model', bundle.dir, '--target', path.join(work, 'seed'), '--no-verify'], { env: cliEnv({ HOME: home, SOPS_AGE_KEY_FILE: keyFile }) });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`leak gate matched your own secrets too: SOPS_AGE_KEY_FILE (${keyFile}), 3 values from 2 SOPS files`);
    expectNoValue(result, values);
  });
});
