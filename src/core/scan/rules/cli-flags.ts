/**
 * Credentials given on a command line: `--password=…`, `--token …`, `-apikey …`, `--authkey …`
 * (a Headscale pre-auth key to `tailscale up`), `--master-key=…` (Meilisearch), `redis-server
 * --requirepass …`, curl's `-u user:password` (`--user`; on a line that runs curl), `redis-cli -a …`, openssl's
 * `-passin pass:…`, and the list forms of the same (`[ "--token" "…" ]` in Nix, `"--token", "…"`
 * in JSON and YAML). They land where NixOS puts a service's command: a unit's `ExecStart=`, the
 * scripts `writeShellScript` and a service's `script` write into the store, and the `.nix` source
 * that says so (`ExecStart = "${pkg}/bin/agent --token …"`), all of them world-readable.
 *
 * A flag's name says little on its own (`--ask-pass site.yml`, `--password-file PATH`,
 * `--token TOKEN` in a man page), so:
 * - the name ends at the password or token word, then `=`, blanks or a list's quotes follow;
 * - a name that asks, prompts, shows, generates or negates (`--no-password`, `--ask-pass`,
 *   `--generate-secret`) takes no value;
 * - the value is a literal: not a variable, substitution, path, placeholder (`PASSWORD`, `<token>`,
 *   `xxxxxx`) or openssl's `env:`/`file:`/`fd:`/`stdin` forms;
 * - a token must look random (`looksLikeToken`, through `looksLikeSecretValue`); a password given
 *   after blanks (where the next word may be prose or an argument of another kind) must mix letters
 *   and digits, and must not be named like a file;
 * - curl's `-u`/`--user` counts only on a line that runs curl, and its value is `user:password`;
 *   redis-cli's (valkey-cli's) `-a` only on a line that runs it.
 */
import { looksLikeSecretValue } from './named-secrets.js';
import type { RawHit } from './rules.js';
import { overlapsAny } from './text-util.js';

