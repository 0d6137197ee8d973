/**
 * Private keys stored in binary files, recognized by their structure at the start of the file: the
 * armored forms are text rules (rules.ts), these are what `gpg --export-secret-keys`, GnuPG's
 * agent (`private-keys-v1.d/*.key`), `openssl ... -outform DER`, `openssl pkcs12`, Java's keytool,
 * Tor's onion services and Kerberos (keytabs) write; and a few key files that are text but have a
 * fixed start (`textKeyFile`). Each check parses enough of the format that random bytes and the
 * public counterparts (a public key packet, a certificate, a DER public key) are not findings.
 * Pure functions: safe inside worker threads.
 */
import { nodeCrypto } from './fingerprint.js';
import type { RawHit } from './rules.js';
import { gitCryptKeyFile } from './git-crypt.js';

/** A DER length at `offset` (after the tag): value and where the content starts; undefined when malformed. */
function derLength(bytes: Buffer, offset: number): { length: number; start: number } | undefined {
  const first = bytes[offset];
  if (first === undefined) return undefined;
  if (first < 0x80) return { length: first, start: offset + 1 };
  const count = first & 0x7f;
  if (count === 0 || count > 4 || offset + 1 + count > bytes.length) return undefined;
  let length = 0;
  for (let index = 0; index < count; index++) length = length * 256 + bytes[offset + 1 + index]!;
  return { length, start: offset + 1 + count };
}

/** The element at `offset`: tag, content start and end; undefined when it does not fit. */
function derElement(bytes: Buffer, offset: number): { tag: number; start: number; end: number } | undefined {
  const tag = bytes[offset];
  if (tag === undefined) return undefined;
  const length = derLength(bytes, offset + 1);
  if (!length || length.start + length.length > bytes.length) return undefined;
  return { tag, start: length.start, end: length.start + length.length };
}

const OID_PBES2 = Buffer.from('2a864886f70d01050d', 'hex');
const OID_PKCS12_PBE = Buffer.from('2a864886f70d010c01', 'hex'); // pbeWithSHAAnd..., one more arc follows
const OID_PKCS7_DATA = Buffer.from('2a864886f70d010701', 'hex');
const OID_PKCS7_SIGNED = Buffer.from('2a864886f70d010702', 'hex');

/** DER private keys: PKCS#8 (plain or encrypted), PKCS#1 RSA, SEC1 EC; and PKCS#12 keystores. */
function derKey(bytes: Buffer): RawHit | undefined {
  const outer = derElement(bytes, 0);
  // One SEQUENCE that is the whole file (a trailing newline allowed): not a fragment of something else.
  if (!outer || outer.tag !== 0x30 || bytes.length - outer.end > 2 || outer.end < 40) return undefined;
  const first = derElement(bytes, outer.start);
  if (!first) return undefined;
  const hit = (rule: string, note: string): RawHit => ({ rule, kind: 'private-key', secret: bytes.subarray(0, outer.end), start: 0, end: outer.end, note });
  if (first.tag === 0x02 && first.end - first.start === 1 && bytes[first.start] === 3) {
    // PKCS#12: version 3, then a ContentInfo of data (passwords) or signedData (public-key integrity).
    const authSafe = derElement(bytes, first.end);
    const oid = authSafe && authSafe.tag === 0x30 ? derElement(bytes, authSafe.start) : undefined;
    if (oid?.tag === 0x06) {
      const value = bytes.subarray(oid.start, oid.end);
      if (value.equals(OID_PKCS7_DATA) || value.equals(OID_PKCS7_SIGNED)) return hit('pkcs12-keystore', 'PKCS#12 keystore (holds private keys and their certificates)');
    }
    return undefined;
  }
  if (first.tag === 0x30) {
    // EncryptedPrivateKeyInfo: AlgorithmIdentifier { PBES2 or a PKCS#12 PBE }, OCTET STRING.
    const oid = derElement(bytes, first.start);
    const data = derElement(bytes, first.end);
    if (oid?.tag !== 0x06 || data?.tag !== 0x04) return undefined;
    const value = bytes.subarray(oid.start, oid.end);
    if (value.equals(OID_PBES2) || (value.length === OID_PKCS12_PBE.length + 1 && value.subarray(0, OID_PKCS12_PBE.length).equals(OID_PKCS12_PBE))) {
      return hit('pkcs8-private-key', 'encrypted PKCS#8, DER');
    }
    return undefined;
  }
  if (first.tag !== 0x02) return undefined;
  // Version 0 (PKCS#8, PKCS#1) or 1 (SEC1, PKCS#8 v2): let OpenSSL parse it; a public key or a
  // certificate never parses as a private one.
  const { createPrivateKey } = nodeCrypto();
  const der = bytes.subarray(0, outer.end);
  for (const type of ['pkcs8', 'pkcs1', 'sec1'] as const) {
    try {
      const key = createPrivateKey({ key: der, format: 'der', type });
      return hit(type === 'pkcs8' ? 'pkcs8-private-key' : 'der-private-key', `${key.asymmetricKeyType ?? 'unknown'}, ${type.toUpperCase()} DER`);
    } catch {
      // not this type
    }
  }
  return undefined;
}

