/**
 * Real SOPS files made at test time, with real cryptography, the way sops (v3) writes them: a fresh
 * random data key, each value AES-256-GCM with a 32-byte IV and its key path (`a:b:`) as additional
 * data, the MAC (upper-case hex SHA-512 over every value in order, booleans as True/False) encrypted
 * with `lastmodified` as additional data, and the data key age-encrypted (armored) to each recipient.
 * Written independently of src/core/scan/rules/sops-decrypt.ts (plain objects, no syntax trees).
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { Encrypter, armor } from 'age-encryption';
import { stringify } from 'yaml';

export type SopsTree = { [key: string]: SopsNode };
export type SopsNode = string | number | boolean | null | SopsNode[] | SopsTree;

export interface SopsEncryptOptions {
  /** age recipients (`age1...`) the data key is encrypted to. */
  recipients: string[];
  format: 'yaml' | 'json' | 'dotenv' | 'ini' | 'binary';
  lastmodified?: string;
  /** Several key groups (each a list of recipients): the data key is split with Shamir, one share per group. */
  keyGroups?: string[][];
  shamirThreshold?: number;
}

export interface SopsFile {
  text: string;
  dataKey: Buffer;
  /** The armored age ciphertext of the data key, per recipient (to cross-check with `age -d`). */
  encryptedKeys: string[];
}

const UNENCRYPTED_SUFFIX = '_unencrypted';

function encrypt(plaintext: Buffer, key: Buffer, additionalData: string, type: string): string {
  const iv = randomBytes(32);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(additionalData));
  const data = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return `ENC[AES256_GCM,data:${data.toString('base64')},iv:${iv.toString('base64')},tag:${cipher.getAuthTag().toString('base64')},type:${type}]`;
}

function typed(value: string | number | boolean): { plaintext: string; type: string; macBytes: string } {
  if (typeof value === 'boolean') return { plaintext: String(value), type: 'bool', macBytes: value ? 'True' : 'False' };
  if (typeof value === 'number') return { plaintext: String(value), type: Number.isInteger(value) ? 'int' : 'float', macBytes: String(value) };
  return { plaintext: value, type: 'str', macBytes: value };
}

/** Encrypts every leaf of `node` in place order; `mac` collects what sops hashes. */
function encryptNode(node: SopsNode, path: string[], key: Buffer, mac: ReturnType<typeof createHash>): SopsNode {
  if (node === null) return null;
  if (Array.isArray(node)) return node.map((item) => encryptNode(item, path, key, mac));
  if (typeof node === 'object') {
    const out: SopsTree = {};
    for (const [name, value] of Object.entries(node)) out[name] = encryptNode(value, [...path, name], key, mac);
    return out;
  }
  const { plaintext, type, macBytes } = typed(node);
  mac.update(Buffer.from(macBytes));
  if (path.some((name) => name.endsWith(UNENCRYPTED_SUFFIX))) return node;
  if (plaintext === '') return '';
  return encrypt(Buffer.from(plaintext), key, `${path.join(':')}:`, type);
}

// GF(2^8) with the AES polynomial, by log and exp tables over the generator 3.
const EXP = new Uint8Array(510);
const LOG = new Uint8Array(256);
{
  let value = 1;
  for (let power = 0; power < 255; power++) {
    EXP[power] = value;
    EXP[power + 255] = value;
    LOG[value] = power;
    value ^= (value << 1) ^ (value & 0x80 ? 0x11b : 0); // multiply by 3
    value &= 0xff;
  }
}
const mul = (a: number, b: number) => (a === 0 || b === 0 ? 0 : EXP[LOG[a]! + LOG[b]!]!);

