/**
 * Which files git-crypt governs, checked against git itself: `git check-attr filter` in a real
 * repository is the oracle for the `.gitattributes` reading in rules/git-crypt.ts, on hand-picked
 * lines (macros, resets, nesting, quoting, `**`) and on random patterns and paths.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gitAttributesOf, gitCryptKeyFile, isGitCryptCiphertext, isGitCryptPath } from '../../../../src/core/scan/rules/git-crypt.js';
import { git, tempDir } from '../../../helpers/tmp.js';

/** What git says each path's filter is: governed by git-crypt or not. */
function gitSays(repo: string, paths: string[]): Map<string, boolean> {
  const output = execFileSync('git', ['check-attr', '-z', '--stdin', 'filter'], { cwd: repo, input: paths.map((file) => `${file}\0`).join(''), encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  const fields = output.split('\0');
  const said = new Map<string, boolean>();
  for (let index = 0; index + 2 < fields.length; index += 3) said.set(fields[index]!, /^git-crypt(-|$)/.test(fields[index + 2]!));
  return said;
}

async function repoWith(files: Record<string, string>): Promise<string> {
  const repo = await tempDir('dubnium-seed-gitattr-');
  git(repo, 'init', '-q');
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(repo, name)), { recursive: true });
    writeFileSync(path.join(repo, name), text);
  }
  return repo;
}

function oursSay(files: Record<string, string>, paths: string[]): Map<string, boolean> {
  const attributes = gitAttributesOf(Object.entries(files).map(([name, text]) => ({ path: name, text })));
  return new Map(paths.map((file) => [file, isGitCryptPath(attributes, file)]));
}

