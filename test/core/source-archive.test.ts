import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { appendFile, chmod, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { estimateArchiveBytes, planSourceArchive, sanitizeArchiveName, streamSourceArchive, type SourceArchiveOptions, type SourceEntry, type SourcePlan } from '../../src/core/source-archive.js';
import { git, gitRepo, tempDir, writeTree } from '../helpers/tmp.js';

/** The pinned commit time of test/helpers/tmp.ts (2024-01-02T03:04:05Z). */
const COMMIT_TIME = 1704164645;

// The commit time is the default mtime; an inherited SOURCE_DATE_EPOCH would override it.
const inheritedEpoch = process.env.SOURCE_DATE_EPOCH;
beforeAll(() => {
  delete process.env.SOURCE_DATE_EPOCH;
});
afterAll(() => {
  if (inheritedEpoch !== undefined) process.env.SOURCE_DATE_EPOCH = inheritedEpoch;
});

function options(repo: string, extra: Partial<SourceArchiveOptions> = {}): SourceArchiveOptions {
  return { repo, includeUntracked: false, plainFolder: false, submodules: 'include', ...extra };
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** Plans and packs `repo`, writes the archive to a temp file; returns plan, bytes and the file. */
async function build(repo: string, extra: Partial<SourceArchiveOptions> = {}): Promise<{ plan: SourcePlan; bytes: Buffer; file: string }> {
  const plan = await planSourceArchive(options(repo, extra));
  const bytes = await collect(streamSourceArchive(plan));
  const file = path.join(await tempDir('dubnium-seed-archive-'), plan.fileName);
  await writeFile(file, bytes);
  return { plan, bytes, file };
}

function tarList(file: string): string[] {
  return execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

function tarVerbose(file: string): string {
  return execFileSync('tar', ['--numeric-owner', '--full-time', '-tvzf', file], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
}

async function extract(file: string): Promise<string> {
  const dir = await tempDir('dubnium-seed-extract-');
  execFileSync('tar', ['-xzf', file, '-C', dir]);
  return dir;
}

async function expectUsageError(promise: Promise<unknown>, pattern: RegExp): Promise<UsageError> {
  const error = await promise.then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(UsageError);
  expect((error as UsageError).message).toMatch(pattern);
  return error as UsageError;
}

const baseFiles = {
  'flake.nix': '{ outputs = _: { }; }\n',
  'hosts/workstation/default.nix': '{ ... }: { networking.hostName = "dubnium"; }\n',
  'modules/vllm.nix': '{ ... }: { }\n',
  'scripts/deploy.sh': '#!/bin/sh\necho deploy\n',
  '.gitignore': 'result\n*.key\n',
};

async function baseRepo(): Promise<string> {
  const repo = await tempDir('dubnium-seed-repo-');
  await writeTree(repo, baseFiles);
  await chmod(path.join(repo, 'scripts/deploy.sh'), 0o755);
  await symlink('../modules/vllm.nix', path.join(repo, 'hosts/vllm-link.nix'));
  return gitRepo({}, repo);
}

describe('planSourceArchive + streamSourceArchive on a clean work tree', () => {
  it('gives identical bytes on two builds, also after file mtimes change', async () => {
    const repo = await baseRepo();
    const first = await build(repo);
    const second = await build(repo);
    expect(sha256(second.bytes)).toBe(sha256(first.bytes));

    for (const file of ['flake.nix', 'modules/vllm.nix', 'scripts/deploy.sh']) {
      await utimes(path.join(repo, file), new Date('2030-05-05T00:00:00Z'), new Date('2030-05-05T00:00:00Z'));
    }
    const touched = await build(repo);
    expect(touched.plan.dirty).toBe(false);
    expect(touched.plan.changedPaths).toEqual([]);
    expect(sha256(touched.bytes)).toBe(sha256(first.bytes));

    // A content change does change the digest (the comparison above could fail).
    await appendFile(path.join(repo, 'flake.nix'), '# changed\n');
    expect(sha256((await build(repo)).bytes)).not.toBe(sha256(first.bytes));
  });

  it('gives the same bytes from a fresh clone elsewhere (no dependence on paths, inodes, times or umask)', async () => {
    const repo = await baseRepo();
    const original = await build(repo, { name: 'nixos-config' });
    const clone = path.join(await tempDir('dubnium-seed-clone-'), 'nixos-config');
    execFileSync('sh', ['-c', 'umask 077 && git clone -q "$0" "$1"', repo, clone]);
    const cloned = await build(clone, { name: 'nixos-config' });
    expect(cloned.plan.commit).toBe(original.plan.commit);
    expect(sha256(cloned.bytes)).toBe(sha256(original.bytes));
  });

  it('never archives the .git file of a linked worktree', async () => {
    const repo = await baseRepo();
    const worktree = path.join(await tempDir('dubnium-seed-worktree-'), 'wt');
    git(repo, 'worktree', 'add', '-q', worktree);
    const { plan, file } = await build(worktree);
    expect(plan.entries.some((entry) => entry.path === '.git')).toBe(false);
    expect(tarList(file)).not.toContain(`${plan.topFolder}/.git`);
    expect(tarList(file)).toContain(`${plan.topFolder}/flake.nix`);
  });

  it('writes a fixed gzip header: no mtime, no name, Unix OS byte', async () => {
    const { bytes } = await build(await baseRepo());
    expect([...bytes.subarray(0, 10)]).toEqual([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x02, 0x03]);
    execFileSync('gzip', ['-t'], { input: bytes });
  });

  it('records the commit and puts everything under one top-level folder', async () => {
    const repo = await baseRepo();
    const head = git(repo, 'rev-parse', 'HEAD').trim();
    const { plan, file } = await build(repo);
    expect(plan.commit).toBe(head);
    expect(plan.shortRev).toBe(head.slice(0, 12));
    expect(plan.name).toBe(sanitizeArchiveName(path.basename(repo)));
    expect(plan.topFolder).toBe(`${plan.name}-${plan.shortRev}`);
    expect(plan.fileName).toBe(`${plan.topFolder}.tar.gz`);
    expect(plan.mtime).toBe(COMMIT_TIME);
    expect(plan.dirty).toBe(false);
    expect(plan.plainFolder).toBe(false);

    const listed = tarList(file);
    expect(listed[0]).toBe(`${plan.topFolder}/`);
    expect(new Set(listed.map((line) => line.split('/')[0]))).toEqual(new Set([plan.topFolder]));
    expect(listed.map((line) => line.slice(plan.topFolder.length + 1))).toEqual([
      '',
      '.gitignore',
      'flake.nix',
      'hosts/',
      'hosts/vllm-link.nix',
      'hosts/workstation/',
      'hosts/workstation/default.nix',
      'modules/',
      'modules/vllm.nix',
      'scripts/',
      'scripts/deploy.sh',
    ]);
    expect(plan.entries.map((entry) => entry.path)).toEqual(listed.slice(1).map((line) => line.slice(plan.topFolder.length + 1).replace(/\/$/, '')));
  });

  it('normalizes owner, modes and mtimes; keeps the exec bit as 0755', async () => {
    const repo = await baseRepo();
    await chmod(path.join(repo, 'flake.nix'), 0o600); // a private umask must not leak into the archive
    const { plan, file } = await build(repo);
    const lines = tarVerbose(file).split('\n').filter(Boolean);
    const byName = new Map(lines.map((line) => [line.split(/\s+/)[5]!.slice(plan.topFolder.length + 1), line]));
    expect(byName.get('scripts/deploy.sh')).toMatch(/^-rwxr-xr-x 0\/0 /);
    expect(byName.get('flake.nix')).toMatch(/^-rw-r--r-- 0\/0 /);
    expect(byName.get('hosts/')).toMatch(/^drwxr-xr-x 0\/0 /);
    expect(byName.get('')).toMatch(/^drwxr-xr-x 0\/0 /);
    expect(byName.get('hosts/vllm-link.nix')).toMatch(/^lrwxrwxrwx 0\/0 .* -> \.\.\/modules\/vllm\.nix$/);
    for (const line of lines) expect(line).toContain('2024-01-02 03:04:05');
  });

  it('archives paths longer than 100 characters and non-ASCII names', async () => {
    const longPath = `${'deep-folder-name/'.repeat(8)}${'a'.repeat(60)}.nix`;
    const longTarget = `../${'x'.repeat(120)}`;
    expect(longPath.length).toBeGreaterThan(155);
    const repo = await gitRepo({ 'flake.nix': '{}\n', [longPath]: 'long\n', 'hosts/café.nix': 'accent\n' });
    await symlink(longTarget, path.join(repo, 'long-link'));
    git(repo, 'add', 'long-link');
    git(repo, 'commit', '-q', '-m', 'link');
    const { plan, file } = await build(repo);
    const out = await extract(file);
    expect(await readFile(path.join(out, plan.topFolder, longPath), 'utf8')).toBe('long\n');
    expect(await readFile(path.join(out, plan.topFolder, 'hosts/café.nix'), 'utf8')).toBe('accent\n');
    expect(await readlink(path.join(out, plan.topFolder, 'long-link'))).toBe(longTarget);
    expect(tarList(file)).toContain(`${plan.topFolder}/${longPath}`);
  });

  it('estimates at least the real size, also for incompressible content', async () => {
    const repo = await gitRepo({ 'random.bin': randomBytes(3 * 1024 * 1024 + 17), 'small.nix': '{}\n', [`${'n'.repeat(120)}.nix`]: 'x' });
    const { plan, bytes } = await build(repo);
    expect(plan.contentBytes).toBe(3 * 1024 * 1024 + 17 + 3 + 1 + 0);
    const estimate = estimateArchiveBytes(plan);
    expect(estimate).toBeGreaterThanOrEqual(bytes.length);
    expect(estimate).toBeLessThan(bytes.length * 1.01 + 64 * 1024);
  });
});

describe('working-tree state', () => {
  async function dirtyRepo(): Promise<string> {
    const repo = await baseRepo();
    await writeFile(path.join(repo, 'modules/vllm.nix'), '{ ... }: { services.vllm.enable = true; }\n');
    await rm(path.join(repo, 'hosts/workstation/default.nix'));
    await writeTree(repo, {
      'notes.txt': 'untracked\n',
      'modules/new/untracked.nix': '{ }\n',
      'result': 'ignored build output\n',
      'secrets/age.key': 'AGE-SECRET-KEY-IGNORED\n',
      'staged.nix': 'staged\n',
    });
    git(repo, 'add', 'staged.nix');
    return repo;
  }

  it('archives modified content, leaves out deleted, untracked and ignored files, and reports the changes', async () => {
    const repo = await dirtyRepo();
    const { plan, file } = await build(repo);
    expect(plan.dirty).toBe(true);
    expect(plan.changedPaths).toEqual(['hosts/workstation/default.nix', 'modules/vllm.nix', 'staged.nix']);
    expect(plan.untrackedIncluded).toEqual([]);
    expect(plan.untrackedExcluded).toBe(2);

    const names = tarList(file).map((line) => line.slice(plan.topFolder.length + 1));
    expect(names).toContain('staged.nix');
    expect(names).not.toContain('hosts/workstation/default.nix');
    expect(names).not.toContain('hosts/workstation/');
    for (const absent of ['notes.txt', 'modules/new/untracked.nix', 'result', 'secrets/age.key', 'secrets/', '.git/']) {
      expect(names).not.toContain(absent);
    }
    expect(names.some((name) => name.startsWith('.git/') || name.includes('/.git'))).toBe(false);

    const out = await extract(file);
    expect(await readFile(path.join(out, plan.topFolder, 'modules/vllm.nix'), 'utf8')).toBe('{ ... }: { services.vllm.enable = true; }\n');
  });

  it('includes untracked (but never ignored) files on request', async () => {
    const repo = await dirtyRepo();
    const { plan, file } = await build(repo, { includeUntracked: true });
    expect(plan.untrackedIncluded).toEqual(['modules/new/untracked.nix', 'notes.txt']);
    expect(plan.untrackedExcluded).toBe(0);
    expect(plan.changedPaths).toEqual(['hosts/workstation/default.nix', 'modules/new/untracked.nix', 'modules/vllm.nix', 'notes.txt', 'staged.nix']);
    const names = tarList(file).map((line) => line.slice(plan.topFolder.length + 1));
    expect(names).toEqual(expect.arrayContaining(['notes.txt', 'modules/new/', 'modules/new/untracked.nix']));
    expect(names).not.toContain('result');
    expect(names).not.toContain('secrets/age.key');
  });

  it('keeps symlinks as symlinks and never reads through them, even when they point outside the repo', async () => {
    const outside = await tempDir('dubnium-seed-outside-');
    const secretFile = path.join(outside, 'private.key');
    await writeFile(secretFile, 'OUTSIDE-SECRET-CONTENT\n');
    const repo = await baseRepo();
    await symlink(secretFile, path.join(repo, 'outside-link'));
    await symlink('does-not-exist', path.join(repo, 'dangling'));
    git(repo, 'add', 'outside-link', 'dangling');
    git(repo, 'commit', '-q', '-m', 'links');

    const seen: Buffer[] = [];
    const plan = await planSourceArchive(options(repo));
    const bytes = await collect(streamSourceArchive(plan, { onEntryChunk: (_entry, chunk) => seen.push(Buffer.from(chunk)) }));
    expect(plan.entries.find((entry) => entry.path === 'outside-link')).toMatchObject({ type: 'symlink', size: 0, mode: 0o777, linkTarget: secretFile });
    expect(Buffer.concat(seen).includes('OUTSIDE-SECRET-CONTENT')).toBe(false);
    expect(execFileSync('gzip', ['-dc'], { input: bytes }).includes('OUTSIDE-SECRET-CONTENT')).toBe(false);

    const file = path.join(outside, 'archive.tar.gz');
    await writeFile(file, bytes);
    const out = await extract(file);
    expect(await readlink(path.join(out, plan.topFolder, 'outside-link'))).toBe(secretFile);
    expect(await readlink(path.join(out, plan.topFolder, 'dangling'))).toBe('does-not-exist');
    expect(await readlink(path.join(out, plan.topFolder, 'hosts/vllm-link.nix'))).toBe('../modules/vllm.nix');
  });

  it('refuses to include a nested repository that is not a submodule, and counts it otherwise', async () => {
    const repo = await baseRepo();
    await gitRepo({ 'x.nix': 'x\n' }, path.join(repo, 'nested-clone'));
    expect((await planSourceArchive(options(repo))).untrackedExcluded).toBe(1);
    await expectUsageError(planSourceArchive(options(repo, { includeUntracked: true })), /nested-clone .*not a submodule/);
  });

  it('stops reading when the consumer destroys the stream', async () => {
    const repo = await gitRepo({ 'big.bin': randomBytes(4 * 1024 * 1024) });
    const plan = await planSourceArchive(options(repo));
    let chunks = 0;
    const stream = streamSourceArchive(plan, { onEntryChunk: () => (chunks += 1) });
    await new Promise<void>((resolve) => {
      stream.once('data', () => {
        stream.destroy();
        resolve();
      });
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stream.destroyed).toBe(true);
    expect(chunks).toBeLessThan(4);
  });

  it('fails clearly when a file changes between planning and packing', async () => {
    const repo = await baseRepo();
    const plan = await planSourceArchive(options(repo));
    await appendFile(path.join(repo, 'modules/vllm.nix'), 'more\n');
    await expectUsageError(collect(streamSourceArchive(plan)), /modules\/vllm\.nix changed while archiving.*rerun/);
  });
});

describe('hooks', () => {
  it('receive every file byte exactly once, in chunks, between start and end', async () => {
    const big = randomBytes(2 * 1024 * 1024 + 12345);
    const repo = await gitRepo({ 'big.bin': big, 'empty.nix': '', 'a.nix': 'a\n', 'sub/b.nix': 'b\n' });
    const plan = await planSourceArchive(options(repo));
    const received = new Map<string, Buffer[]>();
    const events: string[] = [];
    let open: string | null = null;
    await collect(
      streamSourceArchive(plan, {
        onEntryStart: (entry) => {
          expect(open).toBeNull();
          open = entry.path;
          events.push(`start ${entry.path}`);
          received.set(entry.path, []);
        },
        onEntryChunk: (entry, chunk) => {
          expect(entry.path).toBe(open);
          received.get(entry.path)!.push(Buffer.from(chunk));
        },
        onEntryEnd: async (entry) => {
          await new Promise((resolve) => setTimeout(resolve, 1));
          events.push(`end ${entry.path}`);
          open = null;
        },
      }),
    );
    const files = plan.entries.filter((entry: SourceEntry) => entry.type === 'file').map((entry) => entry.path);
    expect(files).toEqual(['a.nix', 'big.bin', 'empty.nix', 'sub/b.nix']);
    expect(events).toEqual(files.flatMap((name) => [`start ${name}`, `end ${name}`]));
    for (const name of files) {
      expect(Buffer.concat(received.get(name)!).equals(await readFile(path.join(repo, name)))).toBe(true);
    }
    expect(received.get('big.bin')!.length).toBeGreaterThan(1);
  });
});

describe('folders and repositories', () => {
  it('archives a subfolder of a work tree with paths relative to it', async () => {
    const repo = await gitRepo({
      'package.json': '{}\n',
      'fixtures/nixos-config/flake.nix': '{ }\n',
      'fixtures/nixos-config/hosts/demo.nix': '{ }\n',
      'fixtures/nixos-configuration-other/x.nix': 'not me\n',
      'src/cli.ts': 'export {};\n',
    });
    await writeFile(path.join(repo, 'fixtures/nixos-config/flake.nix'), '{ changed }\n');
    await writeFile(path.join(repo, 'src/cli.ts'), 'changed outside the subfolder\n');
    await writeTree(repo, { 'fixtures/nixos-config/untracked.nix': 'u\n', 'stray.txt': 'outside\n' });
    const { plan, file } = await build(path.join(repo, 'fixtures/nixos-config'));
    expect(plan.name).toBe('nixos-config');
    expect(plan.commit).toBe(git(repo, 'rev-parse', 'HEAD').trim());
    expect(plan.entries.map((entry) => entry.path)).toEqual(['flake.nix', 'hosts', 'hosts/demo.nix']);
    expect(plan.changedPaths).toEqual(['flake.nix']);
    expect(plan.untrackedExcluded).toBe(1);
    expect(tarList(file)).toEqual([`${plan.topFolder}/`, `${plan.topFolder}/flake.nix`, `${plan.topFolder}/hosts/`, `${plan.topFolder}/hosts/demo.nix`]);
  });

  it('refuses a folder that is not a git work tree unless --plain-folder is given', async () => {
    const folder = await tempDir('dubnium-seed-plain-');
    await writeTree(folder, { 'flake.nix': '{ }\n', 'hosts/a.nix': 'a\n', '.git': 'gitdir: /elsewhere\n', 'sub/.git/config': '[core]\n' });
    await chmod(path.join(folder, 'flake.nix'), 0o755);
    await symlink('hosts/a.nix', path.join(folder, 'link'));
    await expectUsageError(planSourceArchive(options(folder)), /not inside a git work tree.*--plain-folder/);

    const { plan, file } = await build(folder, { plainFolder: true, name: 'my config!' });
    expect(plan).toMatchObject({ commit: null, shortRev: 'nogit', dirty: false, changedPaths: [], mtime: 0, plainFolder: true, name: 'my-config', topFolder: 'my-config-nogit' });
    expect(tarList(file)).toEqual(['my-config-nogit/', 'my-config-nogit/flake.nix', 'my-config-nogit/hosts/', 'my-config-nogit/hosts/a.nix', 'my-config-nogit/link', 'my-config-nogit/sub/']);
    expect(tarVerbose(file)).toMatch(/-rwxr-xr-x 0\/0 .* my-config-nogit\/flake\.nix/);
  });

  it('refuses --plain-folder inside a work tree, a missing path, a bare repository and a repository without commits', async () => {
    const repo = await baseRepo();
    await expectUsageError(planSourceArchive(options(repo, { plainFolder: true })), /drop --plain-folder/);
    await expectUsageError(planSourceArchive(options(path.join(repo, 'no-such-folder'))), /does not exist/);
    await expectUsageError(planSourceArchive(options(path.join(repo, 'flake.nix'))), /is not a folder/);
    await expectUsageError(planSourceArchive(options(path.join(repo, '.git'))), /inside a \.git folder/);

    const bare = await tempDir('dubnium-seed-bare-');
    git(bare, 'init', '-q', '--bare');
    await expectUsageError(planSourceArchive(options(bare)), /bare git repository/);

    const empty = await tempDir('dubnium-seed-empty-');
    await writeTree(empty, { 'flake.nix': '{ }\n' });
    git(empty, 'init', '-q');
    await expectUsageError(planSourceArchive(options(empty)), /commit something first or pass --plain-folder/);
  });

  it('explains what to do when git refuses a repository owned by another user', async () => {
    const repo = await baseRepo();
    execFileSync('chown', ['-R', '54321:54321', repo]);
    const saved = { GIT_CONFIG_GLOBAL: process.env.GIT_CONFIG_GLOBAL };
    try {
      // An empty global config, so a safe.directory set on this machine does not hide the refusal.
      process.env.GIT_CONFIG_GLOBAL = path.join(await tempDir('dubnium-seed-home-'), 'gitconfig');
      await expectUsageError(planSourceArchive(options(repo)), /belongs to another user.*safe\.directory/);
    } finally {
      if (saved.GIT_CONFIG_GLOBAL === undefined) delete process.env.GIT_CONFIG_GLOBAL;
      else process.env.GIT_CONFIG_GLOBAL = saved.GIT_CONFIG_GLOBAL;
    }
  });

  it('respects SOURCE_DATE_EPOCH, and an explicit sourceDateEpoch over it', async () => {
    const repo = await baseRepo();
    try {
      process.env.SOURCE_DATE_EPOCH = '1600000000';
      const { plan, file } = await build(repo);
      expect(plan.mtime).toBe(1600000000);
      expect(tarVerbose(file)).toContain('2020-09-13 12:26:40');
      expect((await planSourceArchive(options(repo, { sourceDateEpoch: 1234 }))).mtime).toBe(1234);
      process.env.SOURCE_DATE_EPOCH = 'yesterday';
      await expectUsageError(planSourceArchive(options(repo)), /SOURCE_DATE_EPOCH/);
    } finally {
      delete process.env.SOURCE_DATE_EPOCH;
    }
  });
});

describe('submodules', () => {
  async function withSubmodule(): Promise<{ parent: string; sub: string }> {
    const sub = await gitRepo({ 'lib.nix': '{ lib = 1; }\n', 'nested/deep.nix': 'deep\n' });
    const parent = await gitRepo({ 'flake.nix': '{ }\n' });
    git(parent, '-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', sub, 'vendor/lib');
    git(parent, 'commit', '-q', '-m', 'add submodule');
    return { parent, sub };
  }

  it('includes an initialized submodule working tree under its path, without its .git file', async () => {
    const { parent } = await withSubmodule();
    const { plan, file } = await build(parent);
    expect(plan.submodules).toEqual(['vendor/lib']);
    expect(plan.dirty).toBe(false);
    const names = tarList(file).map((line) => line.slice(plan.topFolder.length + 1));
    expect(names).toEqual(['', '.gitmodules', 'flake.nix', 'vendor/', 'vendor/lib/', 'vendor/lib/lib.nix', 'vendor/lib/nested/', 'vendor/lib/nested/deep.nix']);
    const out = await extract(file);
    expect(await readFile(path.join(out, plan.topFolder, 'vendor/lib/nested/deep.nix'), 'utf8')).toBe('deep\n');

    // Changes inside the submodule and a different checked-out commit are both reported.
    const submodule = path.join(parent, 'vendor/lib');
    await writeFile(path.join(submodule, 'lib.nix'), '{ lib = 2; }\n');
    expect((await planSourceArchive(options(parent))).changedPaths).toEqual(['vendor/lib/lib.nix']);
    git(submodule, 'commit', '-q', '-am', 'bump');
    const bumped = await planSourceArchive(options(parent));
    expect(bumped.changedPaths).toEqual(['vendor/lib']);
    expect(bumped.dirty).toBe(true);
  });

  it('refuses submodules when asked to, naming them', async () => {
    const { parent } = await withSubmodule();
    await expectUsageError(planSourceArchive(options(parent, { submodules: 'refuse' })), /vendor\/lib/);
  });

  it('refuses an uninitialized submodule instead of dropping it', async () => {
    const { parent } = await withSubmodule();
    const clone = path.join(await tempDir('dubnium-seed-clone-'), 'clone');
    git(path.dirname(clone), 'clone', '-q', parent, clone);
    await expectUsageError(planSourceArchive(options(clone)), /Submodule vendor\/lib .*not initialized.*git submodule update --init/);
  });
});

