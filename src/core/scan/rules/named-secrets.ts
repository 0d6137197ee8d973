/**
 * Secrets written to a file of their own, found by the file's name. The operator's policy's first
 * example of a leak, `environment.etc."restic-password".text = "…";` (with hunter2 there), puts the
 * password into `/nix/store/…-etc-restic-password`, world-readable and on every image built from
 * the store. Nothing in the password says what it is; the name the file is given does.
 *
 * Two views of the same leak:
 * - in Nix source, a literal given to a file named like a secret: `environment.etc."NAME".text`,
 *   `home.file."NAME".text`, `xdg.configFile."NAME" = { text = …; }`, `pkgs.writeText "NAME" …`,
 *   `pkgs.writeTextDir "dir/NAME" …` and `builtins.toFile "NAME" …` (`nixStoreSecretRule`, rule
 *   `nix-store-secret`, run on `.nix` files);
 * - in a store, an image or a folder, a file named like a secret that holds one line that looks
 *   like one (`secretFileKind` and `looksLikeSecretValue`, which file-scanner.ts applies as rule
 *   `secret-named-file`).
 */
import { isRegexSpace } from './literals.js';
import type { RawHit } from './rules.js';
import { looksLikeToken } from './service-rules.js';
import { isCryptHash, isDescriptivePlaceholder, isPathOrUrl, isTemplateValue, looksLikePlaceholder, nameWords, overlapsAny } from './text-util.js';

/** What a file's name says it holds. */
export type SecretFileKind = 'plaintext-password' | 'service-token';

/** Not `passwd`: `/etc/passwd` (one line in a minimal initrd) and PAM's `passwd` are not secrets. */
const PASSWORD_WORDS = new Set(['password', 'passphrase', 'pass', 'pw', 'pwd', 'psk']);
const TOKEN_WORDS = new Set(['token', 'secret', 'apikey', 'secretkey']);
/** Words that make a name about a secret rather than the secret (`password-policy`, `token-file`, `api-token-id`). */
const NOT_WORDS = new Set([
  'file', 'path', 'hash', 'hashed', 'policy', 'auth', 'authentication', 'conf', 'config', 'cfg', 'example', 'sample', 'template',
  'reset', 'change', 'prompt', 'length', 'public', 'pub', 'id', 'user', 'username', 'url', 'type', 'validator', 'store', 'command',
  'cmd', 'script', 'helper', 'dialog', 'symbolic', 'icon', 'test', 'tests', 'dummy', 'fake', 'generator', 'gen', 'less', 'reader', 'manager',
  'agent', 'expiry', 'expires', 'lifetime', 'ttl', 'name', 'env', 'pam', 'bypass', 'through', 'thru', 'word', 'spec', 'format', 'request',
]);
/** A name's extension, when it has one, must be one a secret is kept under (`db-password.txt`, `hf.token`). */
const SECRET_EXTENSIONS = new Set(['txt', 'key', 'secret', 'pass', 'password', 'passwd', 'token', 'apikey', 'psk', 'pw', 'pwd', 'cred']);
/** A Nix store object's `<hash>-` (nix32: no e, o, u, t) and an `etc-` the etc module puts before a file's name. */
const STORE_PREFIX = /^[0-9a-df-np-sv-z]{32}-(?:etc-)?/;

/**
 * What a file named `name` (a basename or a path: its last component counts) holds by its name's
 * words: a password (`restic-password`, `luks.pass`, `wifi-psk`), a token (`hf-token`,
 * `cookie_secret`, `openai.apikey`), or neither.
 */
export function secretFileKind(name: string): SecretFileKind | undefined {
  let base = name.slice(name.lastIndexOf('/') + 1).replace(STORE_PREFIX, '');
  if (base.startsWith('.')) base = base.slice(1);
  const dot = base.lastIndexOf('.');
  if (dot > 0) {
    const extension = base.slice(dot + 1).toLowerCase();
    if (!SECRET_EXTENSIONS.has(extension)) return undefined;
    if (extension === 'txt') base = base.slice(0, dot);
  }
  if (base.length === 0 || base.length > 80) return undefined;
  // nameWords' words, spaces (a file name may hold them) splitting as well.
  const words = nameWords(base.replace(/\s+/g, '.')).filter((word) => word !== '');
  let kind: SecretFileKind | undefined;
  for (let index = 0; index < words.length; index++) {
    const word = words[index]!;
    if (NOT_WORDS.has(word)) return undefined;
    const next = words[index + 1];
    if (PASSWORD_WORDS.has(word)) kind = 'plaintext-password';
    else if (kind === undefined && (TOKEN_WORDS.has(word) || ((word === 'api' || word === 'secret') && next === 'key'))) kind = 'service-token';
  }
  return kind;
}

/**
 * Whether `value`, the whole of what a file named for a `kind` holds, looks like one: one line, not
 * a path, a reference, a template, a hash, a placeholder or a sentence. A password may be short or
 * a few words (`correct horse battery staple`); a token must look random (`looksLikeToken`).
 */
