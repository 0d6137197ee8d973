/**
 * git-crypt (https://github.com/AGWA/git-crypt), which NixOS configurations use to keep secrets in a
 * public repository: `.gitattributes` lines such as `secrets/** filter=git-crypt diff=git-crypt` make
 * git store those files encrypted, each beginning with the 10 bytes `\0GITCRYPT\0`. In a work tree
 * that was unlocked (`git-crypt unlock`) the same files are plaintext, and an archive built from it
 * would carry them decrypted. So a file that its `.gitattributes` hands to git-crypt, and that does
 * not begin with those bytes, is a finding; and a git-crypt key file (`.git/git-crypt/keys/default`,
 * `git-crypt export-key`), which decrypts every such file, is one wherever it lies.
 *
 * transcrypt (https://github.com/elasticdog/transcrypt) works the same way with its own filter,
 * `filter=crypt` (`crypt-CONTEXT` for a named context): git stores `openssl enc -a` output, base64
 * that begins `U2FsdGVkX1` (`Salted__`), and an unlocked work tree holds plaintext. Its password is
 * in `.git/config` (`[transcrypt] password = …`), which `config-password` reads.
 *
 * Which files git-crypt governs is read as git reads attributes (gitattributes(5)): the patterns of
 * .gitignore without negation, each `.gitattributes` file applying to its own folder and below, and
 * for a path the last line that says anything about `filter` winning, the deepest file's lines after
 * its parents'. Macros (`[attr]name …`, defined in a root `.gitattributes`) are expanded.
 */
import path from 'node:path';
import type { Finding } from '../../types.js';
import type { RawHit } from './rules.js';

/** The first bytes of every file git-crypt encrypted. */
export const GIT_CRYPT_MAGIC = Buffer.from('\0GITCRYPT\0', 'latin1');
/** The first bytes of a git-crypt key file (format 2, git-crypt 0.4 and later). */
const GIT_CRYPT_KEY_MAGIC = Buffer.from('\0GITCRYPTKEY', 'latin1');

/** The first bytes of every file transcrypt encrypted: `Salted__` (openssl's salted header) in base64. */
const TRANSCRYPT_MAGIC = 'U2FsdGVkX1';

function startsWith(bytes: Uint8Array, magic: Uint8Array): boolean {
  if (bytes.length < magic.length) return false;
  for (let index = 0; index < magic.length; index++) if (bytes[index] !== magic[index]) return false;
  return true;
}

const TRANSCRYPT_BYTES = Buffer.from(TRANSCRYPT_MAGIC, 'latin1');

/** Whether `bytes` begin as git-crypt's or transcrypt's ciphertext. */
export function isGitCryptCiphertext(bytes: Uint8Array): boolean {
  return startsWith(bytes, GIT_CRYPT_MAGIC) || startsWith(bytes, TRANSCRYPT_BYTES);
}

/** Whether a `filter` attribute's value hands a file to git-crypt (`git-crypt`, `git-crypt-KEYNAME`) or transcrypt (`crypt`, `crypt-CONTEXT`). */
export function isEncryptingFilter(value: string): boolean {
  return value === 'git-crypt' || value.startsWith('git-crypt-') || value === 'crypt' || value.startsWith('crypt-');
}

/**
 * A git-crypt key file: the magic, a format version, then fields (id, length, value), the AES and
 * HMAC keys among them. The whole file is the secret.
 */
export function gitCryptKeyFile(bytes: Buffer): RawHit | undefined {
  if (bytes.length < GIT_CRYPT_KEY_MAGIC.length + 8 || !bytes.subarray(0, GIT_CRYPT_KEY_MAGIC.length).equals(GIT_CRYPT_KEY_MAGIC)) return undefined;
  return { rule: 'git-crypt-key', kind: 'private-key', secret: bytes, start: 0, end: bytes.length, note: 'a git-crypt key file: it decrypts every file the repository keeps with git-crypt' };
}

