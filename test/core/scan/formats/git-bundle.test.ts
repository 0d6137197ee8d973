/**
 * Git bundles made with the real `git bundle create`: a token committed and removed later is still in
 * the bundle's packfile, which follows the header lines; the pack is read as the member `(pack)`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { detectContainer } from '../../../../src/core/scan/formats/container-kind.js';
import { githubToken } from '../../../helpers/credentials.js';
import { git, gitRepo, tempDir } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

async function history(token: string): Promise<string> {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'hosts/a.nix': `{ token = "${token}"; }\n` });
  writeFileSync(path.join(repo, 'hosts/a.nix'), '{ }\n');
  git(repo, 'commit', '-q', '-am', 'remove the token');
  return repo;
}

describe('git bundles', () => {
  for (const version of ['2', '3'] as const) {
    it(`finds a token committed then removed in a v${version} bundle, under (pack)`, async () => {
      const token = githubToken('ghp');
      const repo = await history(token);
      const out = await tempDir();
      const bundle = path.join(out, 'config.bundle');
      git(repo, 'bundle', 'create', '-q', `--version=${version}`, bundle, '--all');
      const bytes = readFileSync(bundle);
      expect(bytes.toString('latin1', 0, 16)).toBe(`# v${version} git bundle\n`);
      expect(detectContainer(bytes)).toBe('git-bundle');
      const report = await scanPaths([bundle], quiet);
      const found = report.findings.map((f) => `${path.basename(f.path)}|${f.chain?.slice(0, 1).join(' › ')}|${f.rule}`);
      expect(found).toContain('config.bundle|(pack)|github-token');
      expect(report.findings.every((f) => f.kind !== 'unscanned')).toBe(true);
      expect(report.findings.find((f) => f.rule === 'github-token')?.chain?.[1]).toMatch(/^\(git (blob|ofs-delta|ref-delta) @\d+\)$/);
    });
  }

  it('an incremental bundle (prerequisites) is read; a bundle cut inside its pack is unscanned', async () => {
    const token = githubToken('ghp');
    const repo = await history('nothing here');
    writeFileSync(path.join(repo, 'env'), `GITHUB_TOKEN=${token}\n`);
    git(repo, 'add', 'env');
    git(repo, 'commit', '-q', '-m', 'oops');
    const out = await tempDir();
    const bundle = path.join(out, 'incremental.bundle');
    git(repo, 'bundle', 'create', '-q', bundle, 'HEAD~1..HEAD');
    expect(readFileSync(bundle, 'latin1').split('\n')[1]).toMatch(/^-[0-9a-f]{40}/);
    const report = await scanPaths([bundle], quiet);
    expect(report.findings.map((f) => `${f.chain?.[0]}|${f.rule}`)).toContain('(pack)|github-token');

    const cut = path.join(out, 'cut.bundle');
    const whole = readFileSync(bundle);
    writeFileSync(cut, whole.subarray(0, whole.length - 40));
    const broken = await scanPaths([cut], quiet);
    expect(broken.findings.some((f) => f.kind === 'unscanned' && /truncated|corrupt/.test(f.rule))).toBe(true);
  });
});