/** OpenPGP public-key algorithms (RFC 4880, RFC 9580). */
const PGP_ALGORITHMS = new Set([1, 2, 3, 16, 17, 18, 19, 20, 22, 25, 26, 27, 28]);

/** End of an MPI at `offset` (bit count, then the bytes; its top byte has exactly that bit set). */
function mpiEnd(bytes: Buffer, offset: number, limit: number): number | undefined {
  if (offset + 2 > limit) return undefined;
  const bits = bytes.readUInt16BE(offset);
  const size = (bits + 7) >> 3;
  if (bits === 0 || offset + 2 + size > limit) return undefined;
  if (bytes[offset + 2]! >> ((bits - 1) % 8) !== 1) return undefined;
  return offset + 2 + size;
}

/** End of the public key material of `algorithm` at `offset`; undefined when it does not parse. */
function publicMaterialEnd(bytes: Buffer, offset: number, limit: number, algorithm: number): number | undefined {
  let at: number | undefined = offset;
  const mpis = (count: number) => {
    for (let index = 0; index < count && at !== undefined; index++) at = mpiEnd(bytes, at, limit);
  };
  const curve = () => {
    const length = bytes[at!]!;
    if (length === 0 || length === 0xff || at! + 1 + length > limit) at = undefined;
    else at = at! + 1 + length;
  };
  // RSA's n and DSA's and Elgamal's p: 1024 bits or more in any key gpg ever made (random bytes that
  // parse as a packet mostly have a smaller first number).
  if ([1, 2, 3, 16, 17, 20].includes(algorithm) && (offset + 2 > limit || bytes.readUInt16BE(offset) < 1000)) return undefined;
  switch (algorithm) {
    case 1:
    case 2:
    case 3:
      mpis(2); // n, e
      break;
    case 16:
    case 20:
      mpis(3); // p, g, y
      break;
    case 17:
      mpis(4); // p, q, g, y
      break;
    case 19:
    case 22:
      curve();
      mpis(1);
      break;
    case 18:
      curve();
      mpis(1);
      if (at !== undefined) at = bytes[at] === 3 && at + 4 <= limit ? at + 4 : undefined; // KDF parameters
      break;
    default: {
      const size = { 25: 32, 26: 56, 27: 32, 28: 57 }[algorithm];
      at = size !== undefined && offset + size < limit ? offset + size : undefined;
    }
  }
  return at !== undefined && at < limit ? at : undefined;
}

/** A binary OpenPGP secret key (or subkey) packet at the start: `gpg --export-secret-keys`, secring.gpg. */
function pgpSecretKey(bytes: Buffer): RawHit | undefined {
  const b0 = bytes[0];
  if (b0 === undefined || (b0 & 0x80) === 0) return undefined;
  let tag: number;
  let bodyStart: number;
  let bodyLength: number;
  if (b0 & 0x40) {
    tag = b0 & 0x3f;
    const l0 = bytes[1];
    if (l0 === undefined) return undefined;
    if (l0 < 192) [bodyStart, bodyLength] = [2, l0];
    else if (l0 < 224) [bodyStart, bodyLength] = [3, ((l0 - 192) << 8) + (bytes[2] ?? 0) + 192];
    else if (l0 === 255) [bodyStart, bodyLength] = [6, bytes.length >= 6 ? bytes.readUInt32BE(2) : 0];
    else return undefined; // partial lengths are not used for key packets
  } else {
    tag = (b0 >> 2) & 0x0f;
    const type = b0 & 3;
    if (type === 3) return undefined;
    const size = 1 << type;
    if (bytes.length < 1 + size) return undefined;
    bodyStart = 1 + size;
    bodyLength = size === 1 ? bytes[1]! : size === 2 ? bytes.readUInt16BE(1) : bytes.readUInt32BE(1);
  }
  if (tag !== 5 && tag !== 7) return undefined;
  if (bodyLength < 12 || bodyStart + bodyLength > bytes.length) return undefined;
  const version = bytes[bodyStart]!;
  if (version < 3 || version > 6) return undefined;
  // v4: version, 4-byte creation time, algorithm; v3 has 2 bytes of validity before the algorithm,
  // v5/v6 a 4-byte key material length after it. Then the public key material, then S2K usage.
  const algorithm = version === 3 ? bytes[bodyStart + 7]! : bytes[bodyStart + 5]!;
  if (!PGP_ALGORITHMS.has(algorithm)) return undefined;
  const material = bodyStart + (version === 3 ? 8 : version === 4 ? 6 : 10);
  const after = publicMaterialEnd(bytes, material, bodyStart + bodyLength, algorithm);
  if (after === undefined) return undefined;
  const usage = bytes[after]!;
  if (!(usage === 0 || usage >= 253 || (usage >= 1 && usage <= 13))) return undefined;
  return {
    rule: 'pgp-private-key',
    kind: 'private-key',
    secret: bytes.subarray(bodyStart, bodyStart + bodyLength),
    start: 0,
    end: bodyStart + bodyLength,
    note: `binary OpenPGP secret ${tag === 5 ? 'key' : 'subkey'}`,
  };
}

