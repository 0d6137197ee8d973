/**
 * Every compression and archive the walker opens, made with the real tools (xz, zstd, bzip2, lz4,
 * gzip, lzop, lzip, legacy lzma, tar, zip, ar and dpkg-deb): a key inside is found with the chain of inner paths, and what cannot be read (a
 * truncated or corrupt stream, an encrypted zip member) is an `unscanned` finding with its reason.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { ageKeyFile, githubToken } from '../../../helpers/credentials.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;
const TOOLS = {
  xz: ['xz', '-c'],
  zst: ['zstd', '-q', '-c'],
  bz2: ['bzip2', '-c'],
  lz4: ['lz4', '-q', '-c'],
  gz: ['gzip', '-c'],
  lzo: ['lzop', '-q', '-c'],
  lz: ['lzip', '-c'],
  lzma: ['xz', '--format=lzma', '-c'],
} as const;

function compress(file: string, ext: keyof typeof TOOLS): string {
  const [tool, ...args] = TOOLS[ext];
  const out = `${file}.${ext}`;
  writeFileSync(out, execFileSync(tool, [...args, file], { maxBuffer: 1 << 30 }));
  return out;
}

function located(findings: { path: string; inner?: string; chain?: string[]; rule: string }[]): string[] {
  return findings.map((f) => `${f.path}|${(f.chain ?? []).join(' › ')}|${f.rule}`).sort();
}

describe('compressed files and compressed tars', () => {
  it('finds an age identity in .xz, .zst, .bz2, .lz4, .gz, .lzo, .lz and .lzma files, named after the file without its suffix', async () => {
    const root = await tempDir();
    const age = ageKeyFile();
    await writeTree(root, { 'keys.txt': age.file });
    for (const ext of Object.keys(TOOLS) as (keyof typeof TOOLS)[]) compress(path.join(root, 'keys.txt'), ext);
    // And one with no suffix to strip: named after the compression.
    writeFileSync(path.join(root, 'blob'), execFileSync('xz', ['-c', path.join(root, 'keys.txt')]));
    const report = await scanPaths(Object.keys(TOOLS).map((ext) => path.join(root, `keys.txt.${ext}`)).concat(path.join(root, 'blob')), quiet);
    expect(located(report.findings)).toEqual(
      ['blob|(xz)|age-identity', ...Object.keys(TOOLS).map((ext) => `keys.txt.${ext}|keys.txt|age-identity`)].sort(),
    );
    expect(report.findings.every((f) => f.inner === f.chain?.join('!'))).toBe(true);
  });

  it('finds keys in .tar.xz, .tar.zst and .tar.bz2 as tar members, and in a zip inside a tar.zst', async () => {
    const root = await tempDir();
    const work = await tempDir();
    const age = ageKeyFile();
    const token = githubToken('ghp');
    await writeTree(work, { 'etc/keys.txt': age.file, 'etc/env': `GH=${token}\n` });
    for (const [flag, ext] of [['-J', 'xz'], ['--zstd', 'zst'], ['-j', 'bz2']] as const) {
      execFileSync('tar', ['-c', flag, '-f', path.join(root, `closure.tar.${ext}`), '-C', work, 'etc']);
    }
    execFileSync('zip', ['-qr', path.join(work, 'inner.zip'), 'etc'], { cwd: work });
    await writeTree(work, { 'nest/.keep': '' });
    execFileSync('cp', [path.join(work, 'inner.zip'), path.join(work, 'nest/inner.zip')]);
    execFileSync('tar', ['--zstd', '-cf', path.join(root, 'nested.tar.zst'), '-C', work, 'nest']);
    const report = await scanPaths([root], quiet);
    expect(located(report.findings)).toEqual(
      [
        'closure.tar.bz2|etc/env|github-token',
        'closure.tar.bz2|etc/keys.txt|age-identity',
        'closure.tar.xz|etc/env|github-token',
        'closure.tar.xz|etc/keys.txt|age-identity',
        'closure.tar.zst|etc/env|github-token',
        'closure.tar.zst|etc/keys.txt|age-identity',
        'nested.tar.zst|nest/inner.zip › etc/env|github-token',
        'nested.tar.zst|nest/inner.zip › etc/keys.txt|age-identity',
      ].sort(),
    );
    expect(report.findings.find((f) => f.path === 'nested.tar.zst' && f.rule === 'github-token')!.inner).toBe('nest/inner.zip!etc/env');
  });

  it('unpacks a compressed file larger than the in-memory limit (the key after 9 MiB that does not compress)', async () => {
    // Over FULL_SCAN_LIMIT, a file with a known size used to be streamed without its head being
    // looked at: a large .gz was never unpacked (a key after 2 GiB of zeros with gzip -1 was missed).
    const root = await tempDir();
    const age = ageKeyFile();
    writeFileSync(path.join(root, 'dump'), Buffer.concat([randomBytes(9 * 1024 * 1024), Buffer.from(`\n${age.file}`)]));
    const gz = compress(path.join(root, 'dump'), 'gz');
    const zst = compress(path.join(root, 'dump'), 'zst');
    expect(readFileSync(gz).length).toBeGreaterThan(8 * 1024 * 1024);
    const report = await scanPaths([gz, zst], quiet);
    expect(located(report.findings)).toEqual(['dump.gz|dump|age-identity', 'dump.zst|dump|age-identity']);
  });
});

describe('what cannot be read is unscanned, with its reason', () => {
  it('truncated and corrupt compressed streams', async () => {
    const root = await tempDir();
    writeFileSync(path.join(root, 'data'), randomBytes(256 * 1024));
    const files: string[] = [];
    for (const ext of Object.keys(TOOLS) as (keyof typeof TOOLS)[]) {
      const whole = readFileSync(compress(path.join(root, 'data'), ext));
      const cut = path.join(root, `cut.${ext}`);
      writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
      files.push(cut);
    }
    const zst = readFileSync(path.join(root, 'data.zst'));
    const bad = Buffer.from(zst);
    bad.fill(0xa5, 16, bad.length - 16);
    writeFileSync(path.join(root, 'bad.zst'), bad);
    const report = await scanPaths([...files, path.join(root, 'bad.zst')], quiet);
    const byFile = Object.fromEntries(report.findings.map((f) => [f.path, f]));
    for (const ext of Object.keys(TOOLS)) {
      expect(byFile[`cut.${ext}`], ext).toMatchObject({ kind: 'unscanned', rule: 'unscanned-truncated' });
      expect(byFile[`cut.${ext}`]!.note).toMatch(/^not scanned \(truncated\): /);
    }
    expect(byFile['bad.zst']).toMatchObject({ kind: 'unscanned' });
    expect(byFile['bad.zst']!.rule).toMatch(/^unscanned-(corrupt|truncated)$/);
    expect(report.findings).toHaveLength(files.length + 1);
  });

  it('an encrypted zip member is unscanned (encrypted); the readable members are still scanned', async () => {
    const root = await tempDir();
    const work = await tempDir();
    const token = githubToken('ghp');
    await writeTree(work, { 'secret.txt': 'anything\n', 'plain.env': `GH=${token}\n` });
    execFileSync('zip', ['-q', '-P', 'pw', path.join(root, 'mixed.zip'), 'secret.txt'], { cwd: work });
    execFileSync('zip', ['-q', path.join(root, 'mixed.zip'), 'plain.env'], { cwd: work });
    const report = await scanPaths([path.join(root, 'mixed.zip')], quiet);
    expect(located(report.findings)).toEqual(['mixed.zip|plain.env|github-token', 'mixed.zip|secret.txt|unscanned-encrypted']);
  });

  it('a truncated tar inside a compressed stream names the file and the reason', async () => {
    const root = await tempDir();
    const work = await tempDir();
    await writeTree(work, { 'big.bin': randomBytes(512 * 1024) });
    execFileSync('tar', ['-cf', path.join(work, 'x.tar'), '-C', work, 'big.bin']);
    const tarBytes = readFileSync(path.join(work, 'x.tar'));
    writeFileSync(path.join(work, 'cut.tar'), tarBytes.subarray(0, 300 * 1024));
    writeFileSync(path.join(root, 'cut.tar.xz'), execFileSync('xz', ['-c', path.join(work, 'cut.tar')]));
    const report = await scanPaths([path.join(root, 'cut.tar.xz')], quiet);
    expect(report.findings.map((f) => [f.path, f.inner, f.kind, f.rule])).toEqual([['cut.tar.xz', 'big.bin', 'unscanned', 'unscanned-truncated']]);
  });

  it('text that merely starts like a bzip2 or zlib stream stays text, not unscanned', async () => {
    const root = await tempDir();
    await writeTree(root, { 'a.txt': 'BZh9 starts a bzip2 stream\n', 'b.txt': 'x^2 + y^2\n' });
    const report = await scanPaths([root], quiet);
    expect(report.findings).toEqual([]);
  });
});

describe('zip entries in 7-Zip\'s methods', () => {
  it('reads BZip2 and LZMA entries; reports Deflate64 and PPMd ones unscanned-unsupported', async () => {
    const root = await tempDir();
    const age = ageKeyFile();
    await writeTree(root, { 'keys.txt': `${'a line of padding text\n'.repeat(2000)}${age.file}` });
    const methods = ['BZip2', 'LZMA', 'Deflate64', 'PPMd'];
    for (const method of methods) execFileSync('7z', ['a', '-bd', '-y', '-tzip', `-mm=${method}`, `keys-${method}.zip`, 'keys.txt'], { cwd: root, stdio: 'ignore' });
    const report = await scanPaths(
      methods.map((method) => path.join(root, `keys-${method}.zip`)),
      quiet,
    );
    expect(located(report.findings)).toEqual(
      ['keys-BZip2.zip|keys.txt|age-identity', 'keys-LZMA.zip|keys.txt|age-identity', 'keys-Deflate64.zip|keys.txt|unscanned-unsupported', 'keys-PPMd.zip|keys.txt|unscanned-unsupported'].sort(),
    );
  });
});

describe('Debian packages and other ar archives', () => {
  it('opens a .deb (dpkg-deb, xz and gzip members) and finds a key in its data.tar and control.tar, by name', async () => {
    const root = await tempDir();
    const age = ageKeyFile();
    const token = githubToken();
    await writeTree(path.join(root, 'pkg'), {
      'DEBIAN/control': 'Package: leaky\nVersion: 1.0\nArchitecture: all\nMaintainer: Nobody <nobody@example.invalid>\nDescription: test\n',
      'DEBIAN/postinst': `#!/bin/sh\nexport GITHUB_TOKEN=${token}\n`,
      'etc/leaky/keys.txt': age.file,
    });
    execFileSync('chmod', ['0755', path.join(root, 'pkg/DEBIAN/postinst')]);
    for (const compression of ['xz', 'gzip']) {
      execFileSync('dpkg-deb', ['--root-owner-group', `-Z${compression}`, '--build', path.join(root, 'pkg'), path.join(root, `leaky-${compression}.deb`)], { stdio: 'ignore' });
    }
    const report = await scanPaths([path.join(root, 'leaky-xz.deb'), path.join(root, 'leaky-gzip.deb')], quiet);
    expect(located(report.findings)).toEqual(
      [
        'leaky-gzip.deb|control.tar.gz › postinst|github-token',
        'leaky-gzip.deb|data.tar.gz › etc/leaky/keys.txt|age-identity',
        'leaky-xz.deb|control.tar.xz › postinst|github-token',
        'leaky-xz.deb|data.tar.xz › etc/leaky/keys.txt|age-identity',
      ].sort(),
    );
  });

  it('reads GNU long names and a member cut short; a static library is read as its own bytes, not opened', async () => {
    const root = await tempDir();
    const age = ageKeyFile();
    const longName = 'a-member-name-longer-than-sixteen-bytes.txt';
    await writeTree(root, { [longName]: age.file, 'short.txt': 'nothing\n' });
    execFileSync('ar', ['rcS', 'plain.a', longName, 'short.txt'], { cwd: root });
    const whole = readFileSync(path.join(root, 'plain.a'));
    // Cut two bytes into short.txt's data (its 60-byte header starts with its name).
    writeFileSync(path.join(root, 'cut.a'), whole.subarray(0, whole.indexOf('short.txt/') + 62));
    // With a symbol index first (`ar rcs` of an object file): a library, scanned flat.
    // An object file holding the key's bytes (`ld -b binary`, symbols and all), so ar writes its index.
    await writeTree(root, { 'blob.txt': `key = "${age.identity}"\n` });
    execFileSync('ld', ['-r', '-b', 'binary', '-o', 'lib.o', 'blob.txt'], { cwd: root });
    execFileSync('ar', ['rcs', 'libkey.a', 'lib.o'], { cwd: root });
    const report = await scanPaths([path.join(root, 'plain.a'), path.join(root, 'cut.a'), path.join(root, 'libkey.a')], quiet);
    expect(located(report.findings)).toEqual(
      [`plain.a|${longName}|age-identity`, `cut.a|${longName}|age-identity`, 'cut.a|short.txt|unscanned-truncated', 'libkey.a||age-identity'].sort(),
    );
  });
});

describe('archives the scan does not read', () => {
  it('reports 7-Zip, RAR, Cabinet, xar and Unix compress (.Z) files unscanned-unsupported, never passed', async () => {
    const root = await tempDir();
    const age = ageKeyFile();
    await writeTree(root, { 'keys.txt': age.file });
    execFileSync('7z', ['a', '-bd', '-y', 'keys.7z', 'keys.txt'], { cwd: root, stdio: 'ignore' });
    // No free tool writes RAR, Cabinet or xar here: their signatures, then bytes.
    const tail = randomBytes(200);
    writeFileSync(path.join(root, 'keys.rar'), Buffer.concat([Buffer.from('526172211a070100', 'hex'), tail]));
    writeFileSync(path.join(root, 'old.rar'), Buffer.concat([Buffer.from('526172211a0700', 'hex'), tail]));
    writeFileSync(path.join(root, 'setup.cab'), Buffer.concat([Buffer.from('4d53434600000000', 'hex'), tail]));
    writeFileSync(path.join(root, 'pkg.xar'), Buffer.concat([Buffer.from('78617221001c0001', 'hex'), tail]));
    writeFileSync(path.join(root, 'keys.txt.Z'), execFileSync('compress', ['-c', path.join(root, 'keys.txt')]));
    const names = ['keys.7z', 'keys.rar', 'old.rar', 'setup.cab', 'pkg.xar', 'keys.txt.Z'];
    const report = await scanPaths(
      names.map((name) => path.join(root, name)),
      quiet,
    );
    expect(located(report.findings)).toEqual(names.map((name) => `${name}||unscanned-unsupported`).sort());
    expect(report.findings.find((finding) => finding.path === 'keys.7z')?.note).toMatch(/7-Zip files are not read: extract it/);
  });
});
