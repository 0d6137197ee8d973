/**
 * The text rules: every credential shape the leak gate knows, validated by structure (checksums,
 * key parsing, entropy) wherever a structure exists. `scanText` works on a latin1 view of bytes, so
 * string offsets are byte offsets. Pure functions over constant tables: safe inside worker threads.
 */
import { createRequire } from 'node:module';
import type * as Bech32 from 'bech32';
import { nodeCrypto } from './fingerprint.js';
import * as L from './literals.js';
import { looksLikeSecretValue, nixStoreWriterRule, nixTextAttribute } from './named-secrets.js';
import { isDottedVendorToken, looksLikeToken, serviceRules } from './service-rules.js';
import { base62, crc32, entropy, isCryptHash, isDescriptivePlaceholder, isPathOrUrl, isTemplateValue, looksLikePlaceholder, matchesOnLines, nameWords, needleLines, overlapsAny, textyRatio } from './text-util.js';
import { gitCryptKeyFile } from './git-crypt.js';
import { cliFlagRule, isExampleValue } from './cli-flags.js';

/** A match inside one text window; offsets relative to that window. */
export interface RawHit {
  rule: string;
  kind: string;
  /** The secret material that is fingerprinted (never reported). */
  secret: string | Buffer;
  start: number;
  end: number;
  note?: string;
}

/** An exact value the operator holds (loaded from their key files and environment, or decrypted from SOPS). */
export interface OperatorSecret {
  value: string;
  label: string;
  /** Finding kind and rule when it matches (default `operator-secret`). */
  kind?: string;
  /** The finding's note (default `matches <label>`); names the source, never the value. */
  note?: string;
  /** What the fingerprint hashes (default the value), e.g. the value with its SOPS key path. */
  material?: string;
}

export interface TextScanContext {
  operatorSecrets: readonly OperatorSecret[];
  /** Nesting depth of base64 unwrapping; rules stop recursing at 2. */
  depth?: number;
  /** The text is a `.nix` file's: the Nix rules without a literal anchor run too (`requirePass = "…";`). */
  nixSource?: boolean;
}

/** The longest secret a rule needs to see whole; streaming windows overlap by at least this. */
export const MAX_SECRET_SPAN = 64 * 1024;

const BECH32_LIMIT = 100_000;

// Loaded when text first holds `AGE-`: most files never need it, every start-up would pay for it.
let bech32Module: typeof Bech32 | undefined;

function decodeBech32(candidate: string): { prefix: string; bytes: Buffer } | undefined {
  bech32Module ??= createRequire(import.meta.url)('bech32') as typeof Bech32;
  const { bech32 } = bech32Module;
  try {
    const decoded = bech32.decode(candidate, BECH32_LIMIT);
    return { prefix: decoded.prefix, bytes: Buffer.from(bech32.fromWords(decoded.words)) };
  } catch {
    return undefined;
  }
}

function ageRule(text: string, hits: RawHit[]): void {
  const pattern = /AGE-(?:SECRET-KEY-(?:PQ-)?|PLUGIN-[A-Z0-9+._-]+?-)1[02-9AC-HJ-NP-Z]{6,}/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const candidate = match[0];
    const decoded = decodeBech32(candidate);
    if (!decoded) continue; // bad checksum: a placeholder or a truncated example
    const prefix = decoded.prefix.toLowerCase();
    let rule = 'age-identity';
    let note: string | undefined;
    if (prefix === 'age-secret-key-pq-') rule = 'age-pq-identity';
    else if (prefix.startsWith('age-plugin-')) {
      rule = 'age-plugin-identity';
      // A plugin identity stands for a key a plugin holds: a handle to a key on a token (YubiKey)
      // or a key wrapped for a device (TPM, Secure Enclave). It decrypts with that device at hand:
      // the operator decides, by allowlisting its fingerprint with a reason.
      note = `age-plugin-${prefix.slice('age-plugin-'.length, -1)} identity: decrypts wherever its token or device is at hand; allowlist it with a reason if it may travel`;
    } else if (prefix !== 'age-secret-key-' || decoded.bytes.length !== 32) continue;
    hits.push({ rule, kind: 'age-identity', secret: decoded.bytes, start: match.index, end: match.index + candidate.length, ...(note ? { note } : {}) });
  }
}

// ---- private keys in armor ------------------------------------------------------------------

function readSshString(blob: Buffer, offset: number): { value: Buffer; next: number } | undefined {
  if (offset + 4 > blob.length) return undefined;
  const length = blob.readUInt32BE(offset);
  if (offset + 4 + length > blob.length) return undefined;
  return { value: blob.subarray(offset + 4, offset + 4 + length), next: offset + 4 + length };
}

/** Parses the openssh-key-v1 container: returns the key type and whether it is passphrase-protected. */
export function parseOpenSshKey(blob: Buffer): { type: string; encrypted: boolean } | undefined {
  const magic = 'openssh-key-v1\0';
  if (blob.length < magic.length + 20 || blob.toString('latin1', 0, magic.length) !== magic) return undefined;
  const cipher = readSshString(blob, magic.length);
  if (!cipher) return undefined;
  const kdf = readSshString(blob, cipher.next);
  if (!kdf) return undefined;
  const kdfOptions = readSshString(blob, kdf.next);
  if (!kdfOptions || kdfOptions.next + 4 > blob.length) return undefined;
  const keyCount = blob.readUInt32BE(kdfOptions.next);
  if (keyCount < 1 || keyCount > 1024) return undefined;
  const publicBlob = readSshString(blob, kdfOptions.next + 4);
  const type = publicBlob ? readSshString(publicBlob.value, 0)?.value.toString('latin1') : undefined;
  return { type: type && /^[\w@.-]+$/.test(type) ? type : 'unknown', encrypted: cipher.value.toString('latin1') !== 'none' };
}

