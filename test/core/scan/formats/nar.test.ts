/**
 * Nix archives made by the real `nix-store --dump` (Nix 2.8): a host key in a NAR, a `.nar.xz` and a
 * `.nar.zst` (as a binary cache serves them) is found under its path inside the archive; a NAR of a
 * single file; a NAR cut short is unscanned, reason truncated.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { detectContainer } from '../../../../src/core/scan/formats/container-kind.js';
import { githubToken, sshKey } from '../../../helpers/credentials.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

function dump(target: string, out: string): void {
  // Nix 2.8 warns about a missing nixbld group on stderr; the dump is still complete.
  writeFileSync(out, execFileSync('nix-store', ['--dump', target], { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] }));
}

function located(findings: { path: string; chain?: string[]; rule: string }[]): string[] {
  return findings.map((f) => `${path.basename(f.path)} › ${(f.chain ?? []).join(' › ')}|${f.rule}`).sort();
}

describe('Nix archives', () => {
  it('finds a host key in a NAR, a .nar.xz and a .nar.zst under its path in the archive', async () => {
    const work = await tempDir();
    const out = await tempDir();
    const key = sshKey('ed25519');
    const token = githubToken('ghp');
    const tree = path.join(work, 'etc-closure');
    await writeTree(tree, {
      'etc/ssh/ssh_host_ed25519_key': key.privateKey,
      'etc/ssh/ssh_host_ed25519_key.pub': key.publicKey,
      'etc/profile': 'export PATH=/run/current-system/sw/bin\n',
      'bin/deploy': `#!/bin/sh\nGITHUB_TOKEN=${token} exec deploy\n`,
      // Large enough to be streamed, not held: the member after it must still be found.
      'share/big.bin': Buffer.alloc(9 * 1024 * 1024),
      'zz/later.env': `TOKEN=${githubToken('ghp')}\n`,
    });
    chmodSync(path.join(tree, 'bin/deploy'), 0o755);
    symlinkSync('/etc/ssh/ssh_host_ed25519_key', path.join(tree, 'key-link'));
    const narFile = path.join(out, 'x.nar');
    dump(tree, narFile);
    expect(detectContainer(readFileSync(narFile))).toBe('nar');
    execFileSync('sh', ['-c', `xz -T1 -c x.nar > x.nar.xz && zstd -q -c x.nar > x.nar.zst`], { cwd: out });
    const report = await scanPaths([narFile, `${narFile}.xz`, `${narFile}.zst`], quiet);
    const expected = (name: string) => [
      `${name} › /bin/deploy|github-token`,
      `${name} › /etc/ssh/ssh_host_ed25519_key|private-key`,
      `${name} › /zz/later.env|github-token`,
    ];
    const found = located(report.findings).map((line) => line.replace(/\|(?:openssh|ssh)[-\w]*$/, '|private-key'));
    expect(found).toEqual([...expected('x.nar'), ...expected('x.nar.xz'), ...expected('x.nar.zst')].sort());
    // A symlink out of the archive is a remark, never followed.
    expect(report.problems.some((p) => /symlink points outside/.test(p.message))).toBe(true);
  });

  it('names the file of a single-file NAR after the archive; a cut NAR is unscanned (truncated)', async () => {
    const work = await tempDir();
    const token = githubToken('ghp');
    await writeTree(work, { 'secrets.env': `GITHUB_TOKEN=${token}\n` });
    const single = path.join(work, 'secrets.nar');
    dump(path.join(work, 'secrets.env'), single);
    const report = await scanPaths([single], quiet);
    expect(located(report.findings)).toEqual(['secrets.nar › secrets|github-token']);

    const tree = path.join(work, 'tree');
    await writeTree(tree, { 'a/b.txt': 'hello\n', 'c.txt': 'world\n' });
    const whole = path.join(work, 'tree.nar');
    dump(tree, whole);
    const cut = path.join(work, 'cut.nar');
    writeFileSync(cut, readFileSync(whole).subarray(0, readFileSync(whole).length - 24));
    const broken = await scanPaths([cut], quiet);
    expect(broken.findings.map((f) => f.rule)).toEqual(['unscanned-truncated']);
  });
});