/** What one `.gitattributes` line says about `filter` for the paths its pattern matches. */
interface FilterLine {
  match: (relative: string) => boolean;
  /** The filter's value (`git-crypt`), or undefined when the line unsets or resets it. */
  value: string | undefined;
}

/** One `.gitattributes` file: the folder it lies in ('' for the root) and its lines about `filter`. */
export interface GitAttributes {
  dir: string;
  lines: FilterLine[];
  /** `.git/info/attributes`: applied after every `.gitattributes` of its tree. */
  last?: boolean;
}

/** The first field of a line: a C-quoted pattern (`"a b/*"`) or the text up to the first space. */
function splitPattern(line: string): { pattern: string; rest: string } | undefined {
  if (!line.startsWith('"')) {
    const space = line.search(/[ \t]/);
    return space === -1 ? { pattern: line, rest: '' } : { pattern: line.slice(0, space), rest: line.slice(space) };
  }
  let pattern = '';
  for (let index = 1; index < line.length; index++) {
    const ch = line[index]!;
    if (ch === '"') return { pattern, rest: line.slice(index + 1) };
    if (ch === '\\' && index + 1 < line.length) {
      const next = line[++index]!;
      pattern += next === 't' ? '\t' : next === 'n' ? '\n' : next;
    } else pattern += ch;
  }
  return undefined; // an unterminated quote: git ignores the line
}

/**
 * A wildmatch pattern (gitignore(5) syntax, `*` and `?` never crossing `/`) as a regular expression
 * over the whole of a relative path. `**` matches any folders where it stands between slashes (or
 * at either end); elsewhere it is a `*`.
 */
function wildmatchSource(pattern: string): string {
  let source = '';
  for (let index = 0; index < pattern.length; index++) {
    const ch = pattern[index]!;
    if (ch === '*') {
      let stars = 1;
      while (pattern[index + stars] === '*') stars++;
      const before = index === 0 || pattern[index - 1] === '/';
      const after = index + stars === pattern.length || pattern[index + stars] === '/';
      if (stars >= 2 && before && after) {
        if (index + stars === pattern.length) {
          source += '.*'; // `a/**`: everything inside a (and `**` alone: everything)
        } else {
          source += '(?:.*/)?'; // `**/b`, `a/**/b`: zero or more folders
          index++; // the slash after the stars
        }
      } else source += '[^/]*';
      index += stars - 1;
    } else if (ch === '?') {
      source += '[^/]';
    } else if (ch === '[') {
      const close = classEnd(pattern, index);
      if (close === -1) {
        source += '\\[';
        continue;
      }
      let body = pattern.slice(index + 1, close);
      let negated = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negated = true;
        body = body.slice(1);
      }
      body = classBody(body);
      source += negated ? `[^/${body}]` : `(?!/)[${body}]`;
      index = close;
    } else if (ch === '\\' && index + 1 < pattern.length) {
      source += escapeRegex(pattern[++index]!);
    } else {
      source += escapeRegex(ch);
    }
  }
  return source;
}

/** Where the bracket expression opened at `open` closes (`]` first in it is literal, `[:alpha:]` inside), or -1. */
function classEnd(pattern: string, open: number): number {
  let index = open + 1;
  if (pattern[index] === '!' || pattern[index] === '^') index++;
  if (pattern[index] === ']') index++;
  for (; index < pattern.length; index++) {
    if (pattern[index] === '\\') index++;
    else if (pattern[index] === '[' && pattern[index + 1] === ':') {
      const close = pattern.indexOf(':]', index + 2);
      if (close !== -1) index = close + 1;
    } else if (pattern[index] === ']') return index;
  }
  return -1;
}

