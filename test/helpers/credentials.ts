/**
 * Fresh fake credentials, made at test time with the real tools (age-keygen, ssh-keygen, openssl,
 * gpg, puttygen) or shaped by hand with valid checksums. Nothing here is ever committed as key material.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

function withTemp<T>(run: (dir: string) => T): T {
  const dir = mkdtempSync(path.join(tmpdir(), 'dubnium-cred-'));
  try {
    return run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function exec(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...options });
}

/** An age-keygen key file and the identity inside it. */
export function ageKeyFile(): { file: string; identity: string; recipient: string } {
  return withTemp((dir) => {
    const out = path.join(dir, 'keys.txt');
    exec('age-keygen', ['-o', out]);
    const file = readFileSync(out, 'utf8');
    return { file, identity: /AGE-SECRET-KEY-1\S+/.exec(file)![0], recipient: /age1[0-9a-z]+/.exec(file)![0] };
  });
}

/** An OpenSSH private key of `type` (rsa, ecdsa, ed25519), optionally passphrase-protected. */
export function sshKey(type: 'rsa' | 'ecdsa' | 'ed25519', passphrase = ''): { privateKey: string; publicKey: string } {
  return withTemp((dir) => {
    const file = path.join(dir, 'id');
    exec('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', passphrase, '-C', 'test@example.invalid', '-f', file]);
    return { privateKey: readFileSync(file, 'utf8'), publicKey: readFileSync(`${file}.pub`, 'utf8') };
  });
}

/** OpenSSL keys in the PEM forms the gate must know. */
export function opensslKeys(): Record<'rsaTraditional' | 'ecTraditional' | 'rsaEncryptedPem' | 'pkcs8' | 'pkcs8Encrypted' | 'pkcs8NoCrypt' | 'certificate', string> {
  return withTemp((dir) => {
    const at = (name: string) => path.join(dir, name);
    exec('openssl', ['genrsa', '-traditional', '-out', at('rsa.pem'), '2048']);
    exec('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', at('ec.pem')]);
    exec('openssl', ['genrsa', '-traditional', '-aes256', '-passout', 'pass:test-pass', '-out', at('rsa-enc.pem'), '2048']);
    exec('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', at('p8.pem')]);
    exec('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-aes256', '-pass', 'pass:test-pass', '-out', at('p8enc.pem')]);
    exec('openssl', ['pkcs8', '-topk8', '-nocrypt', '-in', at('ec.pem'), '-out', at('p8nocrypt.pem')]);
    exec('openssl', ['req', '-x509', '-new', '-key', at('p8.pem'), '-subj', '/CN=example.invalid', '-days', '1', '-out', at('cert.pem')]);
    const read = (name: string) => readFileSync(at(name), 'utf8');
    return {
      rsaTraditional: read('rsa.pem'),
      ecTraditional: read('ec.pem'),
      rsaEncryptedPem: read('rsa-enc.pem'),
      pkcs8: read('p8.pem'),
      pkcs8Encrypted: read('p8enc.pem'),
      pkcs8NoCrypt: read('p8nocrypt.pem'),
      certificate: read('cert.pem'),
    };
  });
}

/** An armored PGP secret key block from a throwaway GNUPGHOME. */
export function pgpSecretKey(): string {
  return withTemp((home) => {
    const env = { ...process.env, GNUPGHOME: home };
    writeFileSync(
      path.join(home, 'params'),
      ['%no-protection', 'Key-Type: EDDSA', 'Key-Curve: ed25519', 'Name-Real: Test', 'Name-Email: test@example.invalid', 'Expire-Date: 0', '%commit', ''].join('\n'),
    );
    exec('gpg', ['--batch', '--quiet', '--gen-key', path.join(home, 'params')], { env });
    return exec('gpg', ['--batch', '--armor', '--export-secret-keys', 'test@example.invalid'], { env });
  });
}

