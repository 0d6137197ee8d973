import { describe, expect, it } from 'vitest';
import { readLockedInputs, redactUrl } from '../../../src/core/flake/lock.js';
import { UsageError } from '../../../src/errors.js';

const NAR = 'sha256-ERTbv3KxraVAlLAvgJlFKplzslpXhfW5Kh2xtcGxTlo=';

function lock(nodes: Record<string, unknown>, version = 7): string {
  return JSON.stringify({ nodes, root: 'root', version });
}

const sample = lock({
  root: { inputs: { nixpkgs: 'nixpkgs', secrets: 'secrets', hw: 'hw', local: 'local', mods: 'mods', tool: 'tool', abs: 'abs', up: 'up', scp: 'scp', tok: 'tok', gitfile: 'gitfile' } },
  nixpkgs: { locked: { type: 'github', owner: 'NixOS', repo: 'nixpkgs', rev: 'a'.repeat(40), narHash: NAR, lastModified: 1 } },
  secrets: { flake: false, locked: { type: 'git', url: 'ssh://git@github.com/operator/nix-secrets.git', rev: 'b'.repeat(40), narHash: NAR } },
  // hw's own nixpkgs follows the root's; its `util` is transitive.
  hw: { inputs: { nixpkgs: ['nixpkgs'], util: 'util' }, locked: { type: 'github', owner: 'NixOS', repo: 'nixos-hardware', rev: 'c'.repeat(40), narHash: NAR } },
  util: { locked: { type: 'git', url: 'git+ssh://git@example.invalid/private/util.git', rev: 'd'.repeat(40), narHash: NAR } },
  local: { locked: { type: 'path', path: './modules/local', narHash: NAR } },
  mods: { locked: { type: 'tarball', url: 'https://example.invalid/mods.tar.gz', narHash: NAR } },
  tool: { locked: { type: 'git', url: 'https://example.invalid/tool.git', rev: 'e'.repeat(40), narHash: NAR } },
  abs: { locked: { type: 'path', path: '/home/operator/private-modules', narHash: NAR } },
  up: { locked: { type: 'path', path: '../sibling', narHash: NAR } },
  scp: { locked: { type: 'git', url: 'git@github.com:operator/private.git', rev: 'f'.repeat(40), narHash: NAR } },
  // Made at run time: a credential URL in this file's text would (rightly) stop the repository's own scan.
  tok: { locked: { type: 'tarball', url: ['https://oauth2', ':', 'glpat-', 'abcdef'.repeat(3), '12@gitlab.example.invalid/x.tar.gz?private_token=zzz&ref=main'].join(''), narHash: NAR } },
  gitfile: { locked: { type: 'git', url: 'file:///home/operator/src/private', rev: '1'.repeat(40), narHash: NAR } },
});

describe('flake.lock', () => {
  it('walks the graph from root, follows included, and classifies every input with a reason', () => {
    const { version, inputs } = readLockedInputs(sample);
    expect(version).toBe(7);
    const byNode = Object.fromEntries(inputs.map((input) => [input.node, input]));
    expect(Object.keys(byNode).sort()).toEqual(['abs', 'gitfile', 'hw', 'local', 'mods', 'nixpkgs', 'scp', 'secrets', 'tok', 'tool', 'up', 'util'].sort());
    const classes = Object.fromEntries(inputs.map((input) => [input.node, input.class]));
    expect(classes).toEqual({
      nixpkgs: 'fetched',
      secrets: 'carried',
      hw: 'fetched',
      util: 'carried',
      local: 'in-repo',
      mods: 'fetched',
      tool: 'fetched',
      abs: 'carried',
      up: 'carried',
      scp: 'carried',
      tok: 'carried',
      gitfile: 'carried',
    });
    expect(byNode.util!.paths).toEqual(['hw/util']);
    // The follows edge (hw/nixpkgs) names no new node.
    expect(byNode.nixpkgs!.paths).toEqual(['nixpkgs']);
    expect(byNode.secrets!.reason).toMatch(/ssh/);
    expect(byNode.secrets!.flake).toBe(false);
    expect(byNode.abs!.reason).toMatch(/absolute path/);
    expect(byNode.tok!.reason).toMatch(/credentials/);
    expect(byNode.tok!.url).not.toMatch(/glpat|zzz|oauth2/);
    expect(byNode.tok!.url).toContain('ref=main');
    expect(byNode.local!.reason).toMatch(/inside the repository/);
  });

  it('carries named inputs (by node key or attribute path), or all of them', () => {
    const named = readLockedInputs(sample, { carry: ['nixpkgs', 'hw'] });
    expect(named.inputs.find((input) => input.node === 'nixpkgs')!.class).toBe('carried');
    expect(named.inputs.find((input) => input.node === 'nixpkgs')!.reason).toMatch(/carryInputs/);
    expect(named.inputs.find((input) => input.node === 'mods')!.class).toBe('fetched');
    const all = readLockedInputs(sample, { carry: 'all' });
    expect(all.inputs.filter((input) => input.class === 'fetched')).toEqual([]);
    // Relative paths inside the repo are in the archive whatever is asked.
    expect(all.inputs.find((input) => input.node === 'local')!.class).toBe('in-repo');
    expect(readLockedInputs(sample, { carry: ['hw/util'] }).inputs.find((input) => input.node === 'util')!.class).toBe('carried');
  });

  it('refuses an unknown carry name, listing the names it has', () => {
    expect(() => readLockedInputs(sample, { carry: ['nope'] })).toThrow(/nope.*inputs are .*secrets/);
  });

  it('reads versions 5 and 6, and refuses others with exit 2', () => {
    for (const version of [5, 6]) expect(readLockedInputs(lock({ root: {} }, version)).inputs).toEqual([]);
    for (const version of [4, 8]) {
      let error: unknown;
      try {
        readLockedInputs(lock({ root: {} }, version));
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(UsageError);
      expect((error as UsageError).exitCode).toBe(2);
      expect((error as Error).message).toMatch(new RegExp(`version ${version}.*5, 6, 7`));
    }
    expect(() => readLockedInputs('{not json')).toThrow(UsageError);
    expect(() => readLockedInputs(lock({ root: { inputs: { a: ['missing'] } } }))).toThrow(/follows path/);
  });

  it('removes credentials from URLs', () => {
    expect(redactUrl('https://user:secret@example.invalid/a.git')).toBe('https://example.invalid/a.git');
    expect(redactUrl('https://ghp_token@github.com/a/b')).toBe('https://github.com/a/b');
    expect(redactUrl('ssh://git:pw@github.com/a/b.git')).toBe('ssh://git@github.com/a/b.git');
    expect(redactUrl('git@github.com:a/b.git')).toBe('git@github.com:a/b.git');
    expect(redactUrl('https://example.invalid/x?access_token=abc&rev=1')).toBe('https://example.invalid/x?rev=1');
  });
});
