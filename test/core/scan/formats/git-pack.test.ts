/**
 * Git packfiles: a secret committed once and removed later stays in the repository's history. After
 * `git gc` that history lives in a packfile, as a whole object or inside a delta; the scan of the
 * repository folder (`.git` included) must still find it. Repositories and tokens are made fresh.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { detectContainer } from '../../../../src/core/scan/formats/container-kind.js';
import { githubToken } from '../../../helpers/credentials.js';
import { git, gitRepo } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

function packFiles(repo: string): string[] {
  const dir = path.join(repo, '.git/objects/pack');
  return readdirSync(dir).filter((name) => name.endsWith('.pack')).map((name) => path.join(dir, name));
}

/** A module long enough for git to store its other versions as deltas against it. */
function bigModule(extra = ''): string {
  const lines = Array.from({ length: 400 }, (_, index) => `  services.example${index}.enable = ${index % 2 === 0 ? 'true' : 'false'};`);
  lines.splice(200, 0, extra);
  return `{ config, lib, ... }:\n{\n${lines.join('\n')}\n}\n`;
}

describe('git packfiles', () => {
  it('finds a token that was committed and then removed, once the history is packed', async () => {
    const token = githubToken('ghp');
    const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'hosts/a.nix': bigModule(`  token = "${token}";`) });
    writeFileSync(path.join(repo, 'hosts/a.nix'), bigModule());
    git(repo, 'commit', '-q', '-am', 'remove the token');
    git(repo, 'gc', '-q', '--aggressive');
    const packs = packFiles(repo);
    expect(packs.length).toBe(1);
    expect(detectContainer(readFileSync(packs[0]!))).toBe('git-pack');
    // The token is nowhere in plain sight: neither in the work tree nor as a loose object.
    expect(readFileSync(path.join(repo, 'hosts/a.nix'), 'utf8')).not.toContain(token);
    expect(readFileSync(packs[0]!).includes(token)).toBe(false);

    const report = await scanPaths([repo], quiet);
    const found = report.findings.filter((finding) => finding.rule === 'github-token');
    expect(found.length).toBeGreaterThanOrEqual(1);
    expect(found[0]!.path).toMatch(/^\.git\/objects\/pack\/pack-[0-9a-f]+\.pack$/);
    expect(found[0]!.inner).toMatch(/^\(git (blob|ofs-delta|ref-delta) @\d+\)$/);
    expect(report.problems).toEqual([]);
  });

  it('finds a token that only an older version had, stored as a delta against the newer, larger one', async () => {
    const token = githubToken('ghs');
    const repo = await gitRepo({ 'hosts/a.nix': bigModule(`  token = "${token}";`) });
    // The newer version is larger: git keeps it whole and stores the older one as a delta.
    writeFileSync(path.join(repo, 'hosts/a.nix'), `${bigModule()}${'# more\n'.repeat(300)}`);
    git(repo, 'commit', '-q', '-am', 'remove the token');
    git(repo, 'gc', '-q', '--aggressive');
    const verify = git(repo, 'verify-pack', '-v', packFiles(repo)[0]!.replace(/\.pack$/, '.idx'));
    const deltas = verify.split('\n').filter((line) => /^[0-9a-f]{40} blob .* [0-9a-f]{40}$/.test(line));
    expect(deltas.length).toBe(1);
    const deltaOffset = deltas[0]!.split(/\s+/)[4];

    const report = await scanPaths([path.join(repo, '.git')], quiet);
    const found = report.findings.filter((finding) => finding.rule === 'github-token');
    expect(found.map((finding) => finding.inner)).toEqual([`(git ofs-delta @${deltaOffset})`]);
  });

  it('reads every object of a clean packed repository without a finding or a problem', async () => {
    const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'hosts/a.nix': bigModule() });
    for (let round = 0; round < 5; round++) {
      writeFileSync(path.join(repo, 'hosts/a.nix'), bigModule(`  # revision ${round}`));
      git(repo, 'commit', '-q', '-am', `revision ${round}`);
    }
    git(repo, 'gc', '-q');
    const objects = Number(/count: (\d+)/.exec(git(repo, 'count-objects', '-v'))?.[1] ?? '-1');
    const packed = Number(/in-pack: (\d+)/.exec(git(repo, 'count-objects', '-v'))?.[1] ?? '0');
    expect(objects).toBe(0);
    expect(packed).toBeGreaterThan(10);

    const report = await scanPaths([path.join(repo, '.git/objects/pack')], quiet);
    expect(report.findings).toEqual([]);
    expect(report.problems).toEqual([]);
    // Each packed object is scanned as a member of its pack (plus the .idx and .rev files themselves).
    expect(report.files).toBeGreaterThanOrEqual(packed);
  });

  it('reports a truncated packfile as unreadable, never as clean', async () => {
    const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'hosts/a.nix': bigModule() });
    git(repo, 'gc', '-q');
    const pack = packFiles(repo)[0]!;
    const bytes = readFileSync(pack);
    writeFileSync(pack, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const report = await scanPaths([pack], quiet);
    expect(report.findings.map((finding) => [finding.kind, finding.rule])).toEqual([['unscanned', 'unscanned-truncated']]);
    expect(report.findings[0]!.note).toMatch(/^not scanned \(truncated\): /);
  });
});

describe('git packfiles with large objects', () => {
  it('streams an object over 256 MiB (it used to be unreadable) and finds the token at its end', async () => {
    const token = githubToken('ghp');
    const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n' });
    writeFileSync(path.join(repo, 'disk.img'), Buffer.concat([Buffer.alloc(300 * 1024 * 1024), Buffer.from(`\ntoken = "${token}"\n`)]));
    git(repo, 'add', 'disk.img');
    git(repo, 'commit', '-q', '-m', 'image');
    git(repo, 'repack', '-a', '-d', '-q');
    const packs = packFiles(repo);
    const report = await scanPaths(packs, quiet);
    const found = report.findings.filter((finding) => finding.rule === 'github-token');
    expect(found.map((finding) => finding.inner)).toEqual([expect.stringMatching(/^\(git blob @\d+\)$/)]);
    expect(report.findings.filter((finding) => finding.kind === 'unscanned')).toEqual([]);
  }, 180_000);
});
