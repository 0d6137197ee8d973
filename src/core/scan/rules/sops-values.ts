/**
 * The operator's SOPS values as exact-match needles. Secrets without a structure (a backup password,
 * a Wi-Fi passphrase) are found only by knowing them: the SOPS files met by a scan or a build are
 * decrypted in memory with the identities already loaded, and each distinctive value (and its common
 * encodings) becomes an operator secret named by file and key path. Values never leave memory: the
 * report counts them and names key paths, never a value.
 *
 * Loaded only when an identity that can decrypt was found (no identity, no cost).
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import path from 'node:path';
import type { DecryptionIdentity } from './operator-secrets.js';
import type { OperatorSecret } from './rules.js';
import { decryptSops, sshEd25519ToAgeIdentity } from './sops-decrypt.js';

/** A file that may be a SOPS file: where it is, and the name reports give it. */
export interface SopsFileRef {
  full: string;
  label: string;
}

/** A file or a folder (searched recursively, symlinks not followed) whose SOPS files to decrypt. */
export interface SopsSource {
  path: string;
  /** How reports name it: a file's label, or the prefix of the files under a folder. */
  label: string;
}

export interface SopsValues {
  /** Needles for the gate: each value and its encodings. */
  secrets: OperatorSecret[];
  /** Distinct values loaded, and the SOPS files they came from. */
  values: number;
  files: number;
  /** `7 values from 2 SOPS files`, for the report's list of what was loaded; undefined when none. */
  summary?: string;
  /** Files that decrypted but did not verify (MAC mismatch, values that do not open). */
  problems: { path: string; message: string }[];
  /** Informational: SOPS files these identities cannot decrypt (their values cannot be matched). */
  notes: { path: string; message: string }[];
}

/** Only files this small are decrypted: SOPS files are small, model weights are not re-read. */
export const SOPS_MAX_BYTES = 1024 * 1024;
const HEAD = 64 * 1024;
const MARKER = Buffer.from('ENC[AES256_GCM,data:');
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
let headBuffer: Buffer | undefined;

/**
 * The content of `file` when it may be a SOPS file (an ENC[AES256_GCM,...] value in its first 64 KiB,
 * and at most SOPS_MAX_BYTES), else undefined. One read of the head into a reused buffer: a tree of
 * thousands of files costs one open/read/close each, a model shard no more than its head.
 */
