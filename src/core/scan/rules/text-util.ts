/** Small byte and text helpers shared by the scanner; constant tables only (safe in worker threads). */

/** 1 for bytes that appear in text we care about: tab, LF, CR and printable ASCII. */
export const TEXTY = new Uint8Array(256);
TEXTY[9] = 1;
TEXTY[10] = 1;
TEXTY[13] = 1;
for (let byte = 0x20; byte < 0x7f; byte++) TEXTY[byte] = 1;

/** 1 for the characters of tokens and base64 bodies: A-Z a-z 0-9 + / _ - */
export const TOKEN = new Uint8Array(256);
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-') TOKEN[ch.charCodeAt(0)] = 1;

/** Shannon entropy in bits per character. */
export function entropy(value: string): number {
  if (value.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const ch of value) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let bits = 0;
  for (const count of counts.values()) {
    const p = count / value.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

const PLACEHOLDER_WORDS = /example|sample|dummy|placeholder|changeme|change_me|redacted|your[_-]?|replace|fake|x{4,}|X{4,}|\*{3,}|\.{3}|0{8,}|1234567|abcdef|<[^>]*>|\$\{|\{\{/i;

/**
 * Values that are references or templates filled in later, not credentials: substitution markers
 * (`@name@`, `%name%`), environment and file references of the config formats a NixOS repository
 * embeds (`%env(NAME)%` in Symfony, `$__file{/run/secrets/x}` and `$__env{X}` in Grafana, `${VAR}`,
 * `$VAR`, `$(command)`, `%(name)s`, Home Assistant's `!secret name`), template expressions
 * (`{{ var }}`, `<placeholder>`, sops-nix's `<SOPS:…:PLACEHOLDER>`), systemd credential paths (`%d/x`)
 * and SOPS ciphertext (`ENC[…]`).
 */
const TEMPLATE_VALUE =
  /^@[\w.-]+@$|^%[\w.-]+%$|%env\([^)]*\)%|\$\{[^}]*\}|^\$[A-Za-z_]\w*$|\$\([^)]*\)|\{\{.*\}\}|^<[^<>]+>$|\$__(?:file|env|vault)\{|%\([\w.-]+\)s|^!secret\b|^ENC\[|^%d\/|^%\{[^}]+\}$|^![A-Za-z_][\w-]*(?:\s+\S+)?$/;

/** A path (`/run/secrets/x`, `~/`, `./`) or a URL: where a secret is kept, not the secret. */
export function isPathOrUrl(value: string): boolean {
  return /^(?:\/|~\/|\.\/|[a-z][\w+.-]*:\/\/)/i.test(value);
}

/**
 * A password hash, not plaintext: crypt(3) or argon2 (`$6$salt$…`), an LDAP scheme (`{SSHA}…`,
 * `{CRYPT}$6$…`), PostgreSQL's stored forms (`SCRAM-SHA-256$4096:…`, `md5` + 32 hex), or a
 * 13-character DES crypt marked `encrypted` within 300 characters of `at`.
 */
export function isCryptHash(value: string, text: string, at: number): boolean {
  if (/^\$(?:1|2[abxy]?|5|6|y|gy|7|argon2(?:id|i|d)?|scrypt|pbkdf2[\w-]*|sha1|md5)\$/.test(value)) return true;
  if (/^\{[A-Z][A-Z0-9-]*\}\S{8,}$/.test(value) || /^SCRAM-SHA-256\$\d+:/.test(value) || /^md5[0-9a-f]{32}$/.test(value)) return true;
  return /^[./A-Za-z0-9]{13}$/.test(value) && /encrypted/.test(text.slice(at, at + 300));
}

/** Whether [start, end) overlaps a span already found (a rule that goes by a name yields to the others). */
export function overlapsAny(spans: readonly { start: number; end: number }[], start: number, end: number): boolean {
  return spans.some((span) => span.start < end && span.end > start);
}

/** The words of a config key's name, lowercased: snake, kebab, dotted and camel case (`dbPassword` → db, password). */
export function nameWords(name: string): string[] {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase().split(/[._-]+/);
}

/**
 * The starts of the lines of `text` that hold one of `needles`, in text order, each once.
 * `candidate`, when given, is asked about each occurrence of a needle (at `at`): a line is taken
 * only for an occurrence it accepts, so it must accept every occurrence a match can hold (a superset).
 */
export function needleLines(text: string, needles: readonly string[], candidate?: (text: string, at: number, needle: string) => boolean): number[] {
  const starts: number[] = [];
  for (const needle of needles) {
    for (let at = text.indexOf(needle); at !== -1; ) {
      if (candidate && !candidate(text, at, needle)) {
        at = text.indexOf(needle, at + 1);
        continue;
      }
      starts.push(text.lastIndexOf('\n', at) + 1);
      const end = text.indexOf('\n', at + needle.length);
      if (end === -1) break;
      at = text.indexOf(needle, end);
    }
  }
  if (starts.length > 1) starts.sort((a, b) => a - b);
  let kept = 0;
  for (let index = 0; index < starts.length; index++) if (index === 0 || starts[index] !== starts[index - 1]) starts[kept++] = starts[index]!;
  starts.length = kept;
  return starts;
}

/** The matches of `pattern` (global, each within one line) on the lines starting at `starts`, `index` into `text`. */
export function* matchesOnLines(text: string, starts: readonly number[], pattern: RegExp): Generator<RegExpExecArray> {
  for (const start of starts) {
    const newline = text.indexOf('\n', start);
    const line = text.slice(start, newline === -1 ? text.length : newline);
    pattern.lastIndex = 0;
    for (let match = pattern.exec(line); match; match = pattern.exec(line)) {
      if (match[0].length === 0) pattern.lastIndex++;
      match.index += start;
      yield match;
    }
  }
}

/**
 * The matches of `pattern` (global and multiline, each match within one line: `^…$` with no `\n`
 * in between) that lie on a line of `text` holding one of `needles` (see needleLines), in text
 * order: the matches a run over all of `text` gives, when every match holds a needle, without the
 * regex reading the lines that cannot match (most of a binary's strings or a long file).
 */
export function matchingLines(
  text: string,
  pattern: RegExp,
  needles: readonly string[],
  candidate?: (text: string, at: number, needle: string) => boolean,
): Generator<RegExpExecArray> {
  return matchesOnLines(text, needleLines(text, needles, candidate), pattern);
}

export function isTemplateValue(value: string): boolean {
  return TEMPLATE_VALUE.test(value);
}

/**
 * Values that describe the secret instead of being one, as documentation and sample configs write
 * them: lowercase words only, one of which names a secret (`super-secret-password`,
 * `mynickserv_key`, `my_password`, `token-goes-here`).
 */
const DESCRIPTIVE_VALUE = /^[a-z]+(?:[-_ ][a-z]+)*$/;
const SECRET_WORD = /pass(?:word|phrase)?|secret|token|key|here$|^(?:my|your)/;

export function isDescriptivePlaceholder(value: string): boolean {
  return DESCRIPTIVE_VALUE.test(value) && SECRET_WORD.test(value);
}

/**
 * True when a candidate value is a placeholder rather than a credential: known example words,
 * long runs of one character, or too little entropy for a random value of that length.
 */
export function looksLikePlaceholder(value: string, minEntropy = 3): boolean {
  if (PLACEHOLDER_WORDS.test(value)) return true;
  if (/(.)\1{5,}/.test(value)) return true;
  return entropy(value) < minEntropy;
}

/** Fraction of bytes that are TEXTY. */
export function textyRatio(bytes: Uint8Array, limit = bytes.length): number {
  const end = Math.min(limit, bytes.length);
  if (end === 0) return 1;
  let texty = 0;
  for (let index = 0; index < end; index++) texty += TEXTY[bytes[index]!]!;
  return texty / end;
}

/** Standard CRC-32 (IEEE), as GitHub uses for token checksums. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(text: string): number {
  let crc = 0xffffffff;
  for (let index = 0; index < text.length; index++) crc = CRC_TABLE[(crc ^ text.charCodeAt(index)) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Base62 of a 32-bit number, left-padded with '0' to `width`. */
export function base62(value: number, width = 6): string {
  let out = '';
  let rest = value;
  do {
    out = BASE62[rest % 62]! + out;
    rest = Math.floor(rest / 62);
  } while (rest > 0);
  return out.padStart(width, '0');
}

/** Counts '\n' in text[from, to). */
export function countNewlines(text: string, from: number, to: number): number {
  let lines = 0;
  let index = text.indexOf('\n', from);
  while (index !== -1 && index < to) {
    lines++;
    index = text.indexOf('\n', index + 1);
  }
  return lines;
}

/** Printable runs of binary bytes, joined by NUL into one string, with a map back to byte offsets. */
export interface Segments {
  text: string;
  /** Start of each run in `text`, ascending. */
  textStarts: number[];
  /** Byte offset of each run in the input. */
  byteStarts: number[];
}

/** The buffer the runs are gathered in, reused (a thread scans one file at a time). */
let gathered = Buffer.allocUnsafe(64 * 1024);

/**
 * Extracts printable runs of at least `minLength` bytes (like strings(1)) so the text rules can skip
 * the binary parts of a file; NUL joins the runs because no rule matches across it. A skip search,
 * as in `hasBase64Run`: the byte `minLength - 1` past the earliest place a run could start is read
 * first, and a byte that is not printable moves that place past itself, so the binary parts of a
 * file (most of an ELF file) are read one byte in `minLength`. The runs are copied into one buffer
 * and decoded once.
 */
export function printableSegments(bytes: Uint8Array, minLength = 8): Segments {
  const input = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const textStarts: number[] = [];
  const byteStarts: number[] = [];
  const length = input.length;
  let written = 0;
  let start = 0; // the earliest place a run may start
  for (let probe = minLength - 1; probe < length; probe = start + minLength - 1) {
    let index = probe;
    while (index >= start && TEXTY[input[index]!] === 1) index--;
    if (index >= start) {
      start = index + 1; // no run can cover a byte that is not printable
      continue;
    }
    // input[start..probe] is printable, and input[start - 1] is not (or start is 0): a run.
    let end = probe + 1;
    while (end < length && TEXTY[input[end]!] === 1) end++;
    if (gathered.length < written + (end - start) + 1) {
      const grown = Buffer.allocUnsafe(Math.max(gathered.length * 2, written + (end - start) + 1));
      gathered.copy(grown, 0, 0, written);
      gathered = grown;
    }
    textStarts.push(written);
    byteStarts.push(start);
    written += input.copy(gathered, written, start, end);
    gathered[written++] = 0;
    start = end + 1;
  }
  const text = written === 0 ? '' : gathered.toString('latin1', 0, written - 1);
  // A file with a large text part would keep a large buffer alive: let it go.
  if (gathered.length > 16 * 1024 * 1024) gathered = Buffer.allocUnsafe(64 * 1024);
  return { text, textStarts, byteStarts };
}

/** Maps an offset in `segments.text` back to a byte offset. */
export function segmentOffset(segments: Segments, textOffset: number): number {
  let low = 0;
  let high = segments.textStarts.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >>> 1;
    if (segments.textStarts[middle]! <= textOffset) low = middle;
    else high = middle - 1;
  }
  return (segments.byteStarts[low] ?? 0) + (textOffset - (segments.textStarts[low] ?? 0));
}