describe('git-crypt: which files .gitattributes gives to git-crypt, as git reads it', () => {
  it('agrees with git check-attr on macros, resets, nested files, .git/info/attributes, quoting, classes and **', async () => {
    const files = {
      '.gitattributes': [
        '[attr]secret filter=git-crypt diff=git-crypt',
        '# a comment',
        '*.key filter=git-crypt diff=git-crypt',
        'secrets/** filter=git-crypt diff=git-crypt',
        'secrets/public/** !filter !diff',
        '/top.env filter=git-crypt',
        'hosts/*/secret.nix filter=git-crypt-hosts',
        '**/vault/* secret',
        'a/**/b.txt filter=git-crypt',
        'data/[ab]?.bin filter=git-crypt',
        'data/[!c]x.dat filter=git-crypt',
        'posix/[[:digit:]][[:upper:]].env filter=git-crypt',
        'posix/[![:alpha:]]*.key -filter',
        'esc/[a\\-c].txt filter=git-crypt',
        '"quoted dir/*.txt" filter=git-crypt',
        'escaped\\*.txt filter=git-crypt',
        'onlydir/ filter=git-crypt',
        '*.gpg -filter',
        'lfs/** filter=lfs diff=lfs merge=lfs -text',
        '.gitattributes !filter !diff',
        '  indented.cfg   filter=git-crypt  ',
        'crlf.txt filter=git-crypt\r',
      ].join('\n'),
      'hosts/alpha/.gitattributes': 'secret.nix !filter\n*.age filter=git-crypt\n[attr]secret -filter\n',
      'hosts/beta/.gitattributes': '*.key -filter\n',
      // The repository's own attributes, above every .gitattributes.
      '.git/info/attributes': 'hosts/beta/x.key filter=git-crypt\nsecrets/db.nix -filter\n*.age !filter\nsecrets/info.txt filter=git-crypt\n',
    };
    const paths = [
      '.gitattributes', 'a.key', 'x/y/z.key', 'secrets/db.nix', 'secrets/deep/er/file', 'secrets', 'secrets/public/ok.pub', 'top.env', 'sub/top.env',
      'hosts/alpha/secret.nix', 'hosts/gamma/secret.nix', 'hosts/alpha/x.age', 'hosts/beta/x.key', 'hosts/beta/y.age', 'hosts/alpha/deep/z.age',
      'vault/p', 'x/vault/p', 'x/vault/p/q', 'a/b.txt', 'a/x/y/b.txt', 'ab.txt', 'data/ab.bin', 'data/cb.bin', 'data/bx.dat', 'data/cx.dat', 'data/a.bin', 'posix/1A.env', 'posix/a1.env', 'posix/1a.env', 'posix/9.key', 'posix/x.key', 'esc/a.txt', 'esc/-.txt', 'esc/b.txt', 'esc/c.txt',
      'quoted dir/a.txt', 'quoted dir/sub/a.txt', 'escaped*.txt', 'escapedX.txt', 'onlydir/file', 'k.gpg', 'lfs/model.bin', 'indented.cfg', 'crlf.txt', 'hosts/alpha/vault/s', 'secrets/info.txt',
    ];
    const repo = await repoWith(files);
    const expected = gitSays(repo, paths);
    expect([...expected.values()].filter(Boolean).length).toBeGreaterThan(10);
    expect(Object.fromEntries(oursSay(files, paths))).toEqual(Object.fromEntries(expected));
  });

  it('agrees with git check-attr on random patterns and paths', async () => {
    let seed = 20261127;
    const random = (n: number) => {
      // xorshift32: a fixed sequence, so a failure reproduces.
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const pick = <T>(items: readonly T[]) => items[random(items.length)]!;
    const segments = ['a', 'b', 'ab', 'x.key', '.hidden', 'se cret', 'k.nix', 'd'];
    const pieces = ['a', 'b', '*', '**', '?', '[ab]', '[!a]*', '*.key', '.hidden', 'k.*', 'se cret', '*b', 'd', '***'];
    const attributes = ['filter=git-crypt', 'filter=git-crypt', 'filter=git-crypt-other', '!filter', '-filter', 'filter', 'filter=lfs', 'diff=git-crypt'];
    const quote = (pattern: string) => (pattern.includes(' ') ? `"${pattern}"` : pattern);
    let governed = 0;
    for (let round = 0; round < 20; round++) {
      const line = () => {
        const depth = 1 + random(3);
        let pattern = Array.from({ length: depth }, () => pick(pieces)).join('/');
        if (random(4) === 0) pattern = `/${pattern}`;
        return `${quote(pattern)} ${pick(attributes)}`;
      };
      const files: Record<string, string> = {
        '.gitattributes': Array.from({ length: 12 }, line).join('\n'),
        'a/.gitattributes': Array.from({ length: 4 }, line).join('\n'),
        'ab/d/.gitattributes': Array.from({ length: 4 }, line).join('\n'),
      };
      const paths = new Set<string>();
      while (paths.size < 300) paths.add(Array.from({ length: 1 + random(4) }, () => pick(segments)).join('/'));
      const repo = await repoWith(files);
      const list = [...paths];
      governed += [...gitSays(repo, list).values()].filter(Boolean).length;
      expect(Object.fromEntries(oursSay(files, list)), `round ${round}:\n${Object.entries(files).map(([name, text]) => `${name}:\n${text}`).join('\n')}`).toEqual(Object.fromEntries(gitSays(repo, list)));
    }
    // The rounds gave git-crypt files and plain ones in good numbers.
    expect(governed).toBeGreaterThan(300);
    expect(governed).toBeLessThan(20 * 300 - 300);
  });
});

describe('git-crypt: its ciphertext and its key by their bytes', () => {
  it('knows the ciphertext header and the key file header, and nothing shorter or different', () => {
    expect(isGitCryptCiphertext(Buffer.concat([Buffer.from('\0GITCRYPT\0', 'latin1'), Buffer.alloc(12, 7)]))).toBe(true);
    expect(isGitCryptCiphertext(Buffer.from('\0GITCRYPT', 'latin1'))).toBe(false);
    expect(isGitCryptCiphertext(Buffer.from('GITCRYPT\0\0', 'latin1'))).toBe(false);
    const key = Buffer.concat([Buffer.from('\0GITCRYPTKEY', 'latin1'), Buffer.from([0, 0, 0, 2, 0, 0, 0, 0]), Buffer.alloc(128, 3)]);
    expect(gitCryptKeyFile(key)).toMatchObject({ rule: 'git-crypt-key', kind: 'private-key' });
    expect(gitCryptKeyFile(key.subarray(0, 14))).toBeUndefined();
    expect(gitCryptKeyFile(Buffer.concat([Buffer.from('\0GITCRYPT\0', 'latin1'), Buffer.alloc(64)]))).toBeUndefined();
  });
});
