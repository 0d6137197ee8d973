import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { base64Fragments, isDistinctive, loadSopsValues, needlesForValue, readIfSops } from '../../../../src/core/scan/rules/sops-values.js';
import { holdsOperatorSecret, scanText } from '../../../../src/core/scan/rules/rules.js';
import { ageKeyFile, sshKey } from '../../../helpers/credentials.js';
import { sopsEncrypt } from '../../../helpers/sops-encrypt.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';
import { sshEd25519ToAgeIdentity } from '../../../../src/core/scan/rules/sops-decrypt.js';
import { identityToRecipient } from 'age-encryption';

describe('SOPS value needles', () => {
  it('finds a value base64-encoded at every alignment inside longer data', () => {
    const value = Buffer.from('restic-pw-0d9e8f7a');
    const fragments = base64Fragments(value);
    for (let shift = 0; shift < 3; shift++) {
      const encoded = Buffer.concat([randomBytes(10 + shift), value, randomBytes(7)]).toString('base64');
      expect(fragments.some((fragment) => encoded.includes(fragment)), `shift ${shift}`).toBe(true);
    }
  });

  it('keeps distinctive values and skips numbers, booleans, short and common words, placeholders and public keys', () => {
    expect(isDistinctive('correct horse battery staple')).toBe(true);
    expect(isDistinctive('bind-pw-7f3a9c2e')).toBe(true);
    for (const value of ['short', 'changeme', 'Password1', '12345678901', 'xxxxxxxxxxxx', '<your-password>', '${DB_PASSWORD}', 'example-secret-here']) {
      expect(isDistinctive(value), value).toBe(false);
    }
    expect(isDistinctive('correct horse', 'bool')).toBe(false);
    expect(isDistinctive(`age1${'q'.repeat(58)}`)).toBe(false);
    expect(isDistinctive(sshKey('ed25519').publicKey)).toBe(false);
  });

  it('names the key path, never the value, and matches URL-encoded and JSON-escaped forms', () => {
    const value = 'p@ss "word" /with spaces';
    const secrets = needlesForValue(Buffer.from(value), 'secrets/app.yaml: db/password');
    for (const secret of secrets) {
      expect(secret.kind).toBe('sops-value');
      expect(secret.note).toMatch(/^the value of secrets\/app\.yaml: db\/password/);
      expect(secret.note).not.toContain(value);
    }
    const texts = [`url: postgres://svc:${encodeURIComponent(value)}@db.internal/x`, JSON.stringify({ password: value }), `plain ${value} text`];
    for (const text of texts) {
      // Inside a finding of another rule (credentials in a URL), the key path is added to its note.
      const hits = scanText(text, { operatorSecrets: secrets }).filter((hit) => hit.rule === 'sops-value' || hit.note?.includes('(secrets/app.yaml: db/password)'));
      expect(hits.length, text).toBeGreaterThan(0);
    }
    expect(holdsOperatorSecret('nothing here at all', secrets)).toBe(false);
  });
});

describe('loadSopsValues', () => {
  it('decrypts only SOPS files, counts values, and reports undecryptable and tampered files', async () => {
    const [mine, other] = [ageKeyFile(), ageKeyFile()];
    const dir = await tempDir();
    const good = await sopsEncrypt({ backup: { repo_password: 'correct horse battery staple 42', port: 8080, keep: 'short' } }, { recipients: [mine.recipient], format: 'yaml' });
    const foreign = await sopsEncrypt({ token: 'someone-elses-token-1234' }, { recipients: [other.recipient], format: 'json' });
    const tampered = await sopsEncrypt({ WIFI_PSK: 'purple-otter-88-lagoon', NOTE_unencrypted: 'hi' }, { recipients: [mine.recipient], format: 'dotenv' });
    await writeTree(dir, {
      'good.yaml': good.text,
      'foreign.json': foreign.text,
      'tampered.env': tampered.text.replace('NOTE_unencrypted=hi', 'NOTE_unencrypted=ho'),
      'plain.yaml': 'a: ENC is mentioned but not ENC[AES256_GCM,data: this is not sops\n',
      'big.bin': Buffer.alloc(2 * 1024 * 1024, 0x41),
    });
    const files = ['good.yaml', 'foreign.json', 'tampered.env', 'plain.yaml', 'big.bin'].map((name) => ({ full: path.join(dir, name), label: name }));
    expect(readIfSops(path.join(dir, 'big.bin'))).toBeUndefined();
    const result = await loadSopsValues(files, [{ label: 'keys.txt', kind: 'age', text: mine.identity }]);
    expect(result.summary).toBe('2 values from 2 SOPS files');
    expect(result.notes).toEqual([{ path: 'foreign.json', message: 'SOPS file not decrypted (not encrypted to any loaded age identity): its values cannot be matched' }]);
    expect(result.problems).toHaveLength(1);
    expect(result.problems[0]!.path).toBe('tampered.env');
    expect(result.problems[0]!.message).toMatch(/MAC does not match/);
    expect(new Set(result.secrets.map((secret) => secret.label))).toEqual(new Set(['good.yaml: backup/repo_password', 'tampered.env: WIFI_PSK']));
    expect(JSON.stringify([result.summary, result.notes, result.problems])).not.toMatch(/correct horse|purple-otter|someone-elses/);
  });

  it('decrypts with an unencrypted ed25519 SSH key, converted the way ssh-to-age does', async () => {
    const ssh = sshKey('ed25519');
    const recipient = await identityToRecipient(sshEd25519ToAgeIdentity(ssh.privateKey)!);
    const dir = await tempDir();
    const file = await sopsEncrypt({ ldap: { bind_password: 'bind-pw-7f3a9c2e' } }, { recipients: [recipient], format: 'yaml' });
    await writeTree(dir, { 'secrets.yaml': file.text });
    const result = await loadSopsValues([{ full: path.join(dir, 'secrets.yaml'), label: 'secrets.yaml' }], [{ label: '~/.ssh/id_ed25519', kind: 'ssh-ed25519', text: ssh.privateKey }]);
    expect(result.summary).toBe('1 value from 1 SOPS file');
  });
});

describe('scanPaths with SOPS values', () => {
  it('matches a value quoted elsewhere only when the identity is loaded, and never reports the value', async () => {
    const key = ageKeyFile();
    const dir = await tempDir();
    const home = await tempDir();
    const keyFile = path.join(home, 'keys.txt');
    writeFileSync(keyFile, key.file);
    const password = `bk-${randomBytes(9).toString('hex')}`;
    const file = await sopsEncrypt({ backup: { repo_password: password } }, { recipients: [key.recipient], format: 'yaml' });
    await writeTree(dir, { 'secrets/hosts/workstation.yaml': file.text, 'docs/restore.md': `# Restore\n\nrestic -r b2:bucket restore latest  # password: ${password}\n` });
    const options = { home, systemRoot: home, env: { SOPS_AGE_KEY_FILE: keyFile } };
    const report = await scanPaths([dir], options);
    expect(report.findings.map((finding) => [finding.path, finding.kind, finding.note])).toEqual([
      ['docs/restore.md', 'sops-value', 'the value of secrets/hosts/workstation.yaml: backup/repo_password'],
    ]);
    expect(report.operatorSecrets.loaded).toContain('1 value from 1 SOPS file');
    expect(JSON.stringify(report)).not.toContain(password);
    // Without an identity nothing is decrypted, and the same tree is clean.
    expect((await scanPaths([dir], { home, systemRoot: home, env: {} })).findings).toEqual([]);
    expect((await scanPaths([dir], { ...options, operatorSecrets: false })).findings).toEqual([]);
  });
});
