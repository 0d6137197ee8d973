/**
 * Private keys in binary files and in GnuPG's agent store, made fresh at test time with real openssl
 * and gpg: each is a finding named by its format; the public counterparts (certificates, public keys,
 * a public keyring, a truststore) and random bytes are not.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths, type ScanReport } from '../../../../src/core/scan/index.js';
import { binaryKeyFile } from '../../../../src/core/scan/rules/key-files.js';
import { sshComKeys } from '../../../helpers/credentials.js';
import { tempDir } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

function rules(report: ScanReport): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const finding of report.findings) (out[finding.path] ??= []).push(finding.rule);
  return out;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

describe('DER keys and keystores (openssl)', () => {
  it('finds PKCS#8, PKCS#1, SEC1 and encrypted PKCS#8 in DER, and PKCS#12; not certificates or public keys', async () => {
    const dir = await tempDir();
    openssl(dir, ['genpkey', '-algorithm', 'ed25519', '-outform', 'DER', '-out', 'ed25519.der']);
    openssl(dir, ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'rsa.pem']);
    openssl(dir, ['rsa', '-in', 'rsa.pem', '-outform', 'DER', '-traditional', '-out', 'rsa-pkcs1.der']);
    openssl(dir, ['pkcs8', '-topk8', '-in', 'rsa.pem', '-outform', 'DER', '-out', 'rsa-encrypted.der', '-passout', 'pass:pw']);
    openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-outform', 'DER', '-out', 'ec-sec1.der']);
    openssl(dir, ['req', '-new', '-x509', '-key', 'rsa.pem', '-subj', '/CN=test', '-days', '1', '-out', 'cert.pem']);
    openssl(dir, ['x509', '-in', 'cert.pem', '-outform', 'DER', '-out', 'cert.der']);
    openssl(dir, ['pkey', '-in', 'rsa.pem', '-pubout', '-outform', 'DER', '-out', 'public.der']);
    openssl(dir, ['rsa', '-in', 'rsa.pem', '-RSAPublicKey_out', '-outform', 'DER', '-out', 'public-pkcs1.der']);
    openssl(dir, ['pkcs12', '-export', '-inkey', 'rsa.pem', '-in', 'cert.pem', '-out', 'keystore.p12', '-passout', 'pass:pw']);
    openssl(dir, ['pkcs12', '-export', '-nokeys', '-in', 'cert.pem', '-out', 'certs-only.p12', '-passout', 'pass:pw']);
    // The armored files are the text rules' (tested elsewhere): only the binary ones matter here.
    for (const name of ['rsa.pem', 'cert.pem']) rmSync(path.join(dir, name));
    const report = await scanPaths([dir], quiet);
    expect(rules(report)).toEqual({
      'ed25519.der': ['pkcs8-private-key'],
      'rsa-pkcs1.der': ['der-private-key'],
      'rsa-encrypted.der': ['pkcs8-private-key'],
      'ec-sec1.der': ['der-private-key'],
      'keystore.p12': ['pkcs12-keystore'],
      // A PKCS#12 without keys still has the keystore's shape: reported, the operator can allowlist it.
      'certs-only.p12': ['pkcs12-keystore'],
    });
    expect(report.findings.find((finding) => finding.path === 'ed25519.der')?.note).toBe('ed25519, PKCS8 DER');
  });
});

describe('GnuPG secret keys (gpg)', () => {
  it('finds exported secret keys and subkeys, and every agent key file; not the public keyring', async () => {
    const home = await tempDir();
    const env = { ...process.env, GNUPGHOME: home };
    const gpg = (args: string[]) => execFileSync('gpg', ['--batch', '--quiet', '--pinentry-mode', 'loopback', ...args], { env, stdio: ['ignore', 'pipe', 'ignore'] });
    gpg(['--passphrase', '', '--quick-gen-key', 'Clear <clear@example.invalid>', 'ed25519', 'sign', 'never']);
    gpg(['--passphrase', 'pw', '--quick-gen-key', 'Guarded <guarded@example.invalid>', 'rsa2048', 'sign', 'never']);
    const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(gpg(['--with-colons', '--list-keys', 'clear@example.invalid']).toString())![1]!;
    gpg(['--passphrase', '', '--quick-add-key', fingerprint, 'cv25519', 'encr', 'never']);
    const out = await tempDir();
    writeFileSync(path.join(out, 'secret.gpg'), gpg(['--passphrase', 'pw', '--export-secret-keys']));
    writeFileSync(path.join(out, 'subkeys.gpg'), gpg(['--passphrase', 'pw', '--export-secret-subkeys']));
    writeFileSync(path.join(out, 'public.gpg'), gpg(['--export']));
    const agent = path.join(home, 'private-keys-v1.d');
    for (const name of readdirSync(agent)) writeFileSync(path.join(out, `agent-${name}`), readFileSync(path.join(agent, name)));
    const report = await scanPaths([out], quiet);
    const found = rules(report);
    expect(found['secret.gpg']).toEqual(['pgp-private-key']);
    expect(found['subkeys.gpg']).toEqual(['pgp-private-key']);
    expect(found['public.gpg']).toBeUndefined();
    const agentFiles = Object.keys(found).filter((name) => name.startsWith('agent-'));
    expect(agentFiles).toHaveLength(3); // two primary keys and the subkey
    for (const name of agentFiles) expect(found[name]).toEqual(['gpg-agent-private-key']);
    expect(report.findings.filter((finding) => finding.note?.includes('passphrase-protected')).map((finding) => finding.rule)).toEqual(['gpg-agent-private-key']);
  });

  it('finds agent keys in the canonical S-expression form, and not a shadowed (smartcard) key', () => {
    const atom = (bytes: Buffer | string) => Buffer.concat([Buffer.from(`${Buffer.byteLength(bytes)}:`), Buffer.from(bytes)]);
    const list = (...items: Buffer[]) => Buffer.concat([Buffer.from('('), ...items, Buffer.from(')')]);
    const ecc = (kind: string, secret: Buffer[]) => list(atom(kind), list(atom('ecc'), list(atom('curve'), atom('Ed25519')), list(atom('q'), atom(randomBytes(33))), ...secret));
    const clear = ecc('private-key', [list(atom('d'), atom(randomBytes(32)))]);
    const guarded = ecc('protected-private-key', [list(atom('protected'), atom('openpgp-s2k3-ocb-aes'), atom(randomBytes(64)))]);
    const shadowed = ecc('shadowed-private-key', [list(atom('shadowed'), atom('t1-v1'), atom('D2760001240103040006123456780000'))]);
    expect(binaryKeyFile(clear)?.rule).toBe('gpg-agent-private-key');
    expect(binaryKeyFile(guarded)?.note).toContain('passphrase-protected');
    expect(binaryKeyFile(shadowed)).toBeUndefined();
  });
});

describe('other key stores', () => {
  it('finds a Tor onion service key and a JKS keystore with a private key entry; not a truststore', () => {
    const tor = Buffer.concat([Buffer.from('== ed25519v1-secret: type0 ==\0\0\0'), randomBytes(64)]);
    expect(binaryKeyFile(tor)?.rule).toBe('tor-onion-secret-key');
    const utf = (text: string) => Buffer.concat([Buffer.from([0, text.length]), Buffer.from(text)]);
    const u32 = (value: number) => Buffer.from([value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255]);
    const certificate = randomBytes(700);
    const trusted = Buffer.concat([u32(2), utf('ca'), Buffer.alloc(8), utf('X.509'), u32(certificate.length), certificate]);
    const keyEntry = Buffer.concat([u32(1), utf('server'), Buffer.alloc(8), u32(1200), randomBytes(1200), u32(0)]);
    const jks = (...entries: Buffer[]) => Buffer.concat([u32(0xfeedfeed), u32(2), u32(entries.length), ...entries, randomBytes(20)]);
    expect(binaryKeyFile(jks(trusted, keyEntry))?.rule).toBe('java-keystore');
    expect(binaryKeyFile(jks(trusted))).toBeUndefined();
  });

  it('says nothing of random bytes, whatever their first byte', () => {
    for (let trial = 0; trial < 20_000; trial++) {
      const bytes = randomBytes(64 + (trial % 4000));
      bytes[0] = trial % 256;
      expect(binaryKeyFile(bytes), bytes.subarray(0, 8).toString('hex')).toBeUndefined();
    }
  });
});

describe('key files of other tools', () => {
  it('finds Kerberos keytabs (ktutil), minisign and signify secret keys, not their public keys', async () => {
    const dir = await tempDir();
    const ktutil = ['addent -password -p host/nixos.example.org@EXAMPLE.ORG -k 1 -e aes256-cts-hmac-sha1-96', 'secret-for-the-test', 'addent -password -p nfs/nixos.example.org@EXAMPLE.ORG -k 2 -e aes128-cts-hmac-sha1-96', 'another-secret', `wkt ${path.join(dir, 'krb5.keytab')}`, 'quit', ''].join('\n');
    execFileSync('ktutil', [], { input: ktutil, stdio: ['pipe', 'ignore', 'ignore'] });
    execFileSync('minisign', ['-G', '-W', '-p', path.join(dir, 'minisign.pub'), '-s', path.join(dir, 'minisign.key')], { stdio: 'ignore' });
    execFileSync('signify-openbsd', ['-G', '-n', '-p', path.join(dir, 'signify.pub'), '-s', path.join(dir, 'signify.sec')], { stdio: 'ignore' });
    const report = await scanPaths([dir], quiet);
    expect(rules(report)).toEqual({ 'krb5.keytab': ['kerberos-keytab'], 'minisign.key': ['minisign-secret-key'], 'signify.sec': ['signify-secret-key'] });
  });

  it('finds a Synapse signing key, a BorgBackup key file and a Nebula private key; not a Nebula certificate', async () => {
    const dir = await tempDir();
    const base64 = (bytes: Buffer) => bytes.toString('base64');
    const wrap = (text: string) => text.replace(/.{1,64}/g, '$&\n');
    writeFileSync(path.join(dir, 'homeserver.signing.key'), `ed25519 a_${randomBytes(3).toString('hex')} ${base64(randomBytes(32)).replace(/=+$/, '')}\n`);
    writeFileSync(path.join(dir, 'repo.borgkey'), `BORG_KEY ${randomBytes(32).toString('hex')}\n${wrap(base64(randomBytes(460)))}`);
    writeFileSync(path.join(dir, 'host.key'), `-----BEGIN NEBULA X25519 PRIVATE KEY-----\n${base64(randomBytes(32))}\n-----END NEBULA X25519 PRIVATE KEY-----\n`);
    writeFileSync(path.join(dir, 'host.crt'), `-----BEGIN NEBULA CERTIFICATE-----\n${wrap(base64(randomBytes(300)))}-----END NEBULA CERTIFICATE-----\n`);
    // The signing key's public half, as Synapse's key server hands it out, is JSON: no finding.
    writeFileSync(path.join(dir, 'verify_keys.json'), `{"ed25519:a_abcd": {"key": "${base64(randomBytes(32)).replace(/=+$/, '')}"}}\n`);
    const report = await scanPaths([dir], quiet);
    expect(rules(report)).toEqual({ 'homeserver.signing.key': ['synapse-signing-key'], 'repo.borgkey': ['borg-key-file'], 'host.key': ['pem-private-key'] });
  });

  it("finds ZeroTier's identity.secret, not its identity.public", async () => {
    // zerotier-one is not packaged here: the files are written in its format (address:0:public:private, hex).
    const dir = await tempDir();
    const address = randomBytes(5).toString('hex');
    const publicKey = randomBytes(64).toString('hex');
    writeFileSync(path.join(dir, 'identity.secret'), `${address}:0:${publicKey}:${randomBytes(64).toString('hex')}`);
    writeFileSync(path.join(dir, 'identity.public'), `${address}:0:${publicKey}`);
    const report = await scanPaths([dir], quiet);
    expect(rules(report)).toEqual({ 'identity.secret': ['zerotier-identity-secret'] });
    expect(report.findings[0]!.note).toBe(`ZeroTier identity ${address}`);
  });
});

describe("ssh.com's private key format (puttygen -O private-sshcom)", () => {
  it('finds it with and without a passphrase, in a file and inside a config; not its public form or a header alone', async () => {
    const { plain, protected: encrypted } = sshComKeys();
    expect(plain.startsWith('---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----')).toBe(true);
    const dir = await tempDir();
    writeFileSync(path.join(dir, 'tectia_rsa'), plain);
    writeFileSync(path.join(dir, 'protected_rsa'), encrypted);
    writeFileSync(path.join(dir, 'deploy.yaml'), `key: |\n${plain.trimEnd().split('\n').map((line) => `  ${line}`).join('\n')}\n`);
    writeFileSync(path.join(dir, 'docs.txt'), '---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: "example"\n---- END SSH2 ENCRYPTED PRIVATE KEY ----\n');
    writeFileSync(path.join(dir, 'id.pub'), '---- BEGIN SSH2 PUBLIC KEY ----\nComment: "x"\nAAAAB3NzaC1yc2EAAAADAQABAAABAQC7\n---- END SSH2 PUBLIC KEY ----\n');
    expect(rules(await scanPaths([dir], quiet))).toEqual({ 'deploy.yaml': ['ssh2-private-key'], 'protected_rsa': ['ssh2-private-key'], 'tectia_rsa': ['ssh2-private-key'] });
  });
});
