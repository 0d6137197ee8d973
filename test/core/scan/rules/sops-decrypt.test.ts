import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { identityToRecipient } from 'age-encryption';
import { describe, expect, it } from 'vitest';
import { decryptSops, sshEd25519ToAgeIdentity } from '../../../../src/core/scan/rules/sops-decrypt.js';
import { ageKeyFile, sshKey } from '../../../helpers/credentials.js';
import { sopsEncrypt, type SopsTree } from '../../../helpers/sops-encrypt.js';
import { tempDir } from '../../../helpers/tmp.js';

const tree: SopsTree = {
  backup: { repo_password: 'correct horse battery staple 42', retention_days: 30, enabled: true, ratio: 0.5 },
  ldap: { bind_password: 'bind-pw-7f3a9c2e', servers: ['ldap1.internal.invalid', 'ldap2.internal.invalid'], port_unencrypted: 636 },
  '10': 'numeric-looking key kept in order',
  empty: '',
  nothing: null,
};

function plaintexts(outcome: Awaited<ReturnType<typeof decryptSops>>): Record<string, string> {
  if (outcome.status !== 'decrypted') throw new Error(`not decrypted: ${JSON.stringify(outcome)}`);
  return Object.fromEntries(outcome.values.map((value) => [value.keyPath, value.plaintext.toString('utf8')]));
}

describe('decryptSops', () => {
  it('decrypts YAML, JSON and binary files and verifies the MAC over every value in order', async () => {
    const key = ageKeyFile();
    for (const format of ['yaml', 'json'] as const) {
      const file = await sopsEncrypt(tree, { recipients: [key.recipient], format });
      expect(file.text).not.toContain('bind-pw-7f3a9c2e');
      const outcome = await decryptSops(file.text, [key.identity]);
      expect(outcome.status === 'decrypted' && outcome.macVerified, format).toBe(true);
      expect(plaintexts(outcome)).toEqual({
        'backup/repo_password': 'correct horse battery staple 42',
        'backup/retention_days': '30',
        'backup/enabled': 'true',
        'backup/ratio': '0.5',
        'ldap/bind_password': 'bind-pw-7f3a9c2e',
        'ldap/servers/0': 'ldap1.internal.invalid',
        'ldap/servers/1': 'ldap2.internal.invalid',
        '10': 'numeric-looking key kept in order',
      });
      expect(outcome.status === 'decrypted' && outcome.values.find((value) => value.keyPath === 'backup/enabled')?.type).toBe('bool');
    }
    const binary = await sopsEncrypt({ data: 'wifi passphrase: purple-otter-88\n' }, { recipients: [key.recipient], format: 'binary' });
    expect(plaintexts(await decryptSops(binary.text, [key.identity]))).toEqual({ data: 'wifi passphrase: purple-otter-88\n' });
  });

  it('decrypts dotenv and INI files (flattened metadata)', async () => {
    const key = ageKeyFile();
    const dotenv = await sopsEncrypt({ RESTIC_PASSWORD: 'restic-pw-0d9e8f7a', HF_HOME_unencrypted: '/var/cache/hf' }, { recipients: [key.recipient], format: 'dotenv' });
    expect(dotenv.text).toContain('sops_age__list_0__map_enc=-----BEGIN AGE ENCRYPTED FILE-----\\n');
    const env = await decryptSops(dotenv.text, [key.identity]);
    expect(env.status === 'decrypted' && env.macVerified).toBe(true);
    expect(plaintexts(env)).toEqual({ RESTIC_PASSWORD: 'restic-pw-0d9e8f7a' });
    const ini = await sopsEncrypt({ db: { password: 'ini-db-pw-55aa66bb', user: 'svc' } }, { recipients: [key.recipient], format: 'ini' });
    const fromIni = await decryptSops(ini.text, [key.identity]);
    expect(fromIni.status === 'decrypted' && fromIni.macVerified).toBe(true);
    expect(plaintexts(fromIni)).toEqual({ 'db/password': 'ini-db-pw-55aa66bb', 'db/user': 'svc' });
  });

  it('decrypts the data key exactly as the real age CLI does', async () => {
    const key = ageKeyFile();
    const file = await sopsEncrypt(tree, { recipients: [key.recipient], format: 'yaml' });
    const dir = await tempDir();
    writeFileSync(path.join(dir, 'keys.txt'), key.file, { mode: 0o600 });
    writeFileSync(path.join(dir, 'enc'), file.encryptedKeys[0]!);
    const byAge = execFileSync('age', ['-d', '-i', path.join(dir, 'keys.txt'), path.join(dir, 'enc')]);
    expect(byAge.equals(file.dataKey)).toBe(true);
  });

  it('finds the entry for one of several recipients, and says why when none is the operator\'s', async () => {
    const [mine, other] = [ageKeyFile(), ageKeyFile()];
    const file = await sopsEncrypt(tree, { recipients: [other.recipient, mine.recipient], format: 'yaml' });
    expect((await decryptSops(file.text, [mine.identity])).status).toBe('decrypted');
    const stranger = ageKeyFile();
    const outcome = await decryptSops(file.text, [stranger.identity]);
    expect(outcome).toEqual({ status: 'undecryptable', reason: 'not encrypted to any loaded age identity' });
    expect(await decryptSops('a: 1\nb: [x]\n', [mine.identity])).toEqual({ status: 'not-sops' });
  });

  it('reports a file whose MAC does not match: a value changed, swapped or an unencrypted value edited', async () => {
    const key = ageKeyFile();
    const file = await sopsEncrypt(tree, { recipients: [key.recipient], format: 'yaml' });
    // An unencrypted value edited by hand: every value still decrypts, the MAC does not match.
    const edited = await decryptSops(file.text.replace('port_unencrypted: 636', 'port_unencrypted: 637'), [key.identity]);
    expect(edited.status === 'decrypted' && edited.macVerified).toBe(false);
    expect(edited.status === 'decrypted' && edited.problems.join()).toMatch(/MAC does not match/);
    expect(plaintexts(edited)['ldap/bind_password']).toBe('bind-pw-7f3a9c2e');
    // A value moved to another key: its additional data (the key path) no longer fits.
    const lines = file.text.split('\n');
    const from = lines.findIndex((line) => line.includes('repo_password:'));
    const to = lines.findIndex((line) => line.includes('bind_password:'));
    const swapped = [...lines];
    swapped[to] = lines[to]!.replace(/ENC\[.*\]/, /ENC\[.*\]/.exec(lines[from]!)![0]);
    const moved = await decryptSops(swapped.join('\n'), [key.identity]);
    expect(moved.status === 'decrypted' && moved.problems.join()).toMatch(/ldap\/bind_password does not decrypt/);
    // lastmodified changed: the MAC's additional data no longer fits.
    const touched = await decryptSops(file.text.replace('2024-05-06T07:08:09Z', '2024-05-06T07:08:10Z'), [key.identity]);
    expect(touched.status === 'decrypted' && touched.problems.join()).toMatch(/MAC does not decrypt/);
  });

  it('rebuilds the data key from Shamir shares when enough key groups open, else says so', async () => {
    const [first, second] = [ageKeyFile(), ageKeyFile()];
    const file = await sopsEncrypt(tree, { recipients: [], format: 'yaml', keyGroups: [[first.recipient], [second.recipient]], shamirThreshold: 2 });
    const both = await decryptSops(file.text, [first.identity, second.identity]);
    expect(both.status === 'decrypted' && both.macVerified).toBe(true);
    expect(plaintexts(both)['backup/repo_password']).toBe('correct horse battery staple 42');
    expect(await decryptSops(file.text, [first.identity])).toEqual({
      status: 'undecryptable',
      reason: 'Shamir key groups: 1 of the 2 shares needed could be opened with the loaded identities',
    });
  });
});