/** Unwraps armor body lines: JSON escapes, YAML indentation, armor headers, PGP CRC lines. */
function armorBody(raw: string): { base64: string; headers: string[] } {
  const lines = raw.replace(/\\+r/g, '').replace(/\\+n/g, '\n').split(/\r?\n/);
  const headers: string[] = [];
  let base64 = '';
  let continued = false;
  for (let line of lines) {
    // A header line that ends in a backslash goes on in the next (RFC 4716).
    if (continued) {
      continued = line.trimEnd().endsWith('\\');
      continue;
    }
    line = line.trim().replace(/^["'`]+|["',`]+$/g, '').trim();
    if (line === '') continue;
    if (/^[\w-]+:\s/.test(line)) {
      headers.push(line);
      continued = line.endsWith('\\');
      continue;
    }
    if (/^=[A-Za-z0-9+/]{4}$/.test(line)) continue; // PGP armor checksum
    const body = /^[A-Za-z0-9+/]+={0,2}/.exec(line);
    if (!body) break;
    base64 += body[0];
    if (body[0].length !== line.length) break;
  }
  return { base64, headers };
}

function isPgpSecretPacket(first: number): boolean {
  if ((first & 0x80) === 0) return false;
  const tag = first & 0x40 ? first & 0x3f : (first >> 2) & 0x0f;
  return tag === 5 || tag === 7;
}

/**
 * The block a `-----BEGIN LABEL-----` match opens: its body's base64 and headers, and where the block
 * ends (after its END line, or MAX_SECRET_SPAN on when that line is missing or too far).
 */
function armorBlock(text: string, match: RegExpExecArray): { base64: string; headers: string[]; end: number } {
  const bodyStart = match.index + match[0].length;
  const endMarker = match[0].startsWith('---- ') ? `---- END ${match[2]!} ----` : `-----END ${match[1]!}-----`;
  const endIndex = text.indexOf(endMarker, bodyStart);
  const bodyEnd = endIndex !== -1 && endIndex - bodyStart < MAX_SECRET_SPAN ? endIndex : Math.min(text.length, bodyStart + MAX_SECRET_SPAN);
  return { ...armorBody(text.slice(bodyStart, bodyEnd)), end: endIndex !== -1 ? endIndex + endMarker.length : bodyEnd };
}

function armoredKeyRule(text: string, hits: RawHit[]): void {
  openVpnStaticKeyRule(text, hits);
  // Any label that ends in PRIVATE KEY: the common ones are checked by their structure below, the
  // others (Nebula's `NEBULA X25519 PRIVATE KEY`, a TPM's `TSS2 PRIVATE KEY`, ...) by their size.
  // ssh.com's format (`---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----`, as PuTTYgen and Tectia write
  // it) has four dashes and blanks, and says ENCRYPTED whether or not a passphrase protects it.
  const pattern = /-----BEGIN ((?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?)-----|---- BEGIN (SSH2 ENCRYPTED PRIVATE KEY) ----/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const label = match[1] ?? match[2]!;
    const { base64, headers, end } = armorBlock(text, match);
    if (base64.length < 40) continue; // "-----BEGIN ... -----\n...\n" in docs: no key material
    const der = Buffer.from(base64, 'base64');
    const encryptedHeader = headers.some((line) => /ENCRYPTED/i.test(line));
    let rule: string;
    let note: string | undefined;
    if (label === 'OPENSSH PRIVATE KEY') {
      const parsed = parseOpenSshKey(der);
      if (!parsed) continue;
      rule = 'openssh-private-key';
      note = `${parsed.type}${parsed.encrypted ? ', passphrase-encrypted' : ''}`;
    } else if (label === 'PGP PRIVATE KEY BLOCK') {
      if (!isPgpSecretPacket(der[0]!)) continue;
      rule = 'pgp-private-key';
    } else if (label === 'SSH2 ENCRYPTED PRIVATE KEY') {
      if (der.length < 64 || der.readUInt32BE(0) !== 0x3f6ff9eb) continue;
      rule = 'ssh2-private-key';
    } else if (label === 'ENCRYPTED PRIVATE KEY') {
      if (der[0] !== 0x30) continue;
      rule = 'pkcs8-private-key';
      note = 'encrypted PKCS#8';
    } else if (label === 'PRIVATE KEY' || label === 'ANY PRIVATE KEY') {
      if (der[0] !== 0x30) continue;
      rule = 'pkcs8-private-key';
    } else if (label === 'RSA PRIVATE KEY' || label === 'EC PRIVATE KEY' || label === 'DSA PRIVATE KEY') {
      // PKCS#1 RSA / SEC1 EC / DSA; with Proc-Type: 4,ENCRYPTED the DER is ciphertext.
      if (!encryptedHeader && der[0] !== 0x30) continue;
      if (der.length < 32) continue;
      rule = 'pem-private-key';
      note = `${label.replace(' PRIVATE KEY', '')}${encryptedHeader ? ', encrypted PEM' : ''}`;
    } else {
      // Another kind's armor: 32 bytes (an X25519 or Ed25519 seed) or more of key material.
      if (der.length < 32 || label.endsWith('BLOCK')) continue;
      rule = 'pem-private-key';
      note = label.replace(/ PRIVATE KEY$/, '');
    }
    hits.push({ rule, kind: 'private-key', secret: der, start: match.index, end, ...(note ? { note } : {}) });
    pattern.lastIndex = Math.max(pattern.lastIndex, end);
  }
  armoredTokenRule(text, hits);
}

/**
 * A token kept in armor: a label that ends in TOKEN, above all cloudflared's `ARGO TUNNEL TOKEN` in
 * the `cert.pem` that `cloudflared tunnel login` writes (base64 JSON holding the account's API token),
 * with 32 bytes or more of content.
 */
function armoredTokenRule(text: string, hits: RawHit[]): void {
  const pattern = /-----BEGIN ((?:[A-Z0-9]+ ){0,4}TOKEN)-----/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const label = match[1]!;
    const { base64, end } = armorBlock(text, match);
    const content = Buffer.from(base64, 'base64');
    if (content.length < 32 || looksLikePlaceholder(content.toString('latin1'), 3)) continue;
    const note = label === 'ARGO TUNNEL TOKEN' ? "cloudflared's cert.pem: a Cloudflare account's API token" : label;
    hits.push({ rule: 'armored-token', kind: 'service-token', secret: content, start: match.index, end, note });
    pattern.lastIndex = Math.max(pattern.lastIndex, end);
  }
}

function puttyRule(text: string, hits: RawHit[]): void {
  const pattern = /PuTTY-User-Key-File-([23]): *([A-Za-z0-9@._-]+)/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const region = text.slice(match.index, match.index + MAX_SECRET_SPAN).replace(/\\+r/g, '').replace(/\\+n/g, '\n');
    const lines = region.split(/\r?\n/).map((line) => line.trim());
    const privateAt = lines.findIndex((line) => /^Private-Lines: *\d+$/.test(line));
    if (privateAt === -1) continue;
    const count = Number(lines[privateAt]!.split(':')[1]);
    const body = lines.slice(privateAt + 1, privateAt + 1 + count).join('');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) continue;
    const material = Buffer.from(body, 'base64');
    if (material.length < 16) continue;
    const encryption = /Encryption: *(\S+)/.exec(region)?.[1] ?? 'none';
    let endLine = 0;
    for (let index = 0; index <= privateAt + count && index < lines.length; index++) endLine += lines[index]!.length + 1;
    hits.push({
      rule: 'putty-private-key',
      kind: 'private-key',
      secret: material,
      start: match.index,
      end: match.index + Math.min(endLine, region.length),
      note: `PPK v${match[1]}, ${match[2]}${encryption === 'none' ? '' : ', passphrase-encrypted'}`,
    });
  }
}

// ---- tokens ---------------------------------------------------------------------------------

interface TokenRule {
  rule: string;
  kind: string;
  pattern: RegExp;
  /** The secret inside the match (default: the whole match). */
  group?: number;
  valid: (secret: string, match: RegExpExecArray) => boolean;
  /** The literal family (literals.ts) the pattern cannot match without. */
  family: number;
  note?: string;
}

function githubChecksumValid(token: string): boolean {
  const body = token.slice(4, 34);
  return base62(crc32(body)) === token.slice(34, 40);
}