/** Shamir split as HashiCorp's (and sops') package lays shares out: y bytes, then the x coordinate. */
export function shamirSplit(secret: Buffer, parts: number, threshold: number): Buffer[] {
  const xs = [...randomBytes(parts * 4)].map((byte) => byte).filter((x, index, all) => x !== 0 && all.indexOf(x) === index).slice(0, parts);
  if (xs.length < parts) return shamirSplit(secret, parts, threshold);
  const shares = xs.map((x) => Buffer.concat([Buffer.alloc(secret.length), Buffer.from([x])]));
  for (let index = 0; index < secret.length; index++) {
    const coefficients = [secret[index]!, ...randomBytes(threshold - 1)];
    shares.forEach((share, shareIndex) => {
      const x = xs[shareIndex]!;
      let y = 0;
      for (let degree = coefficients.length - 1; degree >= 0; degree--) y = mul(y, x) ^ coefficients[degree]!;
      share[index] = y;
    });
  }
  return shares;
}

async function ageEncrypt(plaintext: Buffer, recipient: string): Promise<string> {
  const encrypter = new Encrypter();
  encrypter.addRecipient(recipient);
  return armor.encode(await encrypter.encrypt(plaintext));
}

function flatten(prefix: string, node: unknown, out: [string, string][]): void {
  if (Array.isArray(node)) node.forEach((item, index) => flatten(`${prefix}__list_${index}`, item, out));
  else if (node && typeof node === 'object') for (const [key, value] of Object.entries(node)) flatten(prefix ? `${prefix}__map_${key}` : key, value, out);
  else out.push([prefix, String(node).replace(/\n/g, '\\n')]);
}

/**
 * Encrypts `tree` as sops would. dotenv takes a flat map of strings; INI a map of sections; binary a
 * `{ data: string }` tree. Returns the file text, the data key and the encrypted data keys.
 */
export async function sopsEncrypt(tree: SopsTree, options: SopsEncryptOptions): Promise<SopsFile> {
  const dataKey = randomBytes(32);
  const lastmodified = options.lastmodified ?? '2024-05-06T07:08:09Z';
  const mac = createHash('sha512');
  const encrypted = encryptNode(tree, [], dataKey, mac) as SopsTree;
  const macValue = encrypt(Buffer.from(mac.digest('hex').toUpperCase()), dataKey, lastmodified, 'str');
  const encryptedKeys: string[] = [];
  const metadata: Record<string, unknown> = {};
  if (options.keyGroups) {
    const shares = shamirSplit(dataKey, options.keyGroups.length, options.shamirThreshold ?? options.keyGroups.length);
    const groups = [];
    for (const [index, group] of options.keyGroups.entries()) {
      const age = [];
      for (const recipient of group) {
        const enc = await ageEncrypt(shares[index]!, recipient);
        encryptedKeys.push(enc);
        age.push({ recipient, enc });
      }
      groups.push({ age });
    }
    metadata.key_groups = groups;
    metadata.shamir_threshold = options.shamirThreshold ?? options.keyGroups.length;
  } else {
    const age = [];
    for (const recipient of options.recipients) {
      const enc = await ageEncrypt(dataKey, recipient);
      encryptedKeys.push(enc);
      age.push({ recipient, enc });
    }
    metadata.age = age;
  }
  Object.assign(metadata, { lastmodified, mac: macValue, unencrypted_suffix: UNENCRYPTED_SUFFIX, version: '3.9.0' });

  let text: string;
  if (options.format === 'yaml') text = stringify({ ...encrypted, sops: metadata }, { indent: 4 });
  else if (options.format === 'json' || options.format === 'binary') text = `${JSON.stringify({ ...encrypted, sops: metadata }, null, 4)}\n`;
  else {
    const flat: [string, string][] = [];
    flatten('', metadata, flat);
    if (options.format === 'dotenv') {
      text = [...Object.entries(encrypted).map(([key, value]) => `${key}=${String(value)}`), ...flat.map(([key, value]) => `sops_${key}=${value}`)].join('\n') + '\n';
    } else {
      const sections = Object.entries(encrypted).map(([section, values]) => `[${section}]\n${Object.entries(values as SopsTree).map(([key, value]) => `${key} = ${String(value)}`).join('\n')}\n`);
      text = `${sections.join('\n')}\n[sops]\n${flat.map(([key, value]) => `${key} = ${value}`).join('\n')}\n`;
    }
  }
  return { text, dataKey, encryptedKeys };
}
