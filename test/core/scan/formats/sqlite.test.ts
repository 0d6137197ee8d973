/**
 * SQLite databases made with the real sqlite3 CLI: a token in a row sits glued to its neighbours in
 * the file (the raw scan misses it); read as tables, each value stands alone and is found under
 * `(table NAME)`. Large values over overflow pages, WITHOUT ROWID tables, a clean database and a
 * corrupt b-tree page (unscanned, reason corrupt).
 */
import { execFileSync } from 'node:child_process';
import { openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { detectContainer } from '../../../../src/core/scan/formats/container-kind.js';
import { bufferSource } from '../../../../src/core/scan/formats/byte-source.js';
import { sqlite as sqliteFormat } from '../../../../src/core/scan/formats/sqlite.js';
import { fakeTokens, githubToken, randomString } from '../../../helpers/credentials.js';
import { tempDir } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

function sqlite(db: string, sql: string): void {
  execFileSync('sqlite3', [db], { input: sql });
}

function located(findings: { path: string; chain?: string[]; rule: string; kind?: string }[]): string[] {
  return findings.map((f) => `${path.basename(f.path)} › ${(f.chain ?? []).join(' › ')}|${f.rule}`).sort();
}

describe('sqlite databases', () => {
  it('finds tokens glued to the neighbouring columns, naming the table', async () => {
    const root = await tempDir();
    const db = path.join(root, 'db.sqlite');
    const hf = fakeTokens().huggingFace;
    const gh = githubToken('ghp');
    sqlite(
      db,
      `CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, note TEXT);
       INSERT INTO users VALUES (1, 'alice@example.org', 'likes tea');
       CREATE TABLE secrets (id INTEGER PRIMARY KEY, owner TEXT, token TEXT, comment TEXT);
       INSERT INTO secrets VALUES (1, 'alice', '${hf}', 'prod');
       INSERT INTO secrets VALUES (2, 'bob', '${gh}', 'ci');`,
    );
    const bytes = readFileSync(db);
    expect(detectContainer(bytes)).toBe('sqlite');
    // The tokens are in the file, glued: the raw scan alone does not find them.
    expect(bytes.includes(hf)).toBe(true);
    const report = await scanPaths([db], quiet);
    expect(located(report.findings)).toEqual(['db.sqlite › (table secrets)|github-token', 'db.sqlite › (table secrets)|huggingface-token']);
  });

  it('reads a value spread over overflow pages and tables stored WITHOUT ROWID', async () => {
    const root = await tempDir();
    const db = path.join(root, 'big.db');
    const gh = githubToken('ghp');
    const openAi = fakeTokens().openAiProject;
    // ~200 KiB of text before the token: dozens of 4 KiB overflow pages.
    const filler = randomString(200_000, 'abcdefghij');
    sqlite(
      db,
      `PRAGMA page_size = 4096;
       CREATE TABLE blobs (id INTEGER PRIMARY KEY, body TEXT);
       INSERT INTO blobs VALUES (1, '${filler}' || char(10) || 'GITHUB_TOKEN=${gh}' || char(10) || 'x');
       BEGIN; CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
       ${Array.from({ length: 300 }, (_, index) => `INSERT INTO kv VALUES ('key${index}', '${index === 250 ? openAi : `value${index}`}');`).join('\n')} COMMIT;`,
    );
    const report = await scanPaths([db], quiet);
    const found = located(report.findings);
    expect(found).toContain('big.db › (table blobs)|github-token');
    expect(found.some((line) => line.startsWith('big.db › (table kv)|openai'))).toBe(true);
    expect(report.findings.every((f) => f.kind !== 'unscanned')).toBe(true);
  });

  it('converts the text of a UTF-16 database to UTF-8', async () => {
    const root = await tempDir();
    const found: string[] = [];
    for (const encoding of ['UTF-16le', 'UTF-16be']) {
      const db = path.join(root, `${encoding}.db`);
      sqlite(db, `PRAGMA encoding = '${encoding}'; CREATE TABLE secrets (owner TEXT, token TEXT); INSERT INTO secrets VALUES ('carol', '${githubToken('ghp')}');`);
      found.push(...located((await scanPaths([db], quiet)).findings));
    }
    expect(found.sort()).toEqual(['UTF-16be.db › (table secrets)|github-token', 'UTF-16le.db › (table secrets)|github-token']);
  });

  it('a clean database has no findings; a corrupt b-tree page is unscanned, reason corrupt', async () => {
    const root = await tempDir();
    const clean = path.join(root, 'clean.db');
    sqlite(clean, `BEGIN; CREATE TABLE t (a TEXT, b TEXT); ${Array.from({ length: 500 }, (_, i) => `INSERT INTO t VALUES ('row ${i}', 'hello world ${i}');`).join('')} COMMIT;`);
    expect((await scanPaths([clean], quiet)).findings).toEqual([]);

    const broken = path.join(root, 'broken.db');
    sqlite(broken, `PRAGMA page_size = 1024; CREATE TABLE t (a TEXT); INSERT INTO t VALUES ('${'x'.repeat(2000)}');`);
    // The table's root page is page 2: its type byte becomes nonsense.
    const fd = openSync(broken, 'r+');
    writeSync(fd, Buffer.from([0x42]), 0, 1, 1024);
    closeSync(fd);
    const report = await scanPaths([broken], quiet);
    expect(report.findings.map((f) => `${f.rule}|${(f.chain ?? []).join(' › ')}`)).toEqual(['unscanned-corrupt|(table t)']);
  });

  it('stops reading a table when the signal aborts', async () => {
    const root = await tempDir();
    const db = path.join(root, 'many.db');
    sqlite(db, `PRAGMA page_size = 512; BEGIN; CREATE TABLE t (a TEXT); ${Array.from({ length: 24000 }, (_, i) => `INSERT INTO t VALUES ('row number ${i} of many, with enough text to fill the pages');`).join('')} COMMIT;`);
    const controller = new AbortController();
    const context = { signal: controller.signal, unreadable: () => undefined, problem: () => undefined };
    const members = sqliteFormat.members(bufferSource(readFileSync(db)), context);
    const reading = (async () => {
      for await (const member of members) {
        let bytes = 0;
        for await (const piece of member.stream()) {
          bytes += piece.length;
          controller.abort(new Error('stopped'));
        }
        return bytes;
      }
    })();
    await expect(reading).rejects.toThrow('stopped');
  });
});