const TOKEN_RULES: TokenRule[] = [
  {
    rule: 'github-token',
    family: L.GITHUB,
    kind: 'github-token',
    pattern: /(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9_])/g,
    valid: githubChecksumValid,
  },
  {
    rule: 'github-fine-grained-token',
    family: L.GITHUB,
    kind: 'github-token',
    pattern: /(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}(?![A-Za-z0-9_])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(11), 3.5),
  },
  {
    rule: 'huggingface-token',
    family: L.HUGGINGFACE,
    kind: 'huggingface-token',
    pattern: /(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{34}(?![A-Za-z0-9_])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(3), 3.5),
  },
  {
    rule: 'openai-key',
    family: L.SK,
    kind: 'openai-key',
    pattern: /(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|[A-Za-z0-9]{48})(?![A-Za-z0-9_-])/g,
    valid: (secret) => !looksLikePlaceholder(secret.replace(/^sk-(?:proj|svcacct|admin|None)-/, '').replace(/^sk-/, ''), 3.5),
  },
  {
    rule: 'tailscale-key',
    family: L.TAILSCALE,
    kind: 'tailscale-key',
    pattern: /(?<![A-Za-z0-9_-])tskey-(?:[a-z]+-)?[A-Za-z0-9]{6,}-[A-Za-z0-9]{16,}(?![A-Za-z0-9_-])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(secret.lastIndexOf('-') + 1), 3.3),
  },
  {
    rule: 'slack-token',
    family: L.SLACK,
    kind: 'slack-token',
    // Numeric workspace/user ids, then a random part of 20+ characters: `xoxp-0-stub-token` is a stub.
    pattern: /(?<![A-Za-z0-9_-])xox[abposr]-(?:\d+-)+(?:[A-Za-z0-9]+-)*[A-Za-z0-9]{20,}(?![A-Za-z0-9_-])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(5).replace(/^[\d-]+/, ''), 3),
  },
  {
    rule: 'aws-secret-access-key',
    family: L.AWS_SECRET,
    kind: 'aws-secret-key',
    pattern: /aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/gi,
    group: 1,
    valid: (secret) => !looksLikePlaceholder(secret, 3.8) && !/EXAMPLEKEY/.test(secret),
  },
  {
    rule: 'nix-access-token',
    family: L.NIX_ACCESS_TOKENS,
    kind: 'nix-access-token',
    pattern: /access-tokens\s*=\s*((?:[\w.-]+=[^\s"';]+\s*)+)/g,
    group: 1,
    valid: (secret) => secret.split(/\s+/).some((pair) => {
      const value = pair.slice(pair.indexOf('=') + 1);
      return value.length >= 8 && !looksLikePlaceholder(value, 3);
    }),
  },
];

function tokenRules(text: string, hits: RawHit[], families: number): void {
  for (const rule of TOKEN_RULES) {
    if ((families & rule.family) === 0) continue;
    rule.pattern.lastIndex = 0;
    for (let match = rule.pattern.exec(text); match; match = rule.pattern.exec(text)) {
      const secret = rule.group ? match[rule.group]! : match[0];
      if (!rule.valid(secret, match)) continue;
      const start = rule.group ? match.index + match[0].indexOf(secret) : match.index;
      hits.push({ rule: rule.rule, kind: rule.kind, secret, start, end: start + secret.length });
    }
  }
}

function awsKeyRule(text: string, hits: RawHit[]): void {
  const pattern = /(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z2-7]{16}(?![A-Za-z0-9])/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const keyId = match[0];
    if (/EXAMPLE/.test(keyId) || looksLikePlaceholder(keyId.slice(4), 2.5)) continue;
    const around = text.slice(Math.max(0, match.index - 512), match.index + keyId.length + 512);
    const secretPattern = /(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/g;
    let secret: string | undefined;
    for (let candidate = secretPattern.exec(around); candidate; candidate = secretPattern.exec(around)) {
      if (!looksLikePlaceholder(candidate[0], 3.8) && /[a-z]/.test(candidate[0]) && /[A-Z]/.test(candidate[0])) {
        secret = candidate[0];
        break;
      }
    }
    hits.push({
      rule: secret ? 'aws-access-key-pair' : 'aws-access-key-id',
      kind: 'aws-access-key',
      secret: secret ? `${keyId}:${secret}` : keyId,
      start: match.index,
      end: match.index + keyId.length,
      ...(secret ? { note: 'access key id with its secret access key nearby' } : { note: 'access key id' }),
    });
  }
}

const URL_PLACEHOLDER = /^(?:pass(?:word)?|passwd|secret|token|pat|x-oauth-basic|x-access-token|user|username|\*+|x+|\.+|-+|_+)$/i;

/**
 * Hosts reserved for documentation (RFC 2606, RFC 6761): example.com, example.net, example.org, the
 * .example TLD, and the .invalid TLD, which can never resolve. Credentials in a URL to one of them
 * are an example, whatever they look like.
 */
const DOCUMENTATION_HOST = /(?:^|\.)(?:example\.(?:com|net|org)|example|invalid)$/i;

// After `://`: user, `:`, password, `@`, host (the scheme before it is checked by hand).
const URL_USERINFO = /([^\s:@/"'`<>(){}[\]\\]{1,128}):([^\s@/"'`<>(){}[\]\\]{3,256})@([A-Za-z0-9._-]+)/y;
/** After `://`: a token as the whole userinfo (`https://ghp_…@github.com`, which git sends as the password). */
const URL_TOKEN_USER = /([A-Za-z0-9_.~-]{20,256})@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)/y;

/** Whether a URL scheme (`\b[a-z][a-z0-9+.-]{1,15}`, any case) ends right before `colon`. */
function schemeBefore(text: string, colon: number): boolean {
  // Walk back over scheme characters; the scheme may start at any letter in the last 16 of them
  // that has a word boundary before it.
  for (let start = colon - 1; start >= 0 && start >= colon - 16; start--) {
    const code = text.charCodeAt(start);
    const letter = (code | 0x20) >= 0x61 && (code | 0x20) <= 0x7a;
    if (!letter && !(code >= 0x30 && code <= 0x39) && code !== 0x2b && code !== 0x2e && code !== 0x2d) return false;
    if (letter && colon - start >= 2) {
      const before = start === 0 ? 0x20 : text.charCodeAt(start - 1);
      const word = (before >= 0x30 && before <= 0x39) || ((before | 0x20) >= 0x61 && (before | 0x20) <= 0x7a) || before === 0x5f;
      if (!word) return true;
    }
  }
  return false;
}

function urlCredentialRule(text: string, hits: RawHit[]): void {
  for (let colon = text.indexOf('://'); colon !== -1; colon = text.indexOf('://', colon + 3)) {
    URL_USERINFO.lastIndex = colon + 3;
    const match = URL_USERINFO.exec(text);
    if (!match) {
      urlTokenUser(text, colon, hits);
      continue;
    }
    if (!schemeBefore(text, colon)) continue;
    const password = match[2]!;
    if (DOCUMENTATION_HOST.test(match[3]!.replace(/\.$/, ''))) continue;
    if (/^[$%{<@]/.test(password) || isTemplateValue(password) || URL_PLACEHOLDER.test(password) || /\$\{|\{\{|<[^>]*>/.test(password)) continue;
    if (/^(?:example|sample|dummy|placeholder|changeme|redacted)/i.test(password) || /x{4,}|X{4,}/.test(password)) continue;
    const start = match.index + match[1]!.length + 1;
    hits.push({ rule: 'url-credentials', kind: 'url-credentials', secret: password, start, end: start + password.length });
  }
}

/** A token-shaped user without a password (see URL_TOKEN_USER); a Sentry DSN's public key is not one. */
function urlTokenUser(text: string, colon: number, hits: RawHit[]): void {
  URL_TOKEN_USER.lastIndex = colon + 3;
  const match = URL_TOKEN_USER.exec(text);
  if (!match || !schemeBefore(text, colon)) return;
  const [, user, host] = match as unknown as [string, string, string];
  if (DOCUMENTATION_HOST.test(host) || /(?:^|\.)(?:sentry\.io|ingest\.[\w.-]+)$|^sentry\./i.test(host) || !looksLikeToken(user)) return;
  const start = match.index;
  hits.push({ rule: 'url-credentials', kind: 'url-credentials', secret: user, start, end: start + user.length, note: "a token as the URL's user" });
}

const CACHE_KEY_BODY = /[A-Za-z0-9][A-Za-z0-9._-]{0,127}:([A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])/y;

function isAlphanumeric(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || ((code | 0x20) >= 0x61 && (code | 0x20) <= 0x7a);
}

/** [A-Za-z0-9._-]: a cache key's name, a Nix option path. */
function isNameChar(code: number): boolean {
  return isAlphanumeric(code) || code === 0x5f || code === 0x2e || code === 0x2d;
}

/**
 * A Nix binary-cache secret key: `name:` + base64 of 64 bytes whose second half is the public key of
 * the first. Anchored on each `:` with `==` 87 characters on (what the literal sweep saw); the name's
 * start is the leftmost the pattern `(?<![A-Za-z0-9+/=])[A-Za-z0-9][A-Za-z0-9._-]{0,127}:` allows.
 */
function nixCacheKeyRule(text: string, hits: RawHit[]): void {
  for (let colon = text.indexOf(':'); colon !== -1; colon = text.indexOf(':', colon + 1)) {
    if (text.charCodeAt(colon + 87) !== 0x3d || text.charCodeAt(colon + 88) !== 0x3d) continue;
    let run = colon;
    while (run > 0 && colon - run < 128 && isNameChar(text.charCodeAt(run - 1))) run--;
    let start = run;
    for (; start < colon; start++) {
      const before = start === 0 ? 0x20 : text.charCodeAt(start - 1);
      if (isAlphanumeric(text.charCodeAt(start)) && !isAlphanumeric(before) && before !== 0x2b && before !== 0x2f && before !== 0x3d) break;
    }
    if (start === colon) continue;
    CACHE_KEY_BODY.lastIndex = start;
    const match = CACHE_KEY_BODY.exec(text);
    if (!match) continue;
    const bytes = Buffer.from(match[1]!, 'base64');
    if (bytes.length !== 64 || !ed25519PairMatches(bytes.subarray(0, 32), bytes.subarray(32))) continue;
    hits.push({ rule: 'nix-cache-secret-key', kind: 'nix-cache-secret-key', secret: bytes, start: match.index, end: match.index + match[0].length });
  }
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function ed25519PairMatches(seed: Buffer, publicKey: Buffer): boolean {
  try {
    const { createPrivateKey, createPublicKey } = nodeCrypto();
    const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
    const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
    return spki.subarray(spki.length - 32).equals(publicKey);
  } catch {
    return false;
  }
}

/** WireGuard private keys: 32 bytes of base64 next to a private-key option or `[Interface]` PrivateKey. */
function wireguardRule(text: string, hits: RawHit[]): void {
  // After `=` or `:`, or fed to `wg set` as a file (`private-key <(echo "…")`, as NixOS's wireguard
  // module writes `privateKey` into its service script in the store).
  const pattern =
    /(?:private[_-]?key(?:File)?|PrivateKey)["']?(?:\s*(?:=|:)\s*(?:pkgs\.writeText\s+"[^"]*"\s+)?|\s+<\(\s*(?:echo|printf(?:\s+["']?%s(?:\\n)?["']?)?)\s+)["']?([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)(?![A-Za-z0-9+/=])/gi;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const key = match[1]!;
    if (looksLikePlaceholder(key, 3.5)) continue;
    const start = match.index + match[0].lastIndexOf(key);
    hits.push({ rule: 'wireguard-private-key', kind: 'wireguard-private-key', secret: Buffer.from(key, 'base64'), start, end: start + key.length });
  }
  const preshared = /preshared-key\s+<\(\s*(?:echo|printf(?:\s+["']?%s(?:\\n)?["']?)?)\s+["']?([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)(?![A-Za-z0-9+/=])/g;
  for (let match = preshared.exec(text); match; match = preshared.exec(text)) {
    const key = match[1]!;
    if (looksLikePlaceholder(key, 3.5)) continue;
    const start = match.index + match[0].lastIndexOf(key);
    hits.push({ rule: 'wireguard-preshared-key', kind: 'wireguard-preshared-key', secret: key, start, end: start + key.length, note: 'fed to wg set' });
  }
  // The same option names with a key in hex: Yggdrasil's `PrivateKey` (a 64-byte Ed25519 key, in
  // `yggdrasil.conf` or `services.yggdrasil.settings`), and 32-byte keys of other daemons.
  const hex = /(?:private[_-]?key|PrivateKey)["']?\s*(?:=|:)\s*["']?([0-9a-fA-F]{128}|[0-9a-fA-F]{64})(?![0-9A-Za-z])/gi;
  for (let match = hex.exec(text); match; match = hex.exec(text)) {
    const key = match[1]!;
    if (looksLikePlaceholder(key, 3)) continue;
    const start = match.index + match[0].lastIndexOf(key);
    hits.push({ rule: 'hex-private-key', kind: 'private-key', secret: Buffer.from(key, 'hex'), start, end: start + key.length, note: `a private-key option with ${key.length / 2} bytes in hex` });
  }
}

/**
 * OpenVPN static keys (`ta.key` for tls-auth/tls-crypt, `--secret` keys; inline in an `.ovpn` as
 * `<tls-auth>` too): 2048 bits of shared secret in hex, or a tls-crypt-v2 client key (base64).
 */
function openVpnStaticKeyRule(text: string, hits: RawHit[]): void {
  const pattern = /-----BEGIN OpenVPN (Static key V1|tls-crypt-v2 (?:client|server) key)-----/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const endMarker = `-----END OpenVPN ${match[1]}-----`;
    const bodyStart = match.index + match[0].length;
    const endIndex = text.indexOf(endMarker, bodyStart);
    if (endIndex === -1 || endIndex - bodyStart > MAX_SECRET_SPAN) continue;
    const body = text.slice(bodyStart, endIndex).replace(/\s+/g, '');
    const secret = match[1] === 'Static key V1' ? (/^[0-9a-fA-F]{256,}$/.test(body) ? Buffer.from(body, 'hex') : undefined) : /^[A-Za-z0-9+/=]{100,}$/.test(body) ? Buffer.from(body, 'base64') : undefined;
    if (!secret || looksLikePlaceholder(body, 3)) continue;
    const end = endIndex + endMarker.length;
    hits.push({ rule: 'openvpn-static-key', kind: 'private-key', secret, start: match.index, end, note: `OpenVPN ${match[1]}` });
    pattern.lastIndex = end;
  }
}

/** Bytes of a JWK's private scalar by curve (RFC 7518, RFC 8037); RSA's `d` is as long as its modulus. */
const JWK_CURVE_BYTES: Record<string, number> = { 'P-256': 32, 'P-384': 48, 'P-521': 66, secp256k1: 32, Ed25519: 32, X25519: 32, Ed448: 57, X448: 56 };

/**
 * JSON Web Keys that carry their private part (RFC 7517): `"d"` of an EC, OKP (Ed25519, X25519) or
 * RSA key, or `"k"` of a symmetric (`oct`) key, in the key's own object (a JWKS `keys` array, an
 * OIDC provider's or an ACME client's key file). A public JWK (no `d`) is not a finding.
 */
function jwkRule(text: string, hits: RawHit[]): void {
  for (let at = text.indexOf('"kty"'); at !== -1; at = text.indexOf('"kty"', at + 5)) {
    // The key's object: a JWK's members are strings and arrays of strings, so no brace inside.
    const open = text.lastIndexOf('{', at);
    const close = text.indexOf('}', at);
    if (open === -1 || close === -1 || close - open > 16384) continue;
    const object = text.slice(open, close + 1);
    const kty = /"kty"\s*:\s*"(EC|OKP|RSA|oct)"/.exec(object)?.[1];
    if (!kty) continue;
    const member = new RegExp(`"${kty === 'oct' ? 'k' : 'd'}"\\s*:\\s*"([A-Za-z0-9_-]{16,})"`).exec(object);
    if (!member) continue;
    const value = member[1]!;
    const bytes = Buffer.from(value, 'base64url');
    const curve = /"crv"\s*:\s*"([^"]+)"/.exec(object)?.[1];
    const expected = curve === undefined ? undefined : JWK_CURVE_BYTES[curve];
    if (kty === 'RSA' ? bytes.length < 64 : kty === 'oct' ? bytes.length < 16 : expected !== undefined && bytes.length !== expected) continue;
    if (looksLikePlaceholder(value, 3.5)) continue;
    const start = open + member.index + member[0].lastIndexOf(value);
    const note = kty === 'oct' ? 'JSON Web Key (oct): a symmetric key' : `JSON Web Key (${kty}${curve ? ` ${curve}` : ''}) with its private part`;
    hits.push({ rule: 'jwk-private-key', kind: 'private-key', secret: bytes, start, end: start + value.length, note });
  }
}

/**
 * GnuPG agent keys (`private-keys-v1.d/*.key`, where GnuPG 2.1+ keeps every secret key) in their
 * text forms: the extended format (`Key: (private-key (ecc ... (d #...#)))`) and the advanced
 * S-expression. Passphrase-protected ones (`protected-private-key`) are private keys too; a
 * `shadowed-private-key` only names a smartcard and is not.
 */
function gpgAgentKeyRule(text: string, hits: RawHit[]): void {
  const pattern = /\((protected-)?private-key\s*\(\s*(rsa|dsa|elg|ecc|ecdsa|eddsa)\b/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const body = text.slice(match.index, match.index + MAX_SECRET_SPAN);
    // The secret part: `(d #hex#)` (or `(x`, for Elgamal/DSA) in the clear, `(protected ...` encrypted.
    const secret = match[1] ? /\(\s*protected\s+openpgp-[\w-]+/.exec(body) : /\(\s*[dx]\s+#[0-9A-Fa-f\s]{32,}#/.exec(body);
    if (!secret) continue;
    const end = match.index + secret.index + secret[0].length;
    hits.push({
      rule: 'gpg-agent-private-key',
      kind: 'private-key',
      secret: body.slice(0, secret.index + secret[0].length),
      start: match.index,
      end,
      note: `GnuPG agent key (${match[2]})${match[1] ? ', passphrase-protected' : ''}`,
    });
    pattern.lastIndex = end;
  }
}

const NIX_PASSWORD = /((?:[\w-]+\.)*([A-Za-z_]*[Pp]assword))\s*=\s*"([^"\\$]*)"\s*;/y;

/**
 * A password key given a literal on a line of its own in the config formats beside Nix: INI and TOML
 * (`admin_password = s3cr3t`), YAML (`db_password: s3cr3t`, Home Assistant's `secrets.yaml`), JSON
 * (`"password": "s3cr3t",`), PHP arrays (`'dbpassword' => 's3cr3t',`, Nextcloud's config.php) and
 * mutt's `set imap_pass = "s3cr3t"`.
 */
const CONFIG_PASSWORD =
  /^[ \t-]*(?:set[ \t]+)?["']?((?:[A-Za-z_][\w.-]*?)?(?:[Pp]assword|PASSWORD|[Pp]assphrase|PASSPHRASE|PASSWD|[_-](?:pass(?:wd)?|PASS(?:WD)?)))["']?[ \t]*(?::|=>|=)[ \t]*(?:"([^"\n]{8,256})"|'([^'\n]{8,256})'|([^\s"'#;,]{8,256}))[ \t]*[,;]?[ \t]*(?:#.*)?$/gm;

/** What every CONFIG_PASSWORD match holds (its lines are also where sqlPasswordRule looks for `PASSWORD`). */
const CONFIG_PASSWORD_NEEDLES = ['assword', 'ASSWORD', 'assphrase', 'ASSPHRASE', 'ASSWD', '_pass', '-pass', '_PASS', '-PASS'];
const CONFIG_PASSWORD_NOT = new Set(['encrypted', 'file', 'path', 'command', 'cmd', 'length', 'prompt', 'policy', 'min', 'max', 'required', 'enable', 'enabled', 'field', 'type', 'reset', 'url', 'salt', 'env', 'var', 'regex', 'pattern', 'label']);

/**
 * A password key in JSON anywhere on a line: minified JSON, such as the `users-groups.json` NixOS
 * writes into the store with `users.users.<name>.password` and `initialPassword` in it.
 */
const CONFIG_PASSWORD_JSON = /"((?:[A-Za-z_][\w.-]*?)?(?:[Pp]assword|PASSWORD|[Pp]assphrase|PASSPHRASE|[_-](?:pass(?:wd)?|PASS(?:WD)?)))"[ \t]*:[ \t]*"((?:[^"\\\n]|\\.){8,256})"/g;

/** A password element in XML (`<Password>s3cr3t</Password>`, `<db_password>…</db_password>`), on one line. */
const CONFIG_PASSWORD_XML = /<((?:[A-Za-z_][\w.-]*?)?(?:[Pp]assword|PASSWORD))>([^<>\n]{8,256})<\/\1>/g;

/** Passwords in INI, TOML, YAML, JSON, PHP and XML configuration (see CONFIG_PASSWORD); a Nix option is nixPasswordRule's. */
function configPasswordRule(text: string, hits: RawHit[], lines: readonly number[]): void {
  for (const match of matchesOnLines(text, lines, CONFIG_PASSWORD)) {
    const value = match[2] ?? match[3] ?? match[4]!;
    // Unquoted, a value of letters alone is a name (`mkRandomSecret`), and one before `;` a Nix expression.
    if (match[4] !== undefined && (/^[A-Za-z_-]+$/.test(value) || /;[ \t]*(?:#.*)?$/.test(match[0]))) continue;
    configPassword(text, match, match[1]!, value, hits);
  }
  // JSON keys within a line (a key at the line's start was read above: its value is not taken twice).
  if (text.includes('":')) for (const match of matchesOnLines(text, lines, CONFIG_PASSWORD_JSON)) configPassword(text, match, match[1]!, match[2]!, hits);
  // An element's lines hold `assword` too: the same lines, read when an element can be there.
  if (!text.includes('assword>') && !text.includes('ASSWORD>')) return;
  for (const match of matchesOnLines(text, lines, CONFIG_PASSWORD_XML)) configPassword(text, match, match[1]!, match[2]!, hits);
}

/**
 * A password kept as it is under the `{PLAIN}` or `{CLEARTEXT}` scheme: the htpasswd file NixOS
 * writes into the store for nginx's `basicAuth` (`alice:{PLAIN}…`), a Dovecot passwd-file
 * (`user:{PLAIN}…:uid:gid…`).
 */
const PLAIN_SCHEME = /^[ \t]*([^:\s#][^:\s]*):\{(?:PLAIN|CLEARTEXT)\}([^:\r\n]+)/gm;

function plainSchemeRule(text: string, hits: RawHit[]): void {
  for (const match of text.matchAll(PLAIN_SCHEME)) {
    const value = match[2]!;
    if (isTemplateValue(value)) continue;
    const start = match.index + match[0].length - value.length;
    hits.push({ rule: 'plain-scheme-password', kind: 'plaintext-password', secret: value, start, end: start + value.length, note: `${match[1]}'s password under the {PLAIN} scheme (an htpasswd or passwd-file)` });
  }
}

/**
 * A `password=` option inside a line: mount options (`//nas/share /mnt cifs
 * username=me,password=…` in fstab, `Options=` of a .mount unit, `fileSystems.<name>.options = [
 * "password=…" ]`), connection strings (`;password=…`) and query strings (`&password=…`).
 */
const OPTION_PASSWORD = /password=([^,\s"';&)]{6,256})/g;
/** What comes before an option's `password=`: a separator of options or arguments, a quote; not a line's start (config-password's). */
const OPTION_BEFORE = new Set([...',; \t"\'(&?']);

function optionPasswordRule(text: string, hits: RawHit[], lines: readonly number[]): void {
  for (const match of matchesOnLines(text, lines, OPTION_PASSWORD)) {
    if (!OPTION_BEFORE.has(text[match.index - 1] ?? '')) continue;
    const value = match[1]!;
    if (/^[$%{<@[(*]/.test(value) || value.startsWith('ext:') || isExampleValue(value) || !looksLikeSecretValue(value, 'plaintext-password')) continue;
    // Code: an expression or a reference (`password=os.environ["X"]`, `password=args.db`) is not a password.
    if (/[[\](){}]/.test(value) || /^[A-Za-z_]\w*(?:\.\w+)+$/.test(value)) continue;
    // After a blank or `(` (a keyword argument, `-o password=…`) a password mixes letters and digits, as a variable's name rarely does.
    if (/[\s(]/.test(text[match.index - 1] ?? ' ') && !(/[0-9]/.test(value) && /[A-Za-z]/.test(value))) continue;
    const start = match.index + 'password='.length;
    if (overlapsAny(hits, start, start + value.length)) continue;
    hits.push({ rule: 'option-password', kind: 'plaintext-password', secret: value, start, end: start + value.length, note: 'a password= option (mount options, a connection string)' });
  }
}

function configPassword(text: string, match: RegExpExecArray, name: string, value: string, hits: RawHit[]): void {
  // OpenTofu's encrypted state names its key provider in `meta` (`key_provider.pbkdf2.<name>`): the
  // value is the key derivation's salt and parameters, not the passphrase.
  if (name.startsWith('key_provider.')) return;
  // The words of the name (snake, kebab, dotted or camel case): a hash, a file or a rule about passwords is not one.
  if (nameWords(name).some((word) => CONFIG_PASSWORD_NOT.has(word) || word.includes('hash'))) return;
  if (isTemplateValue(value) || isDescriptivePlaceholder(value) || looksLikePlaceholder(value, 2.5)) return;
  // References and expressions (`config.sops.secrets.x.path`, `process.env.X`, `getpass()`), paths and crypt hashes are not passwords.
  if (/[()[\]{}<>`]|\s/.test(value) || (/^[a-z_][\w-]*(?:\.[\w-]+){1,}$/i.test(value) && !isDottedVendorToken(value)) || isPathOrUrl(value)) return;
  // wpa_supplicant's `password=ext:NAME` names a password kept elsewhere.
  if (isCryptHash(value, text, match.index) || /^(?:true|false|null|none|yes|no)$/i.test(value) || value.startsWith('ext:')) return;
  const start = match.index + match[0].lastIndexOf(value);
  const end = start + value.length;
  if (overlapsAny(hits, start, end)) return;
  hits.push({ rule: 'config-password', kind: 'plaintext-password', secret: value, start, end, note: `key ${name}` });
}

/**
 * Plaintext passwords in Nix options: `password = "...";`, `initialPassword = "...";` and other
 * `*Password = "...";` string literals. `hashedPassword`/`initialHashedPassword` (a crypt(3) hash meant
 * for the store) and `*PasswordFile` paths are not findings; neither are interpolations. Anchored on
 * each `assword` followed by `=`: the option path starts where its run of [\w.-] starts (the
 * pattern's old lookbehind allowed no other start), so one sticky match there.
 */
function nixPasswordRule(text: string, hits: RawHit[]): void {
  let scannedTo = 0;
  for (let at = text.indexOf('assword'); at !== -1; at = text.indexOf('assword', at + 7)) {
    let after = at + 7;
    while (L.isRegexSpace(text.charCodeAt(after))) after++;
    if (text.charCodeAt(after) !== 0x3d) continue;
    let pathStart = at - 1;
    while (pathStart > 0 && at - pathStart < 4096 && isNameChar(text.charCodeAt(pathStart - 1))) pathStart--;
    // After a quoted attribute name (`profiles.vpn."vpn-secrets".password`) the path goes on from its dot.
    if (text.charCodeAt(pathStart) === 0x2e) pathStart++;
    if (pathStart < scannedTo) continue;
    NIX_PASSWORD.lastIndex = pathStart;
    const match = NIX_PASSWORD.exec(text);
    if (!match) continue;
    scannedTo = match.index + match[0].length;
    const name = match[2]!;
    const value = match[3]!;
    if (/hash|file|path|command|length|prompt|policy/i.test(name) || value === '' || isTemplateValue(value) || isDescriptivePlaceholder(value)) continue;
    if (/^(?:x+|\*+|\.+|…|changeme|password|example|placeholder|secret|hunter2)$/i.test(value)) continue;
    // An empty string of the language the setting is written into (`password = "''"`: none, for Jupyter).
    if (/^(?:''|""|\\"\\")$/.test(value)) continue;
    if (isCryptHash(value, text, match.index)) continue;
    const start = match.index + match[0].lastIndexOf(`"${value}"`) + 1;
    hits.push({ rule: 'nix-plaintext-password', kind: 'plaintext-password', secret: value, start, end: start + value.length, note: `option ${name}` });
  }
}

/**
 * Passwords set in SQL, as `services.postgresql.initialScript` and `services.mysql.initialScript`
 * write them into the store: `CREATE ROLE app WITH LOGIN PASSWORD '…'`, `ALTER USER x PASSWORD '…'`
 * (PostgreSQL; not its stored `SCRAM-SHA-256$…` or `md5…` forms) and `IDENTIFIED BY '…'` (MySQL,
 * MariaDB) after `CREATE USER`/`ALTER USER`/`GRANT` on the same line.
 */
const SQL_PASSWORD = /\b(?:(?:CREATE|ALTER)\s+(?:ROLE|USER)|GRANT)\b[^;\n]*?\b(?:PASSWORD\s*(?:=\s*)?|IDENTIFIED\s+BY\s+)'((?:[^'\\\n]|'')+)'/gi;

/** What may follow `\s` inside a line: whitespace but the newline. */
function isLineSpace(code: number): boolean {
  return code !== 0x0a && L.isRegexSpace(code);
}

/** Whether a quoted value can follow the needle at `at` as SQL_PASSWORD needs: `PASSWORD '`, `PASSWORD = '`, `IDENTIFIED BY '`. */
function sqlValueFollows(text: string, at: number, needle: string): boolean {
  let cursor = at + needle.length;
  while (isLineSpace(text.charCodeAt(cursor))) cursor++;
  if (needle.charCodeAt(0) === 0x44 || needle.charCodeAt(0) === 0x64) {
    // IDENTIFIED BY
    if (cursor === at + needle.length || (text.charCodeAt(cursor) | 0x20) !== 0x62 || (text.charCodeAt(cursor + 1) | 0x20) !== 0x79) return false;
    cursor += 2;
    const before = cursor;
    while (isLineSpace(text.charCodeAt(cursor))) cursor++;
    if (cursor === before) return false;
  } else if (text.charCodeAt(cursor) === 0x3d) {
    cursor++;
    while (isLineSpace(text.charCodeAt(cursor))) cursor++;
  }
  return text.charCodeAt(cursor) === 0x27;
}

const SQL_NEEDLES = ['ASSWORD', 'assword', 'DENTIFIED', 'dentified'];
/** The sql-password search, for the test that `sqlValueFollows` keeps every line the pattern matches on. */
export const SQL_PASSWORD_SEARCH = { patterns: [SQL_PASSWORD], needles: SQL_NEEDLES, candidate: sqlValueFollows };

/** `passwordLines`: the lines holding `assword`/`ASSWORD` (configPasswordRule's too); those with `IDENTIFIED BY` are added here. */
function sqlPasswordRule(text: string, hits: RawHit[], passwordLines: readonly number[]): void {
  let lines = passwordLines.filter((start) => {
    const end = text.indexOf('\n', start);
    const line = text.slice(start, end === -1 ? text.length : end);
    for (const needle of ['ASSWORD', 'assword']) {
      for (let at = line.indexOf(needle); at !== -1; at = line.indexOf(needle, at + 1)) if (sqlValueFollows(line, at, needle)) return true;
    }
    return false;
  });
  if (text.includes('DENTIFIED') || text.includes('dentified')) {
    lines = [...new Set([...lines, ...needleLines(text, ['DENTIFIED', 'dentified'], sqlValueFollows)])].sort((a, b) => a - b);
  }
  for (const match of matchesOnLines(text, lines, SQL_PASSWORD)) {
    const value = match[1]!.replace(/''/g, "'");
    // The user's own name as its password (`ROLE "matrix-synapse" … PASSWORD 'synapse'`, the NixOS manual's example) is a placeholder.
    const role = /\b(?:ROLE|USER)\s+\\?["'`]?([\w.-]+)/i.exec(match[0])?.[1];
    if (role !== undefined && role.toLowerCase().includes(value.toLowerCase())) continue;
    if (value.length < 6 || isTemplateValue(value) || isDescriptivePlaceholder(value) || looksLikePlaceholder(value, 2.5) || isCryptHash(value, text, match.index)) continue;
    const start = match.index + match[0].length - match[1]!.length - 1;
    const end = start + match[1]!.length;
    if (overlapsAny(hits, start, end)) continue;
    hits.push({ rule: 'sql-password', kind: 'plaintext-password', secret: value, start, end, note: 'a password set in SQL' });
  }
}

/**
 * Nix options named for a password by a short word, in `.nix` files only (the literal sweep has no
 * cheap anchor for them): `requirePass` (Redis), `olcRootPW` (OpenLDAP), `rootpw`, `adminpass`,
 * `passwd`, given a `"…"` literal on the line of the name. LDAP hashes (`{SSHA}…`) and crypt hashes
 * are not findings. `nameEnd` is where the option's name ends, `equals` its `=`.
 */
function nixPassOption(text: string, hits: RawHit[], nameEnd: number, equals: number): void {
  // The name's last segment ([A-Za-z_][\w-]*) and the dotted path before it.
  let segment = nameEnd;
  while (segment > 0 && isNameChar(text.charCodeAt(segment - 1)) && text.charCodeAt(segment - 1) !== 0x2e) segment--;
  while (segment < nameEnd && !/[A-Za-z_]/.test(text[segment]!)) segment++;
  if (segment === nameEnd) return;
  let path = segment;
  while (path > 1 && text.charCodeAt(path - 1) === 0x2e && isNameChar(text.charCodeAt(path - 2)) && text.charCodeAt(path - 2) !== 0x2e) {
    path--;
    while (path > 0 && isNameChar(text.charCodeAt(path - 1)) && text.charCodeAt(path - 1) !== 0x2e) path--;
  }
  const name = text.slice(segment, nameEnd);
  const words = nameWords(name);
  if (!/^(?:pass|passwd|pw|(?:admin|root|user|db|rpc|auth|api|mysql|pg|redis|require)(?:pass|pw))$/.test(words.at(-1)!)) return;
  // nginx's `proxyPass`, `grpcPass`, `fastcgiPass`: where requests go, not a password.
  if (words.length > 1 && /^(?:proxy|grpc|fastcgi|uwsgi|scgi|memcached|by|pre|post|first|second|last|multi|single|render)$/.test(words.at(-2)!)) return;
  // `pw` alone and anything under `shellAliases` is a command's name (`pw = "playwright";`).
  if ((words.length === 1 && words[0] === 'pw') || /alias|abbr/i.test(text.slice(path, nameEnd))) return;
  // The value: a `"…"` literal on the same line, without escapes or interpolation, then `;`.
  let open = equals + 1;
  while (isLineSpace(text.charCodeAt(open))) open++;
  if (text.charCodeAt(open) !== 0x22) return;
  const close = text.indexOf('"', open + 1);
  if (close === -1) return;
  const value = text.slice(open + 1, close);
  if (/[\n\\$]/.test(value)) return;
  let after = close + 1;
  while (isLineSpace(text.charCodeAt(after))) after++;
  if (text.charCodeAt(after) !== 0x3b || /^unix:/.test(value)) return;
  if (value.length < 6 || isTemplateValue(value) || isDescriptivePlaceholder(value) || looksLikePlaceholder(value, 2.5) || isCryptHash(value, text, path) || isPathOrUrl(value)) return;
  const start = open + 1;
  const end = start + value.length;
  if (overlapsAny(hits, start, end)) return;
  hits.push({ rule: 'nix-plaintext-password', kind: 'plaintext-password', secret: value, start, end, note: `option ${name}` });
}

/**
 * The Nix rules without a literal anchor, for `.nix` files, in one pass over the file's `=` (not
 * `==`, `=>`, `!=`, `<=`, `>=`): an option named by a short password word before it (nixPassOption),
 * and, when a name word's literal occurs (`families`), a `text` attribute of a file named like a
 * secret (nixTextAttribute); then `writeText`/`toFile` (nixStoreWriterRule).
 */
function nixSourceRules(text: string, hits: RawHit[], families: number): void {
  const storeNames = (families & (L.PASSWORD | L.CONFIG_TOKEN | L.PSK)) !== 0;
  for (let equals = text.indexOf('='); equals !== -1; equals = text.indexOf('=', equals + 1)) {
    const next = text.charCodeAt(equals + 1);
    if (next === 0x3d || next === 0x3e) {
      equals++;
      continue;
    }
    const previous = text.charCodeAt(equals - 1);
    if (previous === 0x21 || previous === 0x3c || previous === 0x3e) continue;
    let end = equals;
    while (end > 0 && isLineSpace(text.charCodeAt(end - 1))) end--;
    const last = text.charCodeAt(end - 1) | 0x20;
    const second = text.charCodeAt(end - 2) | 0x20;
    // …ss (pass), …pw, …wd (passwd)
    if ((last === 0x73 && second === 0x73) || (last === 0x77 && second === 0x70) || (last === 0x64 && second === 0x77)) {
      nixPassOption(text, hits, end, equals);
      continue;
    }
    if (!storeNames) continue;
    // `text` may stand on the line before its `=`.
    while (end > 0 && L.isRegexSpace(text.charCodeAt(end - 1))) end--;
    if (text.charCodeAt(end - 1) === 0x74 && text.startsWith('text', end - 4)) nixTextAttribute(text, hits, end - 4, equals);
  }
  if (storeNames) nixStoreWriterRule(text, hits);
  if (text.includes('basicAuth')) nixBasicAuthRule(text, hits);
}

/**
 * nginx's `basicAuth = { alice = "…"; }` (services.nginx.virtualHosts.<name>.basicAuth and its
 * locations): user names to plaintext passwords, which NixOS's manual warns end up in the store.
 * `basicAuthFile` is a path.
 */
function nixBasicAuthRule(text: string, hits: RawHit[]): void {
  const pattern = /\bbasicAuth\s*=\s*\{([^{}]*)\}/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const bodyStart = match.index + match[0].indexOf('{') + 1;
    const entry = /(?:"([^"\n]+)"|([A-Za-z_][\w'-]*))\s*=\s*"([^"\\$\n]*)"\s*;/g;
    for (let user = entry.exec(match[1]!); user; user = entry.exec(match[1]!)) {
      const value = user[3]!;
      if (value === '' || isTemplateValue(value) || isDescriptivePlaceholder(value) || looksLikePlaceholder(value, 1.5)) continue;
      const start = bodyStart + user.index + user[0].lastIndexOf(`"${value}"`) + 1;
      if (overlapsAny(hits, start, start + value.length)) continue;
      hits.push({ rule: 'nix-plaintext-password', kind: 'plaintext-password', secret: value, start, end: start + value.length, note: `nginx basicAuth password of ${user[1] ?? user[2]}` });
    }
  }
}

/** Whether the Nix rules without a literal anchor find anything in a `.nix` file's text (see quiet-text.ts). */
export function nixSourceRulesHit(text: string, families: number): boolean {
  const hits: RawHit[] = [];
  nixSourceRules(text, hits, families);
  return hits.length > 0;
}

const BASE64 = new Uint8Array(128);
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') BASE64[ch.charCodeAt(0)] = 1;

function isBase64(text: string, index: number): boolean {
  const code = text.charCodeAt(index);
  return code < 128 && BASE64[code] === 1;
}

/**
 * The first maximal run of at least `min` base64 characters at or after `from` (where a run may
 * start: `from` is 0 or follows a character that is not base64). A skip search: the character
 * `min - 1` past the earliest place a run could start is read first; if it is not base64 no run can
 * cover it, and the search jumps `min` ahead; if it is, the window before it is read backwards, and
 * the first character that is not base64 moves the earliest start past itself. Ordinary text is
 * ruled out reading a few characters per window, not every one.
 */
export function base64Run(text: string, from: number, min: number): { start: number; end: number } | undefined {
  let start = from; // earliest start of a run still possible
  for (let probe = start + min - 1; probe < text.length; probe = start + min - 1) {
    let index = probe;
    while (index >= start && isBase64(text, index)) index--;
    if (index >= start) {
      start = index + 1;
      continue;
    }
    let end = probe + 1;
    while (end < text.length && isBase64(text, end)) end++;
    return { start, end };
  }
  return undefined;
}

/** True when `text` has a run of at least `min` base64 characters (what the rule's pattern needs). */
export function hasBase64Run(text: string, min = 80): boolean {
  return base64Run(text, 0, min) !== undefined;
}

/** Base64 runs (a Kubernetes Secret's data) that decode to text are decoded and rescanned. */
function base64WrappedRule(text: string, hits: RawHit[], context: TextScanContext): void {
  if ((context.depth ?? 0) >= 2) return;
  // Each maximal run of 80+ base64 characters and up to two `=` (the pattern
  // /(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{80,}={0,2}/g), found by the skip search.
  let end = 0;
  for (let run = base64Run(text, 0, 80); run; run = base64Run(text, end, 80)) {
    end = run.end;
    if (text.charCodeAt(end) === 0x3d) end++;
    if (text.charCodeAt(end) === 0x3d) end++;
    // A run another rule already reported whole (a token that is base64 of JSON) is not reported again for what is inside.
    const runStart = run.start;
    const runEnd = end;
    if (hits.some((hit) => hit.start <= runStart && hit.end >= runEnd)) continue;
    const decoded = Buffer.from(text.slice(run.start, end), 'base64');
    // A git-crypt key kept as base64 (`base64 < key`, a CI variable such as GIT_CRYPT_KEY).
    const gitCryptKey = decoded[0] === 0 ? gitCryptKeyFile(decoded) : undefined;
    if (gitCryptKey) hits.push({ ...gitCryptKey, start: run.start, end, note: `${gitCryptKey.note}, base64-encoded` });
    if (textyRatio(decoded, 4096) < 0.95) continue;
    const inner = scanText(decoded.toString('latin1'), { ...context, depth: (context.depth ?? 0) + 1 });
    for (const hit of inner) {
      hits.push({ ...hit, start: run.start, end, note: `${hit.note ? `${hit.note}, ` : ''}base64-wrapped` });
    }
  }
}

/** From this many needles one combined pattern beats a native search per needle. */
const COMBINED_FROM = 8;
const combined = new WeakMap<readonly OperatorSecret[], RegExp>();

/**
 * True when `text` holds any of the operator's exact values. A handful are searched one by one; more
 * (SOPS values and their encodings) go through one alternation, built once per list and thread.
 */
export function holdsOperatorSecret(text: string, secrets: readonly OperatorSecret[]): boolean {
  if (secrets.length < COMBINED_FROM) {
    for (const secret of secrets) if (text.includes(secret.value)) return true;
    return false;
  }
  let pattern = combined.get(secrets);
  if (!pattern) {
    const values = [...new Set(secrets.map((secret) => secret.value))].sort((a, b) => b.length - a.length);
    pattern = new RegExp(values.map((value) => value.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')).join('|'));
    combined.set(secrets, pattern);
  }
  return pattern.test(text);
}

const exactRules = new Set(['operator-secret', 'sops-value']);
/** Rules that find a value by the name it is given, not by what it is. */
const GUESSED_RULES = new Set(['config-password', 'config-token', 'env-token', 'env-password', 'nix-plaintext-password', 'netrc-password']);

function operatorRule(text: string, hits: RawHit[], context: TextScanContext): void {
  if (context.operatorSecrets.length >= COMBINED_FROM && !holdsOperatorSecret(text, context.operatorSecrets)) return;
  for (const secret of context.operatorSecrets) {
    for (let index = text.indexOf(secret.value); index !== -1; index = text.indexOf(secret.value, index + 1)) {
      const end = index + secret.value.length;
      const covered = hits.find((hit) => hit.start <= index && hit.end >= end);
      // Inside another exact match (a SOPS value's trimmed form inside the whole): one finding.
      if (covered && exactRules.has(covered.rule)) continue;
      // A value a rule only guessed from its name (`password: …`, `API_TOKEN=…`) that is exactly the
      // operator's secret or a SOPS value is reported as that, which says whose it is.
      if (covered && GUESSED_RULES.has(covered.rule) && covered.start === index && covered.end === end) hits.splice(hits.indexOf(covered), 1);
      else if (covered) {
        // A key is matched by several needles (its lines, its body): said once per secret.
        const mark = `the operator's own secret (${secret.label})`;
        if (!covered.note?.includes(mark)) covered.note = `${covered.note ? `${covered.note}; ` : ''}${mark}`;
        continue;
      }
      hits.push({
        rule: secret.kind ?? 'operator-secret',
        kind: secret.kind ?? 'operator-secret',
        secret: secret.material ?? secret.value,
        start: index,
        end,
        note: secret.note ?? `matches ${secret.label}`,
      });
    }
  }
}

/** Every rule over one text window. */
export function scanText(text: string, context: TextScanContext): RawHit[] {
  const hits: RawHit[] = [];
  const families = L.ruleLiterals(text);
  if (families !== 0) literalRules(text, hits, families);
  // Options named by a short password word, and literals written to a store file named like a
  // secret (`environment.etc."restic-password".text`).
  if (context.nixSource) nixSourceRules(text, hits, families);
  base64WrappedRule(text, hits, context);
  if (context.operatorSecrets.length > 0) operatorRule(text, hits, context);
  return hits;
}

/**
 * Whether the literal rules find anything in `text`, given its families (`ruleLiterals`): a text
 * that holds `://` or `password` but no credential is as quiet as one that holds neither.
 */
export function literalRulesHit(text: string, families: number): boolean {
  if (families === 0) return false;
  const hits: RawHit[] = [];
  literalRules(text, hits, families);
  return hits.length > 0;
}

/** The rules that need a literal; each runs only when its family's literal occurs (literals.ts). */
function literalRules(text: string, hits: RawHit[], families: number): void {
  if (families & L.AGE) ageRule(text, hits);
  if (families & L.ARMOR) armoredKeyRule(text, hits);
  if (families & L.PUTTY) puttyRule(text, hits);
  tokenRules(text, hits, families);
  if (families & L.AWS_KEY_ID) awsKeyRule(text, hits);
  if (families & L.URL) urlCredentialRule(text, hits);
  if (families & L.NIX_CACHE_KEY) nixCacheKeyRule(text, hits);
  if (families & L.PRIVATE_KEY) {
    wireguardRule(text, hits);
    if (text.includes('private-key')) gpgAgentKeyRule(text, hits);
  }
  if (families & L.PASSWORD) {
    nixPasswordRule(text, hits);
    if (L.sweptFor(text).plainScheme) plainSchemeRule(text, hits);
  }
  if (families & L.JWK) jwkRule(text, hits);
  serviceRules(text, hits, families);
  // After the Nix and environment-file rules: a line they reported is not reported again.
  if (families & (L.PASSWORD | L.ENV_PASSWORD)) {
    // The lines holding `assword` (or another name for a password), found once for both rules.
    const lines = needleLines(text, CONFIG_PASSWORD_NEEDLES);
    configPasswordRule(text, hits, lines);
    optionPasswordRule(text, hits, lines);
    sqlPasswordRule(text, hits, lines);
  }
  // `--password=…`, `--token …`: after the rules that name a value better, and after config-password,
  // which reads a flag at a line's start (`  --admin-password="…"`) as it always has.
  const dashes = L.sweptFor(text).credentialDashes;
  if (dashes.length > 0) cliFlagRule(text, hits, dashes);
  // A vendor's token in a URL (a `glpat-` token as the password of a GitLab clone URL) is reported once, by its vendor's rule.
  if (families & L.URL) {
    for (let index = hits.length - 1; index >= 0; index--) {
      const hit = hits[index]!;
      if (hit.rule === 'url-credentials' && hits.some((other) => other !== hit && other.rule !== 'url-credentials' && other.start === hit.start && other.end === hit.end)) hits.splice(index, 1);
    }
  }
}

/** True when entropy says a value is random enough to be a credential (used by SOPS checks). */
export function isHighEntropy(value: string): boolean {
  return value.length >= 16 && entropy(value) >= 3.5;
}
