/**
 * The text rules: every credential shape the leak gate knows, validated by structure (checksums,
 * key parsing, entropy) wherever a structure exists. `scanText` works on a latin1 view of bytes, so
 * string offsets are byte offsets. Pure functions over constant tables: safe inside worker threads.
 */
import { createRequire } from 'node:module';
import type * as Bech32 from 'bech32';
import { nodeCrypto } from './fingerprint.js';
import { serviceRules } from './service-rules.js';
import { base62, crc32, entropy, isDescriptivePlaceholder, isTemplateValue, looksLikePlaceholder, textyRatio } from './text-util.js';

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
    if (prefix === 'age-secret-key-pq-') rule = 'age-pq-identity';
    else if (prefix.startsWith('age-plugin-')) rule = 'age-plugin-identity';
    else if (prefix !== 'age-secret-key-' || decoded.bytes.length !== 32) continue;
    hits.push({ rule, kind: 'age-identity', secret: decoded.bytes, start: match.index, end: match.index + candidate.length });
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
  for (let line of lines) {
    line = line.trim().replace(/^["'`]+|["',`]+$/g, '').trim();
    if (line === '') continue;
    if (/^[\w-]+:\s/.test(line)) {
      headers.push(line);
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

function armoredKeyRule(text: string, hits: RawHit[]): void {
  const pattern = /-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |ANY )?PRIVATE KEY|PGP PRIVATE KEY BLOCK|SSH2 ENCRYPTED PRIVATE KEY)-----/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const label = match[1]!;
    const bodyStart = match.index + match[0].length;
    const endMarker = `-----END ${label}-----`;
    const endIndex = text.indexOf(endMarker, bodyStart);
    const bodyEnd = endIndex !== -1 && endIndex - bodyStart < MAX_SECRET_SPAN ? endIndex : Math.min(text.length, bodyStart + MAX_SECRET_SPAN);
    const { base64, headers } = armorBody(text.slice(bodyStart, bodyEnd));
    if (base64.length < 40) continue; // "-----BEGIN ... -----\n...\n" in docs: no key material
    const der = Buffer.from(base64, 'base64');
    const encryptedHeader = headers.some((line) => /ENCRYPTED/i.test(line));
    const end = endIndex !== -1 ? endIndex + endMarker.length : bodyEnd;
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
    } else {
      // PKCS#1 RSA / SEC1 EC / DSA; with Proc-Type: 4,ENCRYPTED the DER is ciphertext.
      if (!encryptedHeader && der[0] !== 0x30) continue;
      if (der.length < 32) continue;
      rule = 'pem-private-key';
      note = `${label.replace(' PRIVATE KEY', '')}${encryptedHeader ? ', encrypted PEM' : ''}`;
    }
    hits.push({ rule, kind: 'private-key', secret: der, start: match.index, end, ...(note ? { note } : {}) });
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
  /** Cheap test that must pass for the pattern to match at all (a literal it cannot match without). */
  mayMatch: (text: string) => boolean;
  note?: string;
}

function githubChecksumValid(token: string): boolean {
  const body = token.slice(4, 34);
  return base62(crc32(body)) === token.slice(34, 40);
}

// The aws-secret-access-key pattern cannot match without this word (any case).
const AWS_SECRET_WORD = /secret_?access/i;

const TOKEN_RULES: TokenRule[] = [
  {
    rule: 'github-token',
    mayMatch: (text) => text.includes('_') && (text.includes('ghp_') || text.includes('gho_') || text.includes('ghu_') || text.includes('ghs_') || text.includes('ghr_')),
    kind: 'github-token',
    pattern: /(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9_])/g,
    valid: githubChecksumValid,
  },
  {
    rule: 'github-fine-grained-token',
    mayMatch: (text) => text.includes('github_pat_'),
    kind: 'github-token',
    pattern: /(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}(?![A-Za-z0-9_])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(11), 3.5),
  },
  {
    rule: 'huggingface-token',
    mayMatch: (text) => text.includes('hf_'),
    kind: 'huggingface-token',
    pattern: /(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{34}(?![A-Za-z0-9_])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(3), 3.5),
  },
  {
    rule: 'openai-key',
    mayMatch: (text) => text.includes('sk-'),
    kind: 'openai-key',
    pattern: /(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|[A-Za-z0-9]{48})(?![A-Za-z0-9_-])/g,
    valid: (secret) => !looksLikePlaceholder(secret.replace(/^sk-(?:proj|svcacct|admin|None)-/, '').replace(/^sk-/, ''), 3.5),
  },
  {
    rule: 'tailscale-key',
    mayMatch: (text) => text.includes('tskey-'),
    kind: 'tailscale-key',
    pattern: /(?<![A-Za-z0-9_-])tskey-(?:[a-z]+-)?[A-Za-z0-9]{6,}-[A-Za-z0-9]{16,}(?![A-Za-z0-9_-])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(secret.lastIndexOf('-') + 1), 3.3),
  },
  {
    rule: 'slack-token',
    mayMatch: (text) => text.includes('xox'),
    kind: 'slack-token',
    // Numeric workspace/user ids, then a random part of 20+ characters: `xoxp-0-stub-token` is a stub.
    pattern: /(?<![A-Za-z0-9_-])xox[abposr]-(?:\d+-)+(?:[A-Za-z0-9]+-)*[A-Za-z0-9]{20,}(?![A-Za-z0-9_-])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(5).replace(/^[\d-]+/, ''), 3),
  },
  {
    rule: 'aws-secret-access-key',
    mayMatch: (text) => AWS_SECRET_WORD.test(text),
    kind: 'aws-secret-key',
    pattern: /aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/gi,
    group: 1,
    valid: (secret) => !looksLikePlaceholder(secret, 3.8) && !/EXAMPLEKEY/.test(secret),
  },
  {
    rule: 'nix-access-token',
    mayMatch: (text) => text.includes('access-tokens'),
    kind: 'nix-access-token',
    pattern: /access-tokens\s*=\s*((?:[\w.-]+=[^\s"';]+\s*)+)/g,
    group: 1,
    valid: (secret) => secret.split(/\s+/).some((pair) => {
      const value = pair.slice(pair.indexOf('=') + 1);
      return value.length >= 8 && !looksLikePlaceholder(value, 3);
    }),
  },
];

function tokenRules(text: string, hits: RawHit[]): void {
  for (const rule of TOKEN_RULES) {
    if (!rule.mayMatch(text)) continue;
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

function urlCredentialRule(text: string, hits: RawHit[]): void {
  const pattern = /\b[a-z][a-z0-9+.-]{1,15}:\/\/([^\s:@/"'`<>(){}[\]\\]{1,128}):([^\s@/"'`<>(){}[\]\\]{3,256})@([A-Za-z0-9._-]+)/gi;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const password = match[2]!;
    if (DOCUMENTATION_HOST.test(match[3]!.replace(/\.$/, ''))) continue;
    if (/^[$%{<@]/.test(password) || isTemplateValue(password) || URL_PLACEHOLDER.test(password) || /\$\{|\{\{|<[^>]*>/.test(password)) continue;
    if (/^(?:example|sample|dummy|placeholder|changeme|redacted)/i.test(password) || /x{4,}|X{4,}/.test(password)) continue;
    const start = match.index + match[0].indexOf(':', match[0].indexOf('://') + 3) + 1;
    hits.push({ rule: 'url-credentials', kind: 'url-credentials', secret: password, start, end: start + password.length });
  }
}

/** A Nix binary-cache secret key: `name:` + base64 of 64 bytes whose second half is the public key of the first. */
function nixCacheKeyRule(text: string, hits: RawHit[]): void {
  const pattern = /(?<![A-Za-z0-9+/=])[A-Za-z0-9][A-Za-z0-9._-]{0,127}:([A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
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
  const pattern = /(?:private[_-]?key(?:File)?|PrivateKey)["']?\s*(?:=|:)\s*(?:pkgs\.writeText\s+"[^"]*"\s+)?["']?([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)(?![A-Za-z0-9+/=])/gi;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const key = match[1]!;
    if (looksLikePlaceholder(key, 3.5)) continue;
    const start = match.index + match[0].lastIndexOf(key);
    hits.push({ rule: 'wireguard-private-key', kind: 'wireguard-private-key', secret: Buffer.from(key, 'base64'), start, end: start + key.length });
  }
}

/**
 * Plaintext passwords in Nix options: `password = "...";`, `initialPassword = "...";` and other
 * `*Password = "...";` string literals. `hashedPassword`/`initialHashedPassword` (a crypt(3) hash meant
 * for the store) and `*PasswordFile` paths are not findings; neither are interpolations.
 */
function nixPasswordRule(text: string, hits: RawHit[]): void {
  const pattern = /(?<![\w.-])((?:[\w-]+\.)*([A-Za-z_]*[Pp]assword))\s*=\s*"([^"\\$]*)"\s*;/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const name = match[2]!;
    const value = match[3]!;
    if (/hash|file|path|command|length|prompt|policy/i.test(name) || value === '' || isTemplateValue(value) || isDescriptivePlaceholder(value)) continue;
    if (/^(?:x+|\*+|\.+|…|changeme|password|example|placeholder|secret|hunter2)$/i.test(value)) continue;
    // A crypt(3) hash (`$6$salt$…`, or 13-character DES crypt marked `encrypted` nearby) is not plaintext.
    if (/^\$(?:1|2[abxy]?|5|6|y|gy|7|sha1|md5)\$/.test(value) || (/^[./A-Za-z0-9]{13}$/.test(value) && /encrypted/.test(text.slice(match.index, match.index + 300)))) continue;
    const start = match.index + match[0].lastIndexOf(`"${value}"`) + 1;
    hits.push({ rule: 'nix-plaintext-password', kind: 'plaintext-password', secret: value, start, end: start + value.length, note: `option ${name}` });
  }
}

const BASE64 = new Uint8Array(128);
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') BASE64[ch.charCodeAt(0)] = 1;

function isBase64(text: string, index: number): boolean {
  const code = text.charCodeAt(index);
  return code < 128 && BASE64[code] === 1;
}

/**
 * True when `text` has a run of at least `min` base64 characters (what the rule's pattern needs).
 * Only points of a grid of step min/5 are read first: a run that long covers at least five
 * consecutive points, while a 64-character hex digest (in every Nix file with a hash) covers at
 * most four, so ordinary text is ruled out without measuring a single run.
 */
export function hasBase64Run(text: string, min = 80): boolean {
  const step = Math.max(1, Math.floor(min / 5));
  const need = Math.floor(min / step);
  let streak = 0;
  for (let grid = step - 1; grid < text.length; grid += step) {
    if (!isBase64(text, grid)) {
      streak = 0;
      continue;
    }
    if (++streak < need) continue;
    // Points first..grid are base64: measure the run through the first of them.
    const first = grid - (need - 1) * step;
    let left = first;
    while (left > 0 && isBase64(text, left - 1)) left--;
    let right = first + 1;
    while (right < text.length && isBase64(text, right)) right++;
    if (right - left >= min) return true;
    // Too short (a gap lies between the points): go on from the first point past its end.
    streak = 0;
    grid = first;
    while (grid + step < right) grid += step;
  }
  return false;
}

/** Base64 runs (a Kubernetes Secret's data) that decode to text are decoded and rescanned. */
function base64WrappedRule(text: string, hits: RawHit[], context: TextScanContext): void {
  if ((context.depth ?? 0) >= 2) return;
  if (!hasBase64Run(text)) return;
  const pattern = /(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{80,}={0,2}/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const decoded = Buffer.from(match[0], 'base64');
    if (textyRatio(decoded, 4096) < 0.95) continue;
    const inner = scanText(decoded.toString('latin1'), { ...context, depth: (context.depth ?? 0) + 1 });
    for (const hit of inner) {
      hits.push({ ...hit, start: match.index, end: match.index + match[0].length, note: `${hit.note ? `${hit.note}, ` : ''}base64-wrapped` });
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

function operatorRule(text: string, hits: RawHit[], context: TextScanContext): void {
  if (context.operatorSecrets.length >= COMBINED_FROM && !holdsOperatorSecret(text, context.operatorSecrets)) return;
  for (const secret of context.operatorSecrets) {
    for (let index = text.indexOf(secret.value); index !== -1; index = text.indexOf(secret.value, index + 1)) {
      const end = index + secret.value.length;
      const covered = hits.find((hit) => hit.start <= index && hit.end >= end);
      // Inside another exact match (a SOPS value's trimmed form inside the whole): one finding.
      if (covered && exactRules.has(covered.rule)) continue;
      if (covered) {
        covered.note = `${covered.note ? `${covered.note}; ` : ''}the operator's own secret (${secret.label})`;
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

/**
 * Every literal the rule guards below look for, in one pattern: most files hold none of them, and one
 * native search rules them all out (a dozen `includes` calls cost twice as much on short files).
 */
export const ANY_RULE_LITERAL =
  /AGE-|-----BEGIN |PuTTY-User-Key-File-|g(?:h[pousr]_|ithub_pat_)|hf_|sk-|tskey-|xox|[sS][eE][cC][rR][eE][tT]_?[aA][cC][cC][eE][sS][sS]|access-tokens|A(?:KI|SI)A|:\/\/|==|[pP][rR][iI][vV][aA][tT][eE][_-]?[kK][eE][yY]|assword|npm_|pypi-|AIza|:AA|eyJ|"auth"|AccountKey|psk|resharedKey|ASSWORD|ASSPHRASE|_PASS|ACCOUNT_KEY|gl(?:pat|dt|rt|ptt|ft|cbt|soat)-/;


/** Cheap guards: skip a rule family when its literal cannot occur in the text. */
export function scanText(text: string, context: TextScanContext): RawHit[] {
  const hits: RawHit[] = [];
  if (ANY_RULE_LITERAL.test(text)) literalRules(text, hits);
  base64WrappedRule(text, hits, context);
  if (context.operatorSecrets.length > 0) operatorRule(text, hits, context);
  return hits;
}

/** The rules that need a literal; each runs only when its own literal occurs. */
function literalRules(text: string, hits: RawHit[]): void {
  if (text.includes('AGE-')) ageRule(text, hits);
  if (text.includes('-----BEGIN ')) armoredKeyRule(text, hits);
  if (text.includes('PuTTY-User-Key-File-')) puttyRule(text, hits);
  tokenRules(text, hits);
  if (text.includes('AKIA') || text.includes('ASIA')) awsKeyRule(text, hits);
  if (text.includes('://')) urlCredentialRule(text, hits);
  if (text.includes('==')) nixCacheKeyRule(text, hits);
  if (/private[_-]?key/i.test(text)) wireguardRule(text, hits);
  if (text.includes('assword')) nixPasswordRule(text, hits);
  serviceRules(text, hits);
}

/** True when entropy says a value is random enough to be a credential (used by SOPS checks). */
export function isHighEntropy(value: string): boolean {
  return value.length >= 16 && entropy(value) >= 3.5;
}