export function looksLikeSecretValue(value: string, kind: SecretFileKind): boolean {
  if (value.length < 6 || value.length > 512 || /[\n\r\0]/.test(value)) return false;
  if (/[^\x20-\x7e]/.test(value) || value.startsWith('#')) return false;
  if (kind === 'service-token') return value.length >= 16 && looksLikeToken(value);
  // A password: a line of its own that is not a config line (`key = value`, `Module: unix`,
  // `@include common-password`, `root:x:0:0::/root:/bin/sh`). A passphrase of words is words.
  if (/\s/.test(value) && !/^[A-Za-z0-9]+(?: [A-Za-z0-9]+){1,7}$/.test(value)) return false;
  if (/=[^=]|:\s|:.*:/.test(value)) return false;
  if (isTemplateValue(value) || isDescriptivePlaceholder(value) || isPathOrUrl(value) || isCryptHash(value, '', 0)) return false;
  if (/^(?:true|false|null|none|yes|no|on|off|unset|empty|disabled?)$/i.test(value) || /^ENC\[|^-----BEGIN/.test(value)) return false;
  return !looksLikePlaceholder(value, 2.5);
}

/** A file's whole content as the one value it holds (one line, maybe with a final newline), or undefined. */
export function soleLine(content: string): string | undefined {
  const value = content.replace(/\r?\n$/, '');
  return value.includes('\n') ? undefined : value;
}

/** A Nix string at `at`: `"…"` (without interpolation) or `''…''` (one line once its indentation is gone). */
function nixStringAt(text: string, at: number): { value: string; start: number } | undefined {
  if (text.charCodeAt(at) === 0x22) {
    let end = at + 1;
    while (end < text.length && end - at < 1024) {
      const code = text.charCodeAt(end);
      if (code === 0x5c) end += 2;
      else if (code === 0x22) break;
      else end++;
    }
    if (text.charCodeAt(end) !== 0x22) return undefined;
    const raw = text.slice(at + 1, end);
    if (raw.includes('${')) return undefined;
    return { value: raw.replace(/\\(.)/g, (_, ch: string) => (ch === 'n' ? '\n' : ch === 't' ? '\t' : ch)), start: at + 1 };
  }
  if (!text.startsWith("''", at)) return undefined;
  const end = text.indexOf("''", at + 2);
  if (end === -1 || end - at > 1024) return undefined;
  const raw = text.slice(at + 2, end);
  if (raw.includes('${')) return undefined;
  const value = raw.trim();
  return { value, start: at + 2 + raw.indexOf(value) };
}

function skipSpace(text: string, at: number): number {
  let cursor = at;
  while (isRegexSpace(text.charCodeAt(cursor))) cursor++;
  return cursor;
}

/** The quoted name that ends (its closing quote) at `close`, or undefined. */
function quotedNameBefore(text: string, close: number): string | undefined {
  if (text.charCodeAt(close) !== 0x22) return undefined;
  const open = text.lastIndexOf('"', close - 1);
  if (open === -1 || close - open > 200) return undefined;
  const name = text.slice(open + 1, close);
  return /[\n$\\]/.test(name) ? undefined : name;
}

/** Holds a word secretFileKind looks for (a superset, tested first: most names, `app.conf`, hold none). */
const SECRET_WORD_HINT = /pass|pw|psk|token|secret|key/i;

function pushHit(text: string, hits: RawHit[], name: string, valueAt: number, how: string): void {
  if (!SECRET_WORD_HINT.test(name)) return;
  const kind = secretFileKind(name);
  if (!kind) return;
  const string = nixStringAt(text, skipSpace(text, valueAt));
  if (!string || !looksLikeSecretValue(string.value, kind)) return;
  const end = string.start + string.value.length;
  if (overlapsAny(hits, string.start, end)) return;
  hits.push({ rule: 'nix-store-secret', kind, secret: string.value, start: string.start, end, note: `${how} "${name}": a world-readable file in the Nix store` });
}

const WRITER = /(?:writeText(?:Dir)?|toFile)[ \t]+"([^"\n$\\]{1,200})"[ \t\n]+/y;
const WRITERS = /writeText|toFile/;

/**
 * `pkgs.writeText "NAME" …`, `pkgs.writeTextDir "dir/NAME" …` and `builtins.toFile "NAME" …` with a
 * literal, NAME named like a secret (see the module comment). One regex test first: most Nix files
 * write no file this way.
 */
export function nixStoreWriterRule(text: string, hits: RawHit[]): void {
  if (!WRITERS.test(text)) return;
  for (const writer of ['writeText', 'toFile']) {
    for (let at = text.indexOf(writer); at !== -1; at = text.indexOf(writer, at + writer.length)) {
      WRITER.lastIndex = at;
      const match = WRITER.exec(text);
      if (match) pushHit(text, hits, match[1]!, WRITER.lastIndex, writer === 'toFile' ? 'builtins.toFile' : 'pkgs.writeText');
    }
  }
}

/**
 * `"NAME".text = …` and `"NAME" = { …; text = …; }` with a literal, NAME named like a secret: `at`
 * is where `text` starts and `equals` where its `=` is (rules.ts finds both in its pass over the
 * `=` of a Nix file).
 */
export function nixTextAttribute(text: string, hits: RawHit[], at: number, equals: number): void {
  const before = text.charCodeAt(at - 1);
  if (before === 0x2e) {
    const name = quotedNameBefore(text, at - 2);
    if (name !== undefined) pushHit(text, hits, name, equals + 1, 'text of');
    return;
  }
  if (/[\w'"-]/.test(String.fromCharCode(before))) return;
  // The attribute set around `text = …`: its opening brace, then `"NAME" =` before it.
  let depth = 0;
  let open = at - 1;
  for (; open >= 0 && at - open < 2000; open--) {
    const code = text.charCodeAt(open);
    if (code === 0x7d) depth++;
    else if (code === 0x7b && depth-- === 0) break;
  }
  if (open < 0 || text.charCodeAt(open) !== 0x7b) return;
  let cursor = open - 1;
  while (cursor > 0 && isRegexSpace(text.charCodeAt(cursor))) cursor--;
  if (text.charCodeAt(cursor) !== 0x3d) return;
  cursor--;
  while (cursor > 0 && isRegexSpace(text.charCodeAt(cursor))) cursor--;
  const name = quotedNameBefore(text, cursor);
  if (name !== undefined) pushHit(text, hits, name, equals + 1, 'text of');
}