/** GnuPG agent keys in the canonical S-expression form (`(21:protected-private-key(3:rsa...`). */
function gpgAgentCanonical(bytes: Buffer): RawHit | undefined {
  const head = bytes.toString('latin1', 0, 32);
  const match = /^\((?:11:private-key|21:protected-private-key)\(\d+:[a-z]+/.exec(head);
  if (!match || bytes.length < 64) return undefined;
  return { rule: 'gpg-agent-private-key', kind: 'private-key', secret: bytes, start: 0, end: bytes.length, note: head.startsWith('(21:') ? 'GnuPG agent key, passphrase-protected' : 'GnuPG agent key' };
}

/** Java keystores: JKS (0xFEEDFEED) and JCEKS (0xCECECECE) with a private or secret key entry. */
function javaKeystore(bytes: Buffer): RawHit | undefined {
  if (bytes.length < 12) return undefined;
  const magic = bytes.readUInt32BE(0);
  if (magic !== 0xfeedfeed && magic !== 0xcececece) return undefined;
  const version = bytes.readUInt32BE(4);
  const count = bytes.readUInt32BE(8);
  if ((version !== 1 && version !== 2) || count > 100_000) return undefined;
  let offset = 12;
  const utf = () => {
    if (offset + 2 > bytes.length) throw new RangeError('truncated');
    const length = bytes.readUInt16BE(offset);
    offset += 2 + length;
  };
  const blob = () => {
    if (offset + 4 > bytes.length) throw new RangeError('truncated');
    offset += 4 + bytes.readUInt32BE(offset);
  };
  try {
    for (let entry = 0; entry < count && offset + 4 <= bytes.length; entry++) {
      const tag = bytes.readUInt32BE(offset);
      offset += 4;
      if (tag === 1 || tag === 3) {
        return { rule: 'java-keystore', kind: 'private-key', secret: bytes, start: 0, end: bytes.length, note: `${magic === 0xfeedfeed ? 'JKS' : 'JCEKS'} keystore with a ${tag === 1 ? 'private' : 'secret'} key entry` };
      }
      if (tag !== 2) return undefined;
      utf(); // alias
      offset += 8; // date
      if (version === 2) utf(); // certificate type
      blob(); // certificate
    }
  } catch {
    return undefined;
  }
  return undefined; // certificates only: a truststore, public
}

const TOR_SECRET = '== ed25519v1-secret: type0 ==';

/** A Tor onion service's `hs_ed25519_secret_key`: a 32-byte header and the 64-byte expanded key. */
function torSecretKey(bytes: Buffer): RawHit | undefined {
  if (bytes.length < 96 || bytes.toString('latin1', 0, TOR_SECRET.length) !== TOR_SECRET) return undefined;
  return { rule: 'tor-onion-secret-key', kind: 'private-key', secret: bytes.subarray(32, 96), start: 0, end: 96, note: 'Tor onion service key' };
}

/**
 * A Kerberos keytab (`krb5.keytab`, `ktutil`, `kadmin ktadd`): 05 01 or 05 02, then entries of a size,
 * a principal (realm and components, counted strings), a timestamp, a key version and the keyblock
 * (encryption type, length, key). The first entry must parse with a key of a real length.
 */
function kerberosKeytab(bytes: Buffer): RawHit | undefined {
  if (bytes.length < 32 || bytes[0] !== 0x05 || (bytes[1] !== 0x01 && bytes[1] !== 0x02)) return undefined;
  const version = bytes[1]!;
  try {
    const size = bytes.readInt32BE(2);
    if (size <= 0 || 6 + size > bytes.length) return undefined;
    let offset = 6;
    const end = 6 + size;
    let components = bytes.readUInt16BE(offset);
    offset += 2;
    if (version === 1) components--; // version 1 counts the realm too
    if (components < 1 || components > 8) return undefined;
    // A counted string of printable ASCII (the realm, a component), skipped.
    const printable = () => {
      const length = bytes.readUInt16BE(offset);
      if (length === 0 || length > 255 || offset + 2 + length > end) throw new RangeError('name');
      for (let index = offset + 2; index < offset + 2 + length; index++) if (bytes[index]! < 0x20 || bytes[index]! > 0x7e) throw new RangeError('name');
      offset += 2 + length;
    };
    printable(); // realm
    for (let index = 0; index < components; index++) printable();
    if (version === 2) offset += 4; // name type
    offset += 4 + 1; // timestamp, key version
    const enctype = bytes.readUInt16BE(offset);
    const keyLength = bytes.readUInt16BE(offset + 2);
    if (![8, 16, 24, 32].includes(keyLength) || enctype === 0 || enctype > 0x100 || offset + 4 + keyLength > end) return undefined;
    const key = bytes.subarray(offset + 4, offset + 4 + keyLength);
    return { rule: 'kerberos-keytab', kind: 'private-key', secret: key, start: 0, end: Math.min(bytes.length, end), note: `Kerberos keytab (encryption type ${enctype})` };
  } catch {
    return undefined;
  }
}

/**
 * Signing and encryption keys stored as small text files, by how the file starts: minisign
 * (`minisign -G`) and signify (`signify -G`) secret keys (an `untrusted comment:` line, then the
 * base64 of `Ed` and the key), Matrix Synapse's `homeserver.signing.key` (`ed25519 a_xyz <seed>`)
 * and BorgBackup key files (`BORG_KEY <repository id>`, then the base64 of the sealed key).
 */
export function textKeyFile(text: string): RawHit | undefined {
  const first = text.charCodeAt(0);
  if (first === 0x75 && text.startsWith('untrusted comment:')) {
    const match = /^untrusted comment:[^\n]*\r?\n([A-Za-z0-9+/]{60,400}={0,2})\r?(?:\n|$)/.exec(text);
    if (!match || !/secret key/i.test(match[0])) return undefined;
    const key = Buffer.from(match[1]!, 'base64');
    if (key.length < 64 || key[0] !== 0x45 || key[1] !== 0x64) return undefined; // 'Ed'
    const tool = key.toString('latin1', 4, 6) === 'B2' ? 'minisign' : 'signify';
    return { rule: `${tool}-secret-key`, kind: 'private-key', secret: key, start: 0, end: match[0].length, note: `${tool} secret key` };
  }
  if (first === 0x65 && text.startsWith('ed25519 ')) {
    const match = /^ed25519 (a_[A-Za-z0-9_]{1,32}) ([A-Za-z0-9+/]{43}=?)\s*(?:\n|$)/.exec(text);
    if (!match) return undefined;
    return { rule: 'synapse-signing-key', kind: 'private-key', secret: Buffer.from(match[2]!, 'base64'), start: 0, end: match[0].length, note: `Matrix homeserver signing key ${match[1]}` };
  }
  // ZeroTier's identity.secret: `<10-hex address>:0:<64-byte public key>:<64-byte private key>` in hex.
  if (text.length >= 270 && text.length <= 276 && text.charCodeAt(10) === 0x3a && text.startsWith(':0:', 10)) {
    const match = /^([0-9a-f]{10}):0:[0-9a-f]{128}:([0-9a-f]{128})\s*$/.exec(text);
    if (!match) return undefined;
    return { rule: 'zerotier-identity-secret', kind: 'private-key', secret: Buffer.from(match[2]!, 'hex'), start: 0, end: match[0].length, note: `ZeroTier identity ${match[1]}` };
  }
  if (first === 0x42 && text.startsWith('BORG_KEY ')) {
    const match = /^BORG_KEY [0-9a-f]{64}\r?\n([A-Za-z0-9+/=\r\n]{100,})/.exec(text);
    if (!match) return undefined;
    return { rule: 'borg-key-file', kind: 'private-key', secret: Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64'), start: 0, end: match[0].length, note: 'BorgBackup key file' };
  }
  return undefined;
}

/**
 * The private key a binary file is, judged from its start (`bytes` holds the file whole, or its first
 * MiB); undefined for anything else. Cheap for the common case: each check looks at a byte or two first.
 */
export function binaryKeyFile(bytes: Buffer): RawHit | undefined {
  const first = bytes[0];
  switch (first) {
    case 0x30:
      return derKey(bytes);
    case 0x28:
      return gpgAgentCanonical(bytes);
    case 0xfe:
    case 0xce:
      return javaKeystore(bytes);
    case 0x3d:
      return torSecretKey(bytes);
    case 0x05:
      return kerberosKeytab(bytes);
    case 0x00:
      return gitCryptKeyFile(bytes);
    default:
      return first !== undefined && first & 0x80 ? pgpSecretKey(bytes) : undefined;
  }
}