/** A flag's name from its first `-`: words joined by `-`, the last a credential word, and what follows it. */
const FLAG = /--?((?:[a-z0-9]+-)*?)(password|passwd|passphrase|pass|passin|passout|requirepass|masterauth|u|user|a|token|api-?key|auth-?key|master-?key|encryption-?key|secret|secret-?key|secret-access-key)(?==|[ \t]|["'][ \t]*,?[ \t]*["'])/y;

const PASSWORD_WORDS = new Set(['password', 'passwd', 'passphrase', 'pass', 'passin', 'passout', 'requirepass', 'masterauth', 'u', 'user', 'a']);

/** Words before the credential word that make the flag a switch or a question, not a value. */
const SWITCH_WORDS = new Set([
  'no', 'ask', 'prompt', 'show', 'print', 'generate', 'gen', 'create', 'list', 'require', 'required', 'reset', 'revoke', 'delete', 'remove',
  'rm', 'read', 'use', 'with', 'without', 'check', 'verify', 'validate', 'skip', 'disable', 'enable', 'allow', 'store', 'save', 'keep',
  'forget', 'clear', 'hash', 'hashed', 'min', 'max', 'length', 'policy', 'header', 'env', 'file', 'from', 'cmd', 'command', 'helper',
  'type', 'name', 'id', 'empty', 'random', 'stdin', 'interactive', 'change', 'expire', 'expiry', 'ttl', 'lifetime', 'bypass',
]);

/** Words that make a value an example of one (`password123`, `my-secret-token`, `changeme1`, `alice_pw` in a NixOS test). */
const EXAMPLE_WORDS = /pass(?:wor)?d|secret|token|example|changeme|sample|dummy|test|(?:^|[_-])pw(?:$|[_-])/i;

/**
 * A metavariable (`--password=PASSWORD`, `--token=JETON`, `--passwd USER-ID`), an example that says
 * what it is (`password123`), or a manual page's roff escape (`bar\*(Aq`): documentation's values.
 */
export function isExampleValue(value: string): boolean {
  return /^[A-Z][A-Z0-9_-]*$/.test(value) || EXAMPLE_WORDS.test(value) || value.includes('\\');
}

/** Characters that end an unquoted shell word (or a Nix string around the command). */
const WORD_END = /[\s"'`;|&<>()\\]/;

/** The literal value at `at` after the flag's name, with where it starts; undefined when there is none. */
function valueAt(text: string, at: number): { value: string; start: number; spaced: boolean } | undefined {
  let index = at;
  let spaced = false;
  const code = text.charCodeAt(index);
  if (code === 0x3d) index++;
  else if (code === 0x22 || code === 0x27) {
    // A list: the flag's own closing quote, maybe a comma, then the value's opening quote.
    index++;
    while (text.charCodeAt(index) === 0x20 || text.charCodeAt(index) === 0x09 || text.charCodeAt(index) === 0x2c) index++;
    const quote = text[index];
    if (quote !== '"' && quote !== "'") return undefined;
    spaced = true;
    index++;
    const end = text.indexOf(quote, index);
    if (end === -1 || end - index > 256 || text.slice(index, end).includes('\n')) return undefined;
    return { value: text.slice(index, end), start: index, spaced };
  } else {
    spaced = true;
    while (text.charCodeAt(index) === 0x20 || text.charCodeAt(index) === 0x09) index++;
  }
  const first = text[index];
  if (first === '"' || first === "'") {
    const end = text.indexOf(first, index + 1);
    if (end === -1 || end - index > 257) return undefined;
    const value = text.slice(index + 1, end);
    // Escaped quotes (`\"…\"` inside a Nix string) close here too: the value is what they hold.
    return value.includes('\n') ? undefined : { value: value.endsWith('\\') ? value.slice(0, -1) : value, start: index + 1, spaced };
  }
  let end = index;
  while (end < text.length && end - index <= 256 && !WORD_END.test(text[end]!)) end++;
  return { value: text.slice(index, end), start: index, spaced };
}

function credentialValue(value: string, word: string, spaced: boolean): string | undefined {
  let literal = value;
  // openssl's `-pass`, `-passin`, `-passout`: `pass:VALUE` is the password, `env:`, `file:`, `fd:` and `stdin` say where it is.
  if (word === 'pass' || word === 'passin' || word === 'passout') {
    if (/^(?:env|file|fd):|^stdin$/.test(literal)) return undefined;
    if (literal.startsWith('pass:')) literal = literal.slice(5);
  }
  if (literal.length < 6 || /^[-$%@<{[/~.*]/.test(literal) || literal.includes('${') || literal.includes('$(')) return undefined;
  if (isExampleValue(literal)) return undefined;
  if (!PASSWORD_WORDS.has(word)) return looksLikeSecretValue(literal, 'service-token') ? literal : undefined;
  if (!looksLikeSecretValue(literal, 'plaintext-password')) return undefined;
  // After blanks the next word may be another argument (or prose: `--password options.`): a password mixes letters and digits, and is no file name.
  if (spaced && (!/[A-Za-z]/.test(literal) || !/[0-9]/.test(literal) || /^[\w-]+\.[A-Za-z]{1,5}$/.test(literal))) return undefined;
  return literal;
}

/** The line before `at`, up to 4 KiB of it: for the flags that count only on a line that runs their tool. */
function lineBefore(text: string, at: number): string {
  const before = text.slice(Math.max(0, at - 4096), at);
  return before.slice(before.lastIndexOf('\n') + 1);
}

/**
 * Passwords and tokens given to a command-line flag (see above); `hits` holds what other rules found.
 * `dashes` are where a `-` comes before a credential word: the literal sweep notes them
 * (`swept.credentialDashes` in literals.ts), as it visits every `-` anyway.
 */
export function cliFlagRule(text: string, hits: RawHit[], dashes: readonly number[]): void {
  const seen = new Set<number>();
  for (const at of dashes) {
    // The flag starts where its run of lowercase words and dashes starts, after neither a word character nor a dot.
    let start = at;
    while (start > 0 && at - start < 128 && /[a-z0-9-]/.test(text[start - 1]!)) start--;
    while (text.charCodeAt(start) !== 0x2d && start < at) start++;
    // A flag in roff (`\-\-password=…`) is a manual page's, and its values are examples.
    if (seen.has(start) || (start > 0 && /[\w.\\]/.test(text[start - 1]!))) continue;
    seen.add(start);
    FLAG.lastIndex = start;
    const match = FLAG.exec(text);
    if (!match) continue;
    const prefix = match[1]!.split('-').filter(Boolean);
    const word = match[2]!;
    if (prefix.some((part) => SWITCH_WORDS.has(part))) continue;
    const found = valueAt(text, FLAG.lastIndex);
    if (!found) continue;
    let value = found.value;
    if (word === 'a') {
      // redis-cli's (valkey-cli's) `-a password`, on a line that runs it: a lone `-a` is any tool's switch.
      if (match[0] !== '-a' || !found.spaced || !/\b(?:redis|valkey)-cli\b/.test(lineBefore(text, start))) continue;
    } else if (word === 'u' || word === 'user') {
      // curl's `-u user:password` (`--user`), on a line that runs curl: the password after the first colon.
      const colon = value.indexOf(':');
      if (match[1] !== '' || colon < 1 || !/\bcurl\b/.test(lineBefore(text, start))) continue;
      value = value.slice(colon + 1);
    }
    const literal = credentialValue(value, word, found.spaced && word !== 'u' && word !== 'user' && word !== 'a');
    if (literal === undefined) continue;
    const valueStart = found.start + found.value.lastIndexOf(literal);
    const end = valueStart + literal.length;
    if (overlapsAny(hits, valueStart, end)) continue;
    const flag = match[0];
    const password = PASSWORD_WORDS.has(word);
    hits.push({
      rule: password ? 'cli-password' : 'cli-token',
      kind: password ? 'plaintext-password' : 'service-token',
      secret: literal,
      start: valueStart,
      end,
      note: `given on a command line (${flag})`,
    });
  }
}