/** wildmatch's character classes, as ranges of a regular expression's class. */
const POSIX_CLASSES: Record<string, string> = {
  alnum: 'A-Za-z0-9',
  alpha: 'A-Za-z',
  blank: ' \\t',
  cntrl: '\\x00-\\x1f\\x7f',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-`{-~',
  space: ' \\t\\n\\r\\f\\v',
  upper: 'A-Z',
  xdigit: '0-9A-Fa-f',
};

/** A bracket expression's inside as a regular expression class's: escapes taken, `[:name:]` expanded. */
function classBody(body: string): string {
  let out = '';
  for (let index = 0; index < body.length; index++) {
    const ch = body[index]!;
    if (ch === '[' && body[index + 1] === ':') {
      const close = body.indexOf(':]', index + 2);
      const name = close === -1 ? undefined : body.slice(index + 2, close);
      if (name !== undefined && POSIX_CLASSES[name] !== undefined) {
        out += POSIX_CLASSES[name];
        index = close + 1;
        continue;
      }
    }
    // An escaped character is itself (`\\-` is no range); a bare `-` keeps its meaning.
    const escaped = ch === '\\' && index + 1 < body.length;
    const literal = escaped ? body[++index]! : ch;
    out += (escaped ? /[\\\]^[-]/ : /[\\\]^[]/).test(literal) ? `\\${literal}` : literal;
  }
  return out;
}

function escapeRegex(ch: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(ch) ? `\\${ch}` : ch;
}

/** A line's pattern as a test of a path relative to the attributes file's folder. */
function patternMatcher(pattern: string): ((relative: string) => boolean) | undefined {
  // A pattern for folders only (`secrets/`) never gives a file its attributes.
  if (pattern.endsWith('/') || pattern === '') return undefined;
  const anchored = pattern.startsWith('/') || pattern.slice(0, -1).includes('/');
  const body = pattern.startsWith('/') ? pattern.slice(1) : pattern;
  const regex = new RegExp(`^${wildmatchSource(body)}$`);
  if (anchored) return (relative) => regex.test(relative);
  // No slash: the pattern names a file at any depth.
  return (relative) => regex.test(relative.slice(relative.lastIndexOf('/') + 1));
}

/** Macros: `[attr]name attr…` lines (git honours them in a root `.gitattributes` only). */
type Macros = Map<string, string[]>;

/** Parses a `.gitattributes` file: its lines that set, unset or reset `filter` (directly or by a macro). */
export function parseGitAttributes(text: string, dir: string, macros: Macros = new Map()): GitAttributes {
  const lines: FilterLine[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '').replace(/^[ \t]+/, '');
    if (line === '' || line.startsWith('#')) continue;
    const split = splitPattern(line);
    if (!split) continue;
    const attributes = split.rest.trim().split(/[ \t]+/).filter(Boolean);
    if (split.pattern.startsWith('[attr]')) {
      if (dir === '') macros.set(split.pattern.slice('[attr]'.length), attributes);
      continue;
    }
    // Negative patterns are refused by git.
    if (split.pattern.startsWith('!')) continue;
    const filter = filterOf(attributes, macros, 0);
    if (filter === null) continue;
    const match = patternMatcher(split.pattern);
    if (match) lines.push({ match, value: filter });
  }
  return { dir, lines };
}

/**
 * What a line's attributes say about `filter`: its value, undefined when unset (`-filter`), reset
 * (`!filter`) or set without a value, null when they do not mention it. The last mention wins.
 */
function filterOf(attributes: readonly string[], macros: Macros, depth: number): string | undefined | null {
  let said: string | undefined | null = null;
  for (const attribute of attributes) {
    if (attribute === 'filter' || attribute === '-filter' || attribute === '!filter') said = undefined;
    else if (attribute.startsWith('filter=')) said = attribute.slice('filter='.length);
    else if (depth < 8 && /^[^-!=][^=]*$/.test(attribute) && macros.has(attribute)) {
      const inner = filterOf(macros.get(attribute)!, macros, depth + 1);
      if (inner !== null) said = inner;
    }
  }
  return said;
}

/** Whether a path names a repository's own attributes file, `.git/info/attributes`. */
function isInfoAttributesFile(file: string): boolean {
  return file === '.git/info/attributes' || file.endsWith('/.git/info/attributes');
}

/**
 * Whether a path (from a tree's top, `/`-separated) names a `.gitattributes` file, or the
 * `.git/info/attributes` of a work tree, which git reads after (above) all of them.
 */
export function isGitAttributesFile(file: string): boolean {
  return file === '.gitattributes' || file.endsWith('/.gitattributes') || isInfoAttributesFile(file);
}

/** Whether a path lies in a repository's `.git` folder, which attributes never govern. */
export function isInGitDir(file: string): boolean {
  return file.startsWith('.git/') || file.includes('/.git/');
}

/** The order git applies attributes files in: the shallower first, a work tree's `.git/info/attributes` after all. */
const applyOrder = (file: GitAttributes): number => (file.last ? 1e9 : 0) + file.dir.length;

/**
 * The `.gitattributes` files of one tree, each given by its path from the tree's top, as rules by
 * folder; those that never mention a filter are left out. The root's file comes first, so its macros
 * are known to the others.
 */
export function gitAttributesOf(files: { path: string; text: string }[]): GitAttributes[] {
  const macros: Macros = new Map();
  const folders = files
    .filter((file) => isGitAttributesFile(file.path) && file.text.includes('filter'))
    .map((file) => {
      const last = isInfoAttributesFile(file.path);
      // `.git/info/attributes` governs the work tree `.git` lies in.
      const dir = last ? file.path.slice(0, -'/.git/info/attributes'.length) : path.posix.dirname(file.path);
      return { dir: dir === '.' ? '' : dir, text: file.text, last, lines: [] };
    })
    .sort((a, b) => applyOrder(a) - applyOrder(b));
  return folders.map((file) => ({ ...parseGitAttributes(file.text, file.dir, macros), ...(file.last ? { last: true } : {}) }));
}

/**
 * Whether git-crypt (or transcrypt) encrypts the file at `path` (relative to the tree's root,
 * `/`-separated): the filter its attributes give it is `git-crypt`, or `git-crypt-KEYNAME` for a
 * named key (transcrypt: `crypt`, `crypt-CONTEXT`).
 */
export function isGitCryptPath(attributes: readonly GitAttributes[], path: string): boolean {
  let value: string | undefined;
  // Shallower files first, each line in order: the last line that matches decides.
  if (isInGitDir(path)) return false;
  const applicable = attributes.filter((file) => file.dir === '' || path.startsWith(`${file.dir}/`)).sort((a, b) => applyOrder(a) - applyOrder(b));
  for (const file of applicable) {
    const relative = file.dir === '' ? path : path.slice(file.dir.length + 1);
    for (const line of file.lines) if (line.match(relative)) value = line.value;
  }
  return value !== undefined && isEncryptingFilter(value);
}

/** The note of a file git-crypt should hold encrypted and that is plaintext. */
export const GIT_CRYPT_PLAINTEXT_NOTE =
  '.gitattributes gives it to git-crypt (filter=git-crypt) or transcrypt (filter=crypt) but it is plaintext, not ciphertext: the work tree was unlocked. Run `git-crypt lock` (transcrypt: `transcrypt --flush-credentials`) before building, or move the secret to sops-nix or agenix';

/**
 * The finding for a file git-crypt should hold encrypted and that is plaintext. Its fingerprint is
 * the content's (`unencrypted`'s digest), under this rule's name.
 */
export function gitCryptPlaintextFinding(filePath: string, inner: string | undefined, contentFingerprint: string): Finding {
  return {
    path: filePath,
    ...(inner !== undefined ? { inner } : {}),
    kind: 'git-crypt-plaintext',
    rule: 'git-crypt-plaintext',
    fingerprint: `git-crypt-plaintext:${contentFingerprint.slice(contentFingerprint.indexOf(':') + 1)}`,
    note: GIT_CRYPT_PLAINTEXT_NOTE,
  };
}
