/**
 * Large files are streamed; text among them (a big tokenizer.json, a log, a dump) gets every rule
 * over every byte, so secrets shorter than the sampled binary scan guarantees (URL passwords, Nix
 * passwords) are found anywhere, across chunk boundaries too. Secrets are made fresh at test time.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FileScanner, looksLikeText, type ScanEnvironment } from '../../../src/core/scan/file-scanner.js';
import type { Finding } from '../../../src/core/types.js';
import { githubToken } from '../../helpers/credentials.js';

const environment: ScanEnvironment = { operatorSecrets: [], allow: new Map() };
const CHUNK = 4 * 1024 * 1024;
const SIZE = 20 * 1024 * 1024;

/** Text of `size` bytes made of `line` (a string, as UTF-8, or bytes) repeated. */
function filler(line: string | Buffer, size: number): Buffer {
  const one = Buffer.isBuffer(line) ? line : Buffer.from(line);
  const out = Buffer.alloc(size);
  for (let at = 0; at < size; at += one.length) one.copy(out, at, 0, Math.min(one.length, size - at));
  return out;
}

function place(content: Buffer, at: number, text: string): void {
  Buffer.from(text).copy(content, at);
}

async function scanInChunks(content: Buffer, chunk = CHUNK): Promise<Finding[]> {
  const scanner = new FileScanner(environment, { path: 'big.json', size: content.length });
  for (let at = 0; at < content.length; at += chunk) scanner.update(content.subarray(at, at + chunk));
  return scanner.finish();
}

const password = () => `hunter-${randomBytes(6).toString('hex')}`;
const url = (secret: string) => ` "https://deploy:${secret}@git.dubnium-corp.net/repo" `;

describe('large text files', () => {
  for (const [label, line] of [
    ['ASCII JSON', '{"id": 12345, "content": "some ordinary tokenizer text", "special": false},\n'],
    ['UTF-8 with CJK', '{"id": 1, "content": "模型的词表条目与普通文本", "special": false},\n'],
  ] as const) {
    it(`${label}: a URL password deep inside, and one straddling each chunk boundary`, async () => {
      const content = filler(line, SIZE);
      const secrets: { at: number; secret: string }[] = [];
      for (const at of [2 * 1024 * 1024 + 11, 4 * CHUNK - 20, 2 * CHUNK - 3, SIZE - 200]) {
        const secret = password();
        place(content, at, url(secret));
        secrets.push({ at, secret });
      }
      const findings = await scanInChunks(content);
      const found = findings.filter((finding) => finding.rule === 'url-credentials');
      expect(found.length).toBe(secrets.length);
      // Each reported at its own byte offset: the password's first byte.
      const offsets = found.map((finding) => finding.offset).sort((a, b) => a! - b!);
      const expected = secrets.map(({ at }) => at + ' "https://deploy:'.length).sort((a, b) => a - b);
      expect(offsets).toEqual(expected);
    });
  }

  for (const encoding of ['utf-16le', 'utf-16be'] as const) {
    it(`${encoding}: URL passwords deep inside and across chunk boundaries, at their byte offsets`, async () => {
      const encode = (text: string) => {
        const bytes = Buffer.from(text, 'utf16le');
        return encoding === 'utf-16le' ? bytes : bytes.swap16();
      };
      // A byte order mark on one of them: the other is recognized by its zero bytes.
      const bom = encoding === 'utf-16le' ? encode('\ufeff') : Buffer.alloc(0);
      const line = encode('2026-11-22 12:00:00 INFO ordinary log line, 词表 nothing to see\r\n');
      const content = Buffer.concat([bom, filler(line, SIZE - bom.length)]);
      const secrets: number[] = [];
      // Even offsets (whole code units), one straddling each of two chunk boundaries.
      for (const at of [3 * 1024 * 1024 + 100, 2 * CHUNK - 30, 4 * CHUNK - 2, SIZE - 300]) {
        content.set(encode(url(password())), at);
        secrets.push(at + 2 * ' "https://deploy:'.length);
      }
      const found = (await scanInChunks(content)).filter((finding) => finding.rule === 'url-credentials');
      expect(found.map((finding) => finding.offset).sort((a, b) => a! - b!)).toEqual(secrets.sort((a, b) => a - b));
    });
  }

  it('a token begun at the end of a text chunk and finished at the start of a binary one', async () => {
    const token = githubToken('ghp');
    const text = filler('plain words of a log line\n', CHUNK);
    place(text, CHUNK - 20, ` ${token.slice(0, 19)}`);
    const binary = randomBytes(CHUNK);
    place(binary, 0, `${token.slice(19)} `);
    const content = Buffer.concat([randomBytes(CHUNK), text, binary, randomBytes(CHUNK)]);
    const found = (await scanInChunks(content)).filter((finding) => finding.rule === 'github-token');
    expect(found.map((finding) => finding.offset)).toEqual([2 * CHUNK - 19]);
  });

  it('tells text chunks from binary ones', () => {
    expect(looksLikeText(filler('ascii text\n', CHUNK))).toBe(true);
    expect(looksLikeText(filler('词表条目 text\n', CHUNK))).toBe(true);
    expect(looksLikeText(randomBytes(CHUNK))).toBe(false);
    // bf16-like weights: small values have exponent bytes 0x3c-0x3f / 0xbc-0xbf, random mantissas.
    const weights = randomBytes(CHUNK);
    for (let index = 1; index < weights.length; index += 2) weights[index] = (weights[index]! & 0x80) | 0x3c | (weights[index]! & 3);
    expect(looksLikeText(weights)).toBe(false);
  });
});
