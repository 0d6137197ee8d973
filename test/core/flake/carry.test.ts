import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildSeed, planBuild, type BuildOptions } from '../../../src/core/build-seed.js';
import { planFlakeInputs } from '../../../src/core/flake/carry.js';
import { narHashOfInputArchive, checkCarriedInput } from '../../../src/core/flake/verify-inputs.js';
import { fixedOutputSourcePath } from '../../../src/core/flake/store-path.js';
import { MANIFEST_NAME, CHECKSUMS_NAME, renderChecksums, renderManifest } from '../../../src/core/manifest.js';
import { parseManifest } from '../../../src/core/manifest-schema.js';
import { verifySeed } from '../../../src/core/verify-seed.js';
import { flakeInputLines, formatPlan } from '../../../src/ui/wizard/steps.js';
import { tempDir } from '../../helpers/tmp.js';
import { makeFlakeFixture } from './flake-fixture.js';

function options(repo: string, target: string, nixStore: string, extra: Partial<BuildOptions> = {}): BuildOptions {
  return {
    target,
    profile: null,
    source: { repo, includeUntracked: false, plainFolder: false, submodules: 'include' },
    models: [],
    modelStore: '/var/lib/dubnium/models',
    scan: { allowlist: [], operatorSecrets: false },
    verify: false,
    flakeInputs: { carry: [], clones: {}, nixStore },
    ...extra,
  };
}

describe('carrying flake inputs (core)', () => {
  it('the plan lists each input with its class and reason, and where carried bytes come from', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir);
    const plan = await planBuild(options(fixture.configRepo, path.join(dir, 'seed'), fixture.store));
    expect(plan.flake.carried.map((input) => input.name).sort()).toEqual(['notes', 'secrets']);
    expect(plan.flake.carried.find((input) => input.name === 'secrets')!.source).toEqual({ kind: 'store', path: path.join(fixture.store, fixedOutputSourcePath(fixture.narHash)) });
    const lines = flakeInputLines(plan).join('\n');
    expect(lines).toMatch(/^ {2}inputs {3}local {2}nothing to carry/);
    expect(lines).toMatch(/ {3}secrets {2}carried -> inputs\/secrets-[0-9a-f]{12}\.tar\.gz {2}\(git over ssh/);
    expect(lines).toContain(`registered as ${fixedOutputSourcePath(fixture.narHash)} by seed-install.sh`);
    expect(lines).toMatch(/nixpkgs {2}fetched at install: github:NixOS\/nixpkgs/);
    expect(lines).toMatch(/local {2}nothing to carry: a relative path inside the repository/);
    expect(formatPlan(plan, { modelStore: '/var/lib/dubnium/models', verify: true })).toContain(lines);
  });

  it('carry: all names public inputs too; their bytes must then be on this machine', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir);
    const root = fixture.configRepo;
    await expect(planFlakeInputs(root, true, { carry: 'all', clones: {}, nixStore: fixture.store })).rejects.toThrow(/Flake input nixpkgs \(github:NixOS\/nixpkgs\) must travel on the seed \(every input is carried/);
    const local = await planFlakeInputs(root, true, { carry: [], clones: {}, nixStore: fixture.store });
    expect(local.carried).toHaveLength(2);
    const secretsOf = (plan: typeof local) => plan.carried.find((input) => input.name === 'secrets')!;
    // From a clone, the free-space estimate comes from the locked commit's blobs.
    const fromClone = await planFlakeInputs(root, true, { carry: [], clones: { secrets: fixture.privateRepo }, nixStore: path.join(dir, 'empty') });
    expect(secretsOf(fromClone).source).toEqual({ kind: 'clone', path: fixture.privateRepo, rev: fixture.rev });
    expect(secretsOf(fromClone).contentBytes).toBe(secretsOf(local).contentBytes);
    await expect(planFlakeInputs(root, true, { carry: [], clones: { secrets: path.join(dir, 'nope') }, nixStore: path.join(dir, 'empty') })).rejects.toThrow(/source\.inputClones\.secrets\) is .*nope, which is not a folder/);
  });

  it('verify streams each carried tar.gz through a NAR hasher: a tree changed behind consistent checksums is caught', async () => {
    const dir = await tempDir();
    const fixture = await makeFlakeFixture(dir);
    const seed = path.join(dir, 'seed');
    const result = await buildSeed(options(fixture.configRepo, seed, fixture.store));
    const carried = result.manifest.flake!.inputs.find((input) => input.name === 'secrets')!;
    const file = path.join(seed, carried.file!);
    expect((await narHashOfInputArchive(file)).narHash).toBe(fixture.narHash);
    expect((await verifySeed({ root: seed, scan: false })).ok).toBe(true);

    // Repack the tree with one file changed, and make SHA256SUMS and the manifest agree with it.
    const work = path.join(dir, 'work');
    await mkdir(work);
    execFileSync('tar', ['-xzf', file, '-C', work]);
    await writeFile(path.join(work, 'source/flake.nix'), '{ outputs = _: { value = "swapped"; }; }\n');
    // GNU tar's own order is not NAR order: such an archive is refused as it is.
    execFileSync('sh', ['-c', `LC_ALL=C tar -C "${work}" -cf - source | gzip -n > "${file}"`]);
    expect((await narHashOfInputArchive(file)).issues.join('\n')).toMatch(/not in NAR order/);
    // --sort=name is NAR order (per folder, bytewise): the hash itself must then tell.
    execFileSync('sh', ['-c', `LC_ALL=C tar --sort=name -C "${work}" -cf - source | gzip -n > "${file}"`]);
    const bytes = await readFile(file);
    const manifest = parseManifest(await readFile(path.join(seed, MANIFEST_NAME), 'utf8')).manifest!;
    const files = manifest.files.map((entry) => (entry.path === carried.file ? { ...entry, size: (bytes.length), sha256: createHash('sha256').update(bytes).digest('hex') } : entry));
    const checksums = renderChecksums(files);
    await writeFile(path.join(seed, CHECKSUMS_NAME), checksums);
    const { selfSha256: _, ...rest } = manifest;
    const flake = { ...manifest.flake!, inputs: manifest.flake!.inputs.map((input) => (input.file === carried.file ? { ...input, sha256: files.find((entry) => entry.path === carried.file)!.sha256, size: bytes.length } : input)) };
    await writeFile(path.join(seed, MANIFEST_NAME), renderManifest({ ...rest, files, flake, checksums: { file: 'SHA256SUMS', sha256: createHash('sha256').update(checksums).digest('hex') }, totals: { files: files.length, bytes: files.reduce((sum, entry) => sum + entry.size, 0) } }));
    expect((await stat(file)).size).toBe(bytes.length);

    const report = await verifySeed({ root: seed, scan: false });
    expect(report.ok).toBe(false);
    const problem = report.problems.find((entry) => entry.kind === 'flake-input');
    expect(problem?.message).toMatch(/flake input secrets.*NAR hash .* the manifest \(and flake\.lock\) say/);
    // A store path that does not follow from the narHash is reported too.
    expect(await checkCarriedInput(file, { narHash: fixture.narHash, storePath: '/nix/store/00000000000000000000000000000000-source' })).toEqual(
      expect.arrayContaining([expect.stringMatching(/is not the one its narHash gives/)]),
    );
  });
});
