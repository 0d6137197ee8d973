/**
 * The skip search that gathers the printable runs of binary files must give exactly what reading
 * every byte gives (the straightforward loop below is the oracle), for every run length. The line
 * search's candidate checks must keep every line a rule's pattern matches on.
 */
import { randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SQL_PASSWORD_SEARCH } from '../../../../src/core/scan/rules/rules.js';
import { CONFIG_TOKEN_SEARCH } from '../../../../src/core/scan/rules/service-rules.js';
import { matchingLines, printableSegments, TEXTY } from '../../../../src/core/scan/rules/text-util.js';

function everyByte(bytes: Buffer, minLength: number) {
  const parts: string[] = [];
  const textStarts: number[] = [];
  const byteStarts: number[] = [];
  let textLength = 0;
  let index = 0;
  while (index < bytes.length) {
    while (index < bytes.length && !TEXTY[bytes[index]!]) index++;
    const start = index;
    while (index < bytes.length && TEXTY[bytes[index]!]) index++;
    if (index - start >= minLength) {
      textStarts.push(textLength);
      byteStarts.push(start);
      parts.push(bytes.toString('latin1', start, index));
      textLength += index - start + 1;
    }
  }
  return { text: parts.join('\0'), textStarts, byteStarts };
}

/** Runs of printable and of other bytes (controls, NUL, high bytes), of random lengths. */
function randomBinary(): Buffer {
  const bytes = Buffer.alloc(randomInt(0, 400));
  for (let index = 0; index < bytes.length; ) {
    const run = randomInt(1, 24);
    const printable = randomInt(2) === 1;
    for (let step = 0; step < run && index < bytes.length; step++, index++) {
      bytes[index] = printable ? [0x09, 0x0a, 0x0d][randomInt(12)] ?? 0x20 + randomInt(95) : [randomInt(0, 9), 0x7f, 0x80 + randomInt(128)][randomInt(3)]!;
    }
  }
  return bytes;
}

describe('printableSegments', () => {
  it('agrees with reading every byte, on random binaries and every minimum length', () => {
    for (let trial = 0; trial < 20_000; trial++) {
      const bytes = randomBinary();
      const minLength = [8, 1, 2, 5, 16][trial % 5]!;
      expect(printableSegments(bytes, minLength), `${minLength}: ${bytes.toString('hex')}`).toEqual(everyByte(bytes, minLength));
    }
  });

  it('gathers runs larger than its starting buffer', () => {
    const bytes = Buffer.concat([Buffer.from([0]), Buffer.alloc(200_000, 'a'), Buffer.from([1, 2]), Buffer.alloc(100_000, 'b')]);
    const segments = printableSegments(bytes);
    expect(segments.text).toBe(`${'a'.repeat(200_000)}\0${'b'.repeat(100_000)}`);
    expect(segments.byteStarts).toEqual([1, 200_003]);
  });
});

describe('matchingLines', () => {
  it('gives exactly the matches of the pattern over the whole text, in order, for random texts', () => {
    const pattern = /^[ \t]*(?:export[ \t]+)?([A-Z][A-Z0-9_]*(?:PASSWORD|_KEY))=(["']?)([^\s"'#;]{3,20})\2[ \t]*$/gm;
    const pieces = ['DB_PASSWORD=', 'API_KEY=', 'export X_KEY="', 'PASSWORD', '_KEY', 'abc123', '"', ' ', '\t', '\n', '\r\n', '\r', '#', 'x', 'KEY=val'];
    for (let trial = 0; trial < 3000; trial++) {
      const text = Array.from({ length: randomInt(1, 40) }, () => pieces[randomInt(pieces.length)]).join('');
      const whole: [number, string][] = [];
      pattern.lastIndex = 0;
      for (let match = pattern.exec(text); match; match = pattern.exec(text)) whole.push([match.index, match[0]]);
      const lines = [...matchingLines(text, pattern, ['PASSWORD', '_KEY'])].map((match): [number, string] => [match.index, match[0]]);
      expect(lines, JSON.stringify(text)).toEqual(whole);
    }
  });
});

describe('matchingLines with a candidate check', () => {
  // Pieces of the names and values the searches look for, near misses, and what may follow a name.
  const PIECES = [
    'token', 'Token', 'TOKEN', 'oken', 'broken', 'tokens', 'secret', 'Secret', 'SECRET', '_secret', '-Secret', 'secretly', 'secret_key', 'SecretKey',
    'SECRET-KEY', 'secretkeys', 'apikey', 'api_key', 'API-KEY', 'ApiKey', 'pikey', 'xapi_key', 'password', 'PASSWORD', 'Password', 'identified', 'IDENTIFIED',
    ' by ', ' BY ', 'by', 'CREATE ROLE x ', 'ALTER USER y ', 'GRANT ', 'create user ', '"', "'", "''", ' ', '\t', '\r', ':', '=', '=>', '>', '<', '</', '\n',
    ';', '_', '-', '.', 'a', 'k', 'KEY', 'Key', 'my_', 'X', 'Zq81mX0pLw7vR3tY6uI2oP9a', 'Zq81mX0pLw7vR3tY6uI2', 's3cr3tP4ss',
    ': "', ' = ', '": "', "PASSWORD '", "password = '", "IDENTIFIED BY '", "' ", '<Token>', '</Token>', 'Zq81mX0pLw7vR3tY6uI2oP9a"', "s3cr3tP4ss'",
  ];
  function randomText(): string {
    let out = '';
    const pieces = randomInt(1, 24);
    for (let piece = 0; piece < pieces; piece++) out += PIECES[randomInt(PIECES.length)];
    return out;
  }
  const collect = (text: string, pattern: RegExp, needles: readonly string[], candidate?: (text: string, at: number, needle: string) => boolean) =>
    [...matchingLines(text, pattern, needles, candidate)].map((match) => [match.index, match[0]]);

  it('finds the same matches as without it, for the config-token and sql-password searches', () => {
    let matched = 0;
    for (let trial = 0; trial < 30_000; trial++) {
      const text = randomText();
      for (const search of [CONFIG_TOKEN_SEARCH, SQL_PASSWORD_SEARCH]) {
        for (const pattern of search.patterns) {
          const all = collect(text, pattern, search.needles);
          matched += all.length;
          const some = collect(text, pattern, search.needles, search.candidate);
          if (some.length !== all.length) expect(some, JSON.stringify(text)).toEqual(all);
        }
      }
    }
    // The texts do hold matches: the comparison is not between two empty lists.
    expect(matched).toBeGreaterThan(200);
  });
});
