/**
 * Decrypts a SOPS file in memory, as `sops -d` would, with the operator's age identities: the data
 * key from `sops.age[].enc` (or a key group's), each `ENC[AES256_GCM,...]` value with its key path
 * as additional data, and the MAC over all values checked. YAML, JSON, binary (JSON), dotenv and INI.
 * Loaded only when a SOPS file is to be decrypted (it brings the age implementation along).
 *
 * The format, as sops (getsops/sops v3) writes it:
 * - a value is `ENC[AES256_GCM,data:<b64>,iv:<b64 32 bytes>,tag:<b64 16 bytes>,type:str|int|float|bool|bytes|comment]`,
 *   AES-256-GCM with a 32-byte nonce, and the additional data is the path of map keys down to the
 *   value, each followed by a colon (`backup:repo_password:`); list items add nothing to the path;
 * - the MAC is the upper-case hex SHA-512 over every value in document order (comments and nulls
 *   left out, booleans as `True`/`False`; only encrypted ones with `mac_only_encrypted`), stored
 *   encrypted like a value with `lastmodified` (RFC 3339) as additional data;
 * - the 32-byte data key is age-encrypted (armored) to each recipient; with several key groups it
 *   is split by Shamir's scheme, one share per group.
 */
import { createDecipheriv, createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import type * as Bech32 from 'bech32';

let yamlModule: typeof Yaml | undefined;
function yaml(): typeof Yaml {
  yamlModule ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  return yamlModule;
}

type Age = typeof import('age-encryption');
let ageModule: Promise<Age> | undefined;
/** age-encryption (typage, by age's author): ESM, WebCrypto X25519 with @noble fallbacks. */
function age(): Promise<Age> {
  ageModule ??= import('age-encryption');
  return ageModule;
}

/** One decrypted value: where it sits and its bytes (never logged, never reported). */
export interface SopsValue {
  /** Map keys and list indexes, joined with `/` for reports: `backup/repo_password`, `hosts/0`. */
  keyPath: string;
  type: string;
  plaintext: Buffer;
}

export type SopsDecryption =
  /** Not a SOPS file (no metadata with a MAC or recipients). */
  | { status: 'not-sops' }
  /** A SOPS file these identities cannot open; `reason` says why (never a value). */
  | { status: 'undecryptable'; reason: string }
  | {
      status: 'decrypted';
      values: SopsValue[];
      /** True when the MAC over the decrypted values matches the stored one. */
      macVerified: boolean;
      /** Why the MAC or some values did not verify: tampered or hand-edited (never a value). */
      problems: string[];
    };

interface Leaf {
  /** The path sops authenticates: map keys only. */
  aadPath: string[];
  /** The path reported: map keys and list indexes. */
  namePath: string[];
  value: unknown;
}

interface Parsed {
  leaves: Leaf[];
  metadata: Record<string, unknown>;
}

const ENC = /^ENC\[AES256_GCM,data:(.*),iv:(.+),tag:(.+),type:(.+)\]$/s;

// ---- formats -----------------------------------------------------------------------------------

/** dotenv and INI keep metadata flat: `age__list_0__map_enc`; this rebuilds the tree. */
function unflatten(entries: [string, string][]): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [flatKey, value] of entries) {
    const parts = flatKey.split(/(__list_|__map_)/);
    let node: Record<string, unknown> | unknown[] = root;
    let key: string | number = parts[0]!;
    for (let index = 1; index < parts.length; index += 2) {
      const isList = parts[index] === '__list_';
      const container = (node as Record<string, unknown>)[key as string] ?? (isList ? [] : {});
      (node as Record<string, unknown>)[key as string] = container;
      node = container as Record<string, unknown> | unknown[];
      key = isList ? Number(parts[index + 1]) : parts[index + 1]!;
    }
    (node as Record<string, unknown>)[key as string] = value.replace(/\\n/g, '\n');
  }
  return root;
}