// Edwards y -> Montgomery u = (1 + y) / (1 - y) mod p: how ssh-to-age turns an ed25519 public key into a recipient.
const P = 2n ** 255n - 19n;
function modPow(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  base %= P;
  for (; exponent > 0n; exponent >>= 1n, base = (base * base) % P) if (exponent & 1n) result = (result * base) % P;
  return result;
}
function montgomeryFromSshPublicKey(publicKeyLine: string): Buffer {
  const blob = Buffer.from(publicKeyLine.split(' ')[1]!, 'base64');
  const raw = blob.subarray(blob.length - 32);
  let y = 0n;
  for (let index = 31; index >= 0; index--) y = (y << 8n) | BigInt(index === 31 ? raw[index]! & 0x7f : raw[index]!);
  const u = ((1n + y) * modPow((1n - y + P) % P, P - 2n)) % P;
  const out = Buffer.alloc(32);
  let rest = u;
  for (let index = 0; index < 32; index++, rest >>= 8n) out[index] = Number(rest & 0xffn);
  return out;
}

describe('sshEd25519ToAgeIdentity', () => {
  it('gives the identity whose recipient is the ssh-to-age conversion of the public key', async () => {
    const { bech32 } = await import('bech32');
    for (let round = 0; round < 3; round++) {
      const key = sshKey('ed25519');
      const identity = sshEd25519ToAgeIdentity(key.privateKey)!;
      expect(identity).toMatch(/^AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}$/);
      const recipient = await identityToRecipient(identity);
      const decoded = bech32.decode(recipient);
      expect(Buffer.from(bech32.fromWords(decoded.words)).equals(montgomeryFromSshPublicKey(key.publicKey))).toBe(true);
    }
  });

  it('refuses passphrase-protected and non-ed25519 keys', () => {
    expect(sshEd25519ToAgeIdentity(sshKey('ed25519', 'a passphrase').privateKey)).toBeUndefined();
    expect(sshEd25519ToAgeIdentity(sshKey('ecdsa').privateKey)).toBeUndefined();
  });
});