/** PuTTY .ppk files, format 2 and 3. */
export function puttyKeys(): { v2: string; v3: string } {
  return withTemp((dir) => {
    const v2 = path.join(dir, 'v2.ppk');
    const v3 = path.join(dir, 'v3.ppk');
    exec('puttygen', ['-q', '-t', 'ed25519', '-o', v2, '--ppk-param', 'version=2', '--new-passphrase', '/dev/null']);
    exec('puttygen', ['-q', '-t', 'ed25519', '-o', v3, '--ppk-param', 'version=3', '--new-passphrase', '/dev/null']);
    return { v2: readFileSync(v2, 'utf8'), v3: readFileSync(v3, 'utf8') };
  });
}

/** ssh.com's private key format (`---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----`), as PuTTYgen exports it: without and with a passphrase. */
export function sshComKeys(): { plain: string; protected: string } {
  return withTemp((dir) => {
    const ppk = path.join(dir, 'key.ppk');
    const pass = path.join(dir, 'pass');
    writeFileSync(pass, `${randomBytes(12).toString('hex')}\n`);
    exec('puttygen', ['-q', '-t', 'rsa', '-b', '2048', '-C', 'a comment long enough to read', '-o', ppk, '--new-passphrase', '/dev/null']);
    exec('puttygen', ['-q', ppk, '-O', 'private-sshcom', '-o', path.join(dir, 'plain'), '--new-passphrase', '/dev/null']);
    exec('puttygen', ['-q', ppk, '-O', 'private-sshcom', '-o', path.join(dir, 'protected'), '--new-passphrase', pass]);
    return { plain: readFileSync(path.join(dir, 'plain'), 'utf8'), protected: readFileSync(path.join(dir, 'protected'), 'utf8') };
  });
}

export const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const ALNUM = BASE62;

export function randomString(length: number, alphabet = ALNUM): string {
  const bytes = randomBytes(length);
  let out = '';
  for (let index = 0; index < length; index++) out += alphabet[bytes[index]! % alphabet.length];
  return out;
}

/** CRC-32 (IEEE) of a string's char codes, as GitHub and npm tokens checksum their bodies. */
export function crc32(text: string): number {
  let crc = 0xffffffff;
  for (let index = 0; index < text.length; index++) {
    crc ^= text.charCodeAt(index);
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A GitHub token of the given prefix with a valid CRC32/base62 checksum. */
export function githubToken(prefix: 'ghp' | 'gho' | 'ghu' | 'ghs' | 'ghr' = 'ghp'): string {
  const body = randomString(30);
  let value = crc32(body);
  let checksum = '';
  do {
    checksum = BASE62[value % 62] + checksum;
    value = Math.floor(value / 62);
  } while (value > 0);
  return `${prefix}_${body}${checksum.padStart(6, '0')}`;
}

/** Token-shaped fakes for the other vendors. */
export function fakeTokens() {
  return {
    huggingFace: `hf_${randomString(34, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz')}`,
    openAiLegacy: `sk-${randomString(20)}T3BlbkFJ${randomString(20)}`,
    openAiProject: `sk-proj-${randomString(64, `${ALNUM}_-`)}`,
    githubFineGrained: `github_pat_${randomString(22)}_${randomString(59)}`,
    tailscale: `tskey-auth-k${randomString(11)}CNTRL-${randomString(33)}`,
    slack: `xoxb-${randomString(12, '0123456789')}-${randomString(13, '0123456789')}-${randomString(24)}`,
    awsKeyId: `AKIA${randomString(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')}`,
    awsSecret: randomString(40, `${ALNUM}+/`),
  };
}

/** A WireGuard private key (32 random bytes, base64), as `wg genkey` prints. */
export function wireguardKey(): string {
  const { privateKey } = generateKeyPairSync('x25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  return der.subarray(der.length - 32).toString('base64');
}

/** A Nix binary-cache secret key line, as `nix-store --generate-binary-cache-key` writes it. */
export function nixCacheSecretKey(name = 'cache.example.invalid-1'): { secret: string; public: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const seed = der.subarray(der.length - 32);
  const spki = createPublicKey(createPrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' }))).export({ format: 'der', type: 'spki' });
  const pub = spki.subarray(spki.length - 32);
  return { secret: `${name}:${Buffer.concat([seed, pub]).toString('base64')}`, public: `${name}:${pub.toString('base64')}` };
}