function unquote(value: string): string {
  const trimmed = value.trim();
  if (trimmed.length >= 2 && trimmed.startsWith("'") && trimmed.endsWith("'")) return trimmed.slice(1, -1);
  if (trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"')) return trimmed.slice(1, -1).replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
  return trimmed;
}

function parseDotenv(text: string): Parsed {
  const leaves: Leaf[] = [];
  const meta: [string, string][] = [];
  for (const line of text.split(/\r?\n/)) {
    if (/^\s*(?:#|$)/.test(line)) continue; // comments are not part of the MAC
    const match = /^\s*(?:export\s+)?([^=\s]+)\s*=(.*)$/.exec(line);
    if (!match) continue;
    const key = match[1]!;
    if (key.startsWith('sops_')) meta.push([key.slice(5), match[2]!]);
    else leaves.push({ aadPath: [key], namePath: [key], value: unquote(match[2]!).replace(/\\n/g, '\n') });
  }
  return { leaves, metadata: unflatten(meta) };
}

function parseIni(text: string): Parsed {
  const leaves: Leaf[] = [];
  const meta: [string, string][] = [];
  let section = 'DEFAULT';
  for (const line of text.split(/\r?\n/)) {
    if (/^\s*(?:[#;]|$)/.test(line)) continue;
    const header = /^\s*\[([^\]]+)\]\s*$/.exec(line);
    if (header) {
      section = header[1]!.trim();
      continue;
    }
    const entry = /^\s*([^=]+?)\s*=(.*)$/.exec(line);
    if (!entry) continue;
    if (section === 'sops') meta.push([entry[1]!, entry[2]!.trim()]);
    else leaves.push({ aadPath: [section, entry[1]!], namePath: [section, entry[1]!], value: unquote(entry[2]!) });
  }
  return { leaves, metadata: unflatten(meta) };
}

/** YAML and JSON (and the binary format, which is JSON): walked on the syntax tree to keep key order. */
function parseTree(text: string): Parsed | undefined {
  const { parseAllDocuments, isMap, isSeq, isScalar, isAlias, isPair } = yaml();
  const parsed = parseAllDocuments(text, { intAsBigInt: true });
  const documents = Array.isArray(parsed) ? parsed : [parsed];
  const leaves: Leaf[] = [];
  let metadata: Record<string, unknown> | undefined;
  for (const document of documents) {
    if (document.errors.length > 0) return undefined;
    const walk = (node: unknown, aadPath: string[], namePath: string[], top: boolean): void => {
      if (isAlias(node)) node = node.resolve(document);
      if (isMap(node)) {
        for (const pair of node.items) {
          if (!isPair(pair)) continue;
          const keyNode = pair.key;
          const key = String(isScalar(keyNode) ? keyNode.value : keyNode);
          if (top && key === 'sops') {
            metadata ??= (pair.value as { toJSON?: () => unknown })?.toJSON?.() as Record<string, unknown>;
            continue;
          }
          walk(pair.value, [...aadPath, key], [...namePath, key], false);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, index) => walk(item, aadPath, [...namePath, String(index)], false));
      } else if (isScalar(node)) {
        if (node.value !== null && node.value !== undefined) leaves.push({ aadPath, namePath, value: node.value });
      }
    };
    walk(document.contents, [], [], true);
  }
  return metadata && typeof metadata === 'object' ? { leaves, metadata } : undefined;
}

/** Which of sops' formats `text` is, by the shape of its metadata. */
function parseSopsText(text: string): Parsed | undefined {
  if (/^\s*sops_(?:mac|version|lastmodified)=/m.test(text)) return parseDotenv(text);
  if (/^\[sops\]\s*$/m.test(text)) return parseIni(text);
  try {
    return parseTree(text);
  } catch {
    return undefined;
  }
}

// ---- values and MAC ----------------------------------------------------------------------------

/** Go's strconv.FormatFloat(f, 'f', -1, 64): the shortest digits, never an exponent. */
function goFloat(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  const text = String(value);
  const match = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(text);
  if (!match) return text;
  const digits = match[2]! + (match[3] ?? '');
  const exponent = Number(match[4]);
  if (exponent >= 0) {
    const whole = digits.length <= exponent + 1 ? digits.padEnd(exponent + 1, '0') : `${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`;
    return `${match[1]}${whole}`;
  }
  return `${match[1]}0.${'0'.repeat(-exponent - 1)}${digits}`;
}

/** The bytes sops hashes for an unencrypted value (its ToBytes). */
function plainBytes(value: unknown): Buffer {
  if (typeof value === 'boolean') return Buffer.from(value ? 'True' : 'False');
  if (typeof value === 'bigint') return Buffer.from(value.toString());
  if (typeof value === 'number') return Buffer.from(Number.isInteger(value) && Math.abs(value) < 1e21 ? String(value) : goFloat(value));
  return Buffer.from(String(value), 'utf8');
}

/** Go's strconv.ParseBool. */
function goBool(text: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false;
  return undefined;
}

/** The bytes sops hashes for a decrypted value of `type` (it parses, then ToBytes). */
function decryptedBytes(plaintext: Buffer, type: string): Buffer {
  const text = plaintext.toString('utf8');
  if (type === 'bool') {
    const value = goBool(text);
    return value === undefined ? plaintext : Buffer.from(value ? 'True' : 'False');
  }
  if (type === 'int' && /^[+-]?\d+$/.test(text)) return Buffer.from(BigInt(text).toString());
  if (type === 'float' && text.trim() !== '' && !Number.isNaN(Number(text))) return Buffer.from(goFloat(Number(text)));
  return plaintext;
}

class TagMismatch extends Error {}

/** AES-256-GCM of one ENC[...] value; throws TagMismatch when key, path or bytes do not fit. */
function decryptValue(enc: RegExpExecArray, key: Buffer, additionalData: string): { plaintext: Buffer; type: string } {
  const iv = Buffer.from(enc[2]!, 'base64');
  const tag = Buffer.from(enc[3]!, 'base64');
  if (iv.length === 0 || tag.length !== 16) throw new TagMismatch('malformed ENC value');
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(Buffer.from(additionalData, 'utf8'));
  decipher.setAuthTag(tag);
  try {
    return { plaintext: Buffer.concat([decipher.update(Buffer.from(enc[1]!, 'base64')), decipher.final()]), type: enc[4]! };
  } catch {
    throw new TagMismatch('authentication failed');
  }
}

/** sops writes `lastmodified` with Go's time.RFC3339 layout: whole seconds. */
function rfc3339(value: unknown): string {
  const text = value instanceof Date ? value.toISOString() : String(value ?? '');
  return text.replace(/\.\d+(?=Z|[+-]\d\d:\d\d$)/, '');
}

// ---- the data key ------------------------------------------------------------------------------

interface AgeEntry {
  recipient?: string;
  enc?: string;
}

function ageEntries(group: unknown): AgeEntry[] {
  const list = group && typeof group === 'object' ? (group as { age?: unknown }).age : undefined;
  return Array.isArray(list) ? (list as AgeEntry[]).filter((entry) => entry && typeof entry.enc === 'string') : [];
}

/** Tries every identity on every age entry of `group`; the first that opens gives the key (or share). */
async function openGroup(group: unknown, decrypter: InstanceType<Age['Decrypter']>, lib: Age): Promise<Buffer | undefined> {
  for (const entry of ageEntries(group)) {
    try {
      const ciphertext = entry.enc!.includes('-----BEGIN AGE ENCRYPTED FILE-----') ? lib.armor.decode(entry.enc!) : Buffer.from(entry.enc!, 'latin1');
      return Buffer.from(await decrypter.decrypt(ciphertext));
    } catch {
      // Not for these identities (or malformed): the next entry may be.
    }
  }
  return undefined;
}

/** Multiplication in GF(2^8) with the AES polynomial, as sops' (HashiCorp's) shamir package uses. */
function gfMul(a: number, b: number): number {
  let product = 0;
  for (let bit = 0; bit < 8; bit++) {
    if (b & 1) product ^= a;
    const high = a & 0x80;
    a = (a << 1) & 0xff;
    if (high) a ^= 0x1b;
    b >>= 1;
  }
  return product;
}

function gfInverse(a: number): number {
  // a^254 = a^-1 in GF(2^8).
  let result = 1;
  for (let power = 0; power < 254; power++) result = gfMul(result, a);
  return result;
}

/** Shamir combine: each share is the y bytes followed by its x coordinate; interpolated at x = 0. */
export function shamirCombine(shares: Buffer[]): Buffer {
  const length = shares[0]!.length - 1;
  const xs = shares.map((share) => share[length]!);
  const out = Buffer.alloc(length);
  for (let index = 0; index < length; index++) {
    let value = 0;
    for (let i = 0; i < shares.length; i++) {
      let basis = 1;
      for (let j = 0; j < shares.length; j++) {
        if (i === j) continue;
        basis = gfMul(basis, gfMul(xs[j]!, gfInverse(xs[i]! ^ xs[j]!)));
      }
      value ^= gfMul(shares[i]![index]!, basis);
    }
    out[index] = value;
  }
  return out;
}

async function recoverDataKey(metadata: Record<string, unknown>, identities: readonly string[]): Promise<{ key: Buffer } | { reason: string }> {
  const lib = await age();
  const decrypter = new lib.Decrypter();
  for (const identity of identities) {
    try {
      decrypter.addIdentity(identity);
    } catch {
      // not an identity this library takes (a plugin identity): the others may still open the file
    }
  }
  const groups = Array.isArray(metadata.key_groups) && metadata.key_groups.length > 0 ? (metadata.key_groups as unknown[]) : [metadata];
  if (groups.length === 1) {
    const key = await openGroup(groups[0], decrypter, lib);
    if (key?.length === 32) return { key };
    return { reason: ageEntries(groups[0]).length === 0 ? 'no age recipient in its metadata (PGP, KMS or Vault only)' : 'not encrypted to any loaded age identity' };
  }
  // Several key groups: the data key is split, one share per group; `threshold` shares rebuild it.
  const threshold = Number(metadata.shamir_threshold ?? 0) || groups.length;
  const shares: Buffer[] = [];
  for (const group of groups) {
    const share = await openGroup(group, decrypter, lib);
    if (share && share.length === 33) shares.push(share);
    if (shares.length >= threshold) break;
  }
  if (shares.length < threshold) return { reason: `Shamir key groups: ${shares.length} of the ${threshold} shares needed could be opened with the loaded identities` };
  return { key: shamirCombine(shares) };
}

// ---- the file ------------------------------------------------------------------------------------

/**
 * Decrypts SOPS `text` with age `identities` (`AGE-SECRET-KEY-1...`, `AGE-SECRET-KEY-PQ-1...`).
 * Returns the values with their key paths, whether the MAC verified, or why it could not decrypt.
 * Comments (`type:comment`) are not returned: they are notes, not secrets.
 */
export async function decryptSops(text: string, identities: readonly string[]): Promise<SopsDecryption> {
  const parsed = parseSopsText(text);
  if (!parsed) return { status: 'not-sops' };
  const { metadata, leaves } = parsed;
  if (!('mac' in metadata) && !('age' in metadata) && !('key_groups' in metadata)) return { status: 'not-sops' };
  if (identities.length === 0) return { status: 'undecryptable', reason: 'no age identity loaded' };
  const recovered = await recoverDataKey(metadata, identities);
  if (!('key' in recovered)) return { status: 'undecryptable', reason: recovered.reason };
  const key = recovered.key;

  const macOnlyEncrypted = metadata.mac_only_encrypted === true || metadata.mac_only_encrypted === 'true';
  const hash = createHash('sha512');
  const values: SopsValue[] = [];
  const problems: string[] = [];
  let failed = 0;
  for (const leaf of leaves) {
    const keyPath = leaf.namePath.join('/');
    const enc = typeof leaf.value === 'string' ? ENC.exec(leaf.value) : null;
    if (!enc) {
      if (!macOnlyEncrypted) hash.update(plainBytes(leaf.value));
      continue;
    }
    try {
      const { plaintext, type } = decryptValue(enc, key, `${leaf.aadPath.join(':')}:`);
      if (type === 'comment') continue;
      hash.update(decryptedBytes(plaintext, type));
      values.push({ keyPath, type, plaintext });
    } catch {
      failed++;
      if (failed <= 3) problems.push(`the value at ${keyPath} does not decrypt with the file's data key (changed or moved by hand)`);
    }
  }
  if (failed > 3) problems.push(`and ${failed - 3} more values that do not decrypt`);
  // Not one value opens: the key recovered is not this file's (a share combined wrongly, a swapped key).
  if (failed > 0 && values.length === 0) return { status: 'undecryptable', reason: 'the data key its age entry holds does not open its values' };
  const mac = typeof metadata.mac === 'string' ? ENC.exec(metadata.mac) : null;
  let macVerified = false;
  if (!mac) {
    problems.push('it has no MAC');
  } else {
    try {
      const stored = decryptValue(mac, key, rfc3339(metadata.lastmodified)).plaintext.toString('utf8');
      macVerified = failed === 0 && stored === hash.digest('hex').toUpperCase();
      if (!macVerified) problems.push('its MAC does not match its values (tampered, or edited without sops)');
    } catch {
      problems.push('its MAC does not decrypt (tampered, or lastmodified edited without sops)');
    }
  }
  return { status: 'decrypted', values, macVerified, problems };
}

// ---- identities --------------------------------------------------------------------------------

function readString(blob: Buffer, offset: number): { value: Buffer; next: number } | undefined {
  if (offset + 4 > blob.length) return undefined;
  const length = blob.readUInt32BE(offset);
  if (offset + 4 + length > blob.length) return undefined;
  return { value: blob.subarray(offset + 4, offset + 4 + length), next: offset + 4 + length };
}

/**
 * The age identity ssh-to-age makes of an unencrypted OpenSSH ed25519 private key: the X25519
 * scalar is the first half of SHA-512(ed25519 seed) (X25519 clamps it when used), bech32 as
 * `AGE-SECRET-KEY-1...`. Undefined for other key types and passphrase-protected keys.
 */
export function sshEd25519ToAgeIdentity(keyText: string): string | undefined {
  const armored = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(keyText);
  if (!armored) return undefined;
  const blob = Buffer.from(armored[1]!.replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (blob.toString('latin1', 0, magic.length) !== magic) return undefined;
  const cipher = readString(blob, magic.length);
  const kdf = cipher && readString(blob, cipher.next);
  const kdfOptions = kdf && readString(blob, kdf.next);
  if (!kdfOptions || cipher.value.toString('latin1') !== 'none' || kdfOptions.next + 4 > blob.length) return undefined;
  if (blob.readUInt32BE(kdfOptions.next) !== 1) return undefined;
  const publicBlob = readString(blob, kdfOptions.next + 4);
  const privateBlock = publicBlob && readString(blob, publicBlob.next);
  if (!privateBlock) return undefined;
  const block = privateBlock.value;
  // checkint, checkint, key type, public key, private key (seed || public), comment, padding.
  if (block.length < 8 || block.readUInt32BE(0) !== block.readUInt32BE(4)) return undefined;
  const type = readString(block, 8);
  if (type?.value.toString('latin1') !== 'ssh-ed25519') return undefined;
  const publicKey = readString(block, type.next);
  const privateKey = publicKey && readString(block, publicKey.next);
  if (!privateKey || privateKey.value.length !== 64) return undefined;
  const scalar = createHash('sha512').update(privateKey.value.subarray(0, 32)).digest().subarray(0, 32);
  const { bech32 } = createRequire(import.meta.url)('bech32') as typeof Bech32;
  return bech32.encode('age-secret-key-', bech32.toWords(scalar), 1023).toUpperCase();
}