export function readIfSops(file: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, OPEN_FLAGS);
  } catch {
    return undefined; // the scan itself reports what it cannot read
  }
  try {
    headBuffer ??= Buffer.allocUnsafe(HEAD);
    const read = readSync(fd, headBuffer, 0, HEAD, 0);
    if (read === 0 || headBuffer.subarray(0, read).indexOf(MARKER) === -1) return undefined;
    if (read < HEAD) return Buffer.from(headBuffer.subarray(0, read));
    const stats = fstatSync(fd);
    if (!stats.isFile() || stats.size > SOPS_MAX_BYTES) return undefined;
    const content = Buffer.allocUnsafe(stats.size);
    let filled = headBuffer.copy(content, 0, 0, read);
    while (filled < stats.size) {
      const more = readSync(fd, content, filled, stats.size - filled, filled);
      if (more === 0) break;
      filled += more;
    }
    return content.subarray(0, filled);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** The files under each source (a folder is walked, symlinks are never followed), for `loadSopsValues`. */
export function sopsFilesUnder(sources: readonly SopsSource[]): SopsFileRef[] {
  const out: SopsFileRef[] = [];
  for (const source of sources) {
    let stats;
    try {
      stats = lstatSync(source.path);
    } catch {
      continue;
    }
    if (stats.isFile()) out.push({ full: source.path, label: source.label });
    if (!stats.isDirectory()) continue;
    const pending = [''];
    while (pending.length > 0) {
      const relative = pending.pop()!;
      let entries;
      try {
        entries = readdirSync(path.join(source.path, relative), { withFileTypes: true });
      } catch {
        continue;
      }
      for (const entry of entries) {
        const child = relative ? `${relative}/${entry.name}` : entry.name;
        if (entry.isDirectory()) pending.push(child);
        else if (entry.isFile()) out.push({ full: path.join(source.path, child), label: source.label ? `${source.label}/${child}` : child });
      }
    }
  }
  return out;
}

/** Values too common or too structured to mean anything when found elsewhere. */
const COMMON_WORD =
  /^(?:change[-_ ]?me|password\d*|passw0rd|p@ssw0rd|secret\d*|example|placeholder|default|admin(?:istrator)?|root|letmein|qwerty\w*|0?12345678\d*|hunter2|todo|fixme|redacted|none|null|nil|undefined|true|false|yes|no|on|off|test(?:ing)?|dummy|sample|username|localhost)$/i;
const PLACEHOLDER = /^(?:<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|%[A-Za-z_]+%|(?:example|placeholder|changeme|change-me|dummy|sample|your[-_ ])[\s\S]*)$/i;
const PUBLIC_KEY = /^(?:age1[0-9a-z]{58}|(?:ssh-(?:ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-ssh-ed25519@openssh\.com) AAAA[A-Za-z0-9+/=]+(?: [^\n]*)?)$/;

/** Minimum length of a value worth matching: shorter ones (a port, `on`) would match by accident. */
export const MIN_SOPS_VALUE = 8;

/** True when a decrypted value is worth matching exactly: long, not a number, word or placeholder. */
export function isDistinctive(text: string, type = 'str'): boolean {
  if (type === 'bool' || type === 'int' || type === 'float' || type === 'comment') return false;
  const trimmed = text.trim();
  if (trimmed.length < MIN_SOPS_VALUE) return false;
  if (/^[+-]?\d+(?:\.\d+)?$/.test(trimmed) || /^(.)\1*$/s.test(trimmed)) return false;
  return !COMMON_WORD.test(trimmed) && !PLACEHOLDER.test(trimmed) && !PUBLIC_KEY.test(trimmed);
}

/** Base64 of `bytes` at each of the three alignments it can have inside longer data: the characters that depend on it alone. */
export function base64Fragments(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    out.push(encoded.slice(Math.ceil((shift * 8) / 6), Math.floor(((shift + bytes.length) * 8) / 6)));
  }
  return out;
}

/**
 * The needles for one value: its bytes as the scanner sees text (latin1 view of UTF-8), the decoded
 * string (for UTF-16 text), the trimmed value, base64 at three alignments (and base64url), URL- and
 * JSON-escaped forms. Each carries the key path, never the value, in its note.
 */
export function needlesForValue(plaintext: Buffer, name: string): OperatorSecret[] {
  const note = (encoding?: string) => `the value of ${name}${encoding ? ` (${encoding})` : ''}`;
  const material = `${name}\0${plaintext.toString('latin1')}`;
  const forms = new Map<string, string | undefined>();
  const add = (value: string, encoding?: string) => {
    if (value.length >= MIN_SOPS_VALUE && !forms.has(value)) forms.set(value, encoding);
  };
  const text = plaintext.toString('utf8');
  const trimmed = text.trim();
  const variants = trimmed !== text && isDistinctive(trimmed) ? [text, trimmed] : [text];
  for (const variant of variants) {
    const bytes = Buffer.from(variant, 'utf8');
    add(bytes.toString('latin1'));
    if (/[^\x00-\x7f]/.test(variant)) add(variant);
  }
  for (const variant of variants) {
    for (const fragment of base64Fragments(Buffer.from(variant, 'utf8'))) {
      add(fragment, 'base64');
      if (/[+/]/.test(fragment)) add(fragment.replace(/\+/g, '-').replace(/\//g, '_'), 'base64url');
    }
    add(encodeURIComponent(variant), 'URL-encoded');
    if (variant.includes(' ')) add(encodeURIComponent(variant).replace(/%20/g, '+'), 'form-encoded');
    const json = JSON.stringify(variant).slice(1, -1);
    add(Buffer.from(json, 'utf8').toString('latin1'), 'JSON-escaped');
    add(json.replace(/[^\x00-\x7f]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`), 'JSON-escaped');
  }
  return [...forms].map(([value, encoding]) => ({ value, label: name, kind: 'sops-value', note: note(encoding), material }));
}

/** Age identities from the loaded ones: age keys as they are, ed25519 SSH keys converted like ssh-to-age. */
export function ageIdentities(identities: readonly DecryptionIdentity[]): string[] {
  const out = new Set<string>();
  for (const identity of identities) {
    const converted = identity.kind === 'age' ? identity.text : sshEd25519ToAgeIdentity(identity.text);
    if (converted) out.add(converted);
  }
  return [...out];
}

const plural = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`;

/**
 * Decrypts the SOPS files among `files` (a cheap head check first, see `readIfSops`) with the loaded
 * identities and returns the needles, counts for the report, and per-file problems and notes. Files
 * that are not SOPS files are skipped silently. Call it before anything that may quote a value is
 * scanned: `scanPaths` and `createLeakGate` (option `sopsSources`) do.
 */
export async function loadSopsValues(files: readonly SopsFileRef[], identities: readonly DecryptionIdentity[]): Promise<SopsValues> {
  const result: SopsValues = { secrets: [], values: 0, files: 0, problems: [], notes: [] };
  const keys = ageIdentities(identities);
  if (keys.length === 0) return result;
  const seen = new Set<string>();
  for (const file of files) {
    const content = readIfSops(file.full);
    if (!content) continue;
    let outcome: Awaited<ReturnType<typeof decryptSops>>;
    try {
      outcome = await decryptSops(content.toString('utf8'), keys);
    } catch (error) {
      // Whatever went wrong, the scan goes on: these values are just not known.
      outcome = { status: 'undecryptable', reason: `decryption failed: ${(error as Error).message}` };
    }
    if (outcome.status === 'not-sops') continue;
    if (outcome.status === 'undecryptable') {
      result.notes.push({ path: file.label, message: `SOPS file not decrypted (${outcome.reason}): its values cannot be matched` });
      continue;
    }
    result.files++;
    if (outcome.problems.length > 0) {
      result.problems.push({ path: file.label, message: `SOPS file does not verify: ${outcome.problems.join('; ')}; the values that decrypted are matched all the same` });
    }
    for (const value of outcome.values) {
      if (!isDistinctive(value.plaintext.toString('utf8'), value.type)) continue;
      const key = value.plaintext.toString('latin1');
      if (seen.has(key)) continue; // one value under two keys: matched (and named) once
      seen.add(key);
      result.values++;
      result.secrets.push(...needlesForValue(value.plaintext, `${file.label}: ${value.keyPath}`));
    }
  }
  if (result.files > 0) result.summary = `${plural(result.values, 'value')} from ${plural(result.files, 'SOPS file')}`;
  return result;
}
