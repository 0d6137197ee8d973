/**
 * seed-install.sh under the shells a NixOS live system or a rescue shell offers: dash, busybox sh,
 * and busybox sh with only busybox applets on PATH (busybox's sha256sum, tar, cp, mv, find...).
 * Seeds are made by hand (test/helpers/seed-fixture.ts), never by the builder.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { gitRepo, tempDir, writeTree } from '../helpers/tmp.js';
import {
  buildSeedFixture,
  defaultBundles,
  defaultSource,
  makeSourceArchive,
  seedInstallScript,
  writeSha256Sums,
} from '../helpers/seed-fixture.js';
import { craftArchive, type CraftedEntry } from '../helpers/hostile-seed.js';

interface Shell {
  name: string;
  command: string;
  args: string[];
  /** Put a folder of busybox applet symlinks first and alone on PATH. */
  appletPath: boolean;
}

const shells: Shell[] = [
  { name: 'dash', command: 'dash', args: [], appletPath: false },
  { name: 'busybox sh', command: 'busybox', args: ['sh'], appletPath: false },
  { name: 'busybox sh + busybox applets on PATH', command: '/usr/bin/busybox', args: ['sh'], appletPath: true },
];

let appletDir = '';
beforeAll(async () => {
  appletDir = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-busybox-'));
  const applets = execFileSync('busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const applet of applets) await symlink('/usr/bin/busybox', path.join(appletDir, applet));
});
afterAll(async () => {
  await rm(appletDir, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runScript(shell: Shell, script: string, args: string[], cwd: string): Result {
  const env = shell.appletPath ? { ...process.env, PATH: appletDir } : process.env;
  const result = spawnSync(shell.command, [...shell.args, script, ...args], { cwd, env, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Every path under `dir`, relative and sorted, with a trailing '/' on folders. */
async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)) + (entry.isDirectory() ? '/' : ''))
    .sort();
}

const store = 'var/lib/dubnium/models';

/** A seed with its script and an empty target root side by side in one temp folder. */
async function setup(options: Parameters<typeof buildSeedFixture>[0] = {}): Promise<{ seed: string; target: string; script: string; elsewhere: string }> {
  const base = await tempDir();
  const seed = path.join(base, 'USB seed');
  const target = path.join(base, 'target root');
  const elsewhere = path.join(base, 'elsewhere');
  await mkdir(seed);
  await mkdir(target);
  await mkdir(elsewhere);
  await buildSeedFixture({ ...options, dir: seed });
  return { seed, target, script: path.join(seed, 'seed-install.sh'), elsewhere };
}


/** Replaces the seed's source archive with crafted entries and re-signs SHA256SUMS. */
async function replaceArchive(seed: string, entries: CraftedEntry[]): Promise<void> {
  const archive = path.join(seed, 'source', 'dubnium-0123abc.tar.gz');
  await craftArchive(archive, entries);
  await writeSha256Sums(seed);
}

test('the script parses under sh, dash and busybox sh', () => {
  for (const [command, ...args] of [['sh', '-n'], ['dash', '-n'], ['busybox', 'sh', '-n']]) {
    const result = spawnSync(command!, [...args, seedInstallScript], { encoding: 'utf8' });
    expect(result.stderr, command).toBe('');
    expect(result.status, command).toBe(0);
  }
});

describe.each(shells)('seed-install.sh under $name', (shell) => {
  test('installs every bundle and the source, from another cwd and through a path with spaces', async () => {
    const { seed, target, script, elsewhere } = await setup();
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('verified: all 8 files match');
    for (const [bundle, files] of Object.entries(defaultBundles)) {
      for (const [relative, content] of Object.entries(files)) {
        const installed = await readFile(path.join(target, store, bundle, relative));
        expect(installed.equals(Buffer.from(content)), `${bundle}/${relative}`).toBe(true);
      }
    }
    for (const [relative, content] of Object.entries(defaultSource)) {
      expect(await readFile(path.join(target, 'etc/nixos', relative), 'utf8')).toBe(content);
    }
    // No temporary names left anywhere.
    expect(await readdir(path.join(target, store))).toEqual(['embed-mini', 'qwen-small']);
    expect(await readdir(path.join(target, 'etc'))).toEqual(['nixos']);
    // The seed itself is untouched.
    expect(await listTree(seed)).toContain('models/qwen-small/tokenizer/tokenizer.json');
  });

  test('finds its seed when run by a bare name from inside it, with a relative --root', async () => {
    const { seed, target } = await setup();
    const result = runScript(shell, 'seed-install.sh', ['--root', path.relative(seed, target)], seed);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await readFile(path.join(target, 'etc/nixos/flake.nix'), 'utf8')).toBe(defaultSource['flake.nix']);
  });

  test('a flipped byte in a shard exits 3, names the file and writes nothing', async () => {
    const { seed, target, script, elsewhere } = await setup();
    const shard = path.join(seed, 'models/qwen-small/model-00002-of-00002.safetensors');
    const bytes = await readFile(shard);
    bytes[1234] = bytes[1234]! ^ 0x01;
    await writeFile(shard, bytes);
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('models/qwen-small/model-00002-of-00002.safetensors');
    expect(result.stderr).toMatch(/^seed-install: seed verification failed/m);
    expect(await listTree(target)).toEqual([]);
  });

  test('a corrupt source archive exits 3 before the full check and writes nothing', async () => {
    const { seed, target, script, elsewhere } = await setup();
    await appendFile(path.join(seed, 'source/dubnium-0123abc.tar.gz'), 'x');
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('source/dubnium-0123abc.tar.gz');
    expect(result.stdout).not.toContain('verifying');
    expect(await listTree(target)).toEqual([]);
  });

  test('a missing manifest is an incomplete seed', async () => {
    const { seed, target, script, elsewhere } = await setup();
    await unlink(path.join(seed, 'dubnium-seed.json'));
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/^seed-install: incomplete seed: dubnium-seed.json missing/);
    expect(await listTree(target)).toEqual([]);
  });

  test('a missing SHA256SUMS is an incomplete seed', async () => {
    const { seed, target, script, elsewhere } = await setup();
    await unlink(path.join(seed, 'SHA256SUMS'));
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('SHA256SUMS missing');
  });

  test('an unsupported format or a truncated manifest is refused', async () => {
    const { seed, target, script, elsewhere } = await setup();
    const manifest = path.join(seed, 'dubnium-seed.json');
    const text = await readFile(manifest, 'utf8');
    await writeFile(manifest, text.replace('"format": 1,', '"format": 2,'));
    let result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('seed format 2 is not supported');
    await writeFile(manifest, '{\n  "form');
    result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('no readable top-level "format"');
    expect(await listTree(target)).toEqual([]);
  });

  test('selfSha256: a matching manifest installs; one changed byte, or a damaged digest line, is refused', async () => {
    const { seed, target, script, elsewhere } = await setup();
    const manifest = path.join(seed, 'dubnium-seed.json');
    const data = JSON.parse(await readFile(manifest, 'utf8')) as Record<string, unknown>;
    const zeroed = `${JSON.stringify({ ...data, selfSha256: '0'.repeat(64) }, null, 2)}\n`;
    const digest = createHash('sha256').update(zeroed).digest('hex');
    const sealed = zeroed.replace('0'.repeat(64), digest);
    await writeFile(manifest, sealed);
    const dry = runScript(shell, script, ['--root', target, '--dry-run'], elsewhere);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);

    // A byte the script never parses (a date digit) is still caught.
    await writeFile(manifest, sealed.replace('2024-01-02', '2024-01-03'));
    let result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('dubnium-seed.json was changed after it was written');
    await writeFile(manifest, sealed.replace(`  "selfSha256": "${digest}"`, `\t"selfSha256": "${digest}"`));
    result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('selfSha256 line is damaged');
    expect(await listTree(target)).toEqual([]);
  });

  test('a SHA256SUMS entry escaping the seed is refused even when its hash matches', async () => {
    const { seed, target, script, elsewhere } = await setup();
    // A file outside the seed whose hash is correct: only the path check can catch it.
    await writeFile(path.join(seed, '..', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    const sum = execFileSync('sha256sum', ['../passwd'], { cwd: seed, encoding: 'utf8' });
    await appendFile(path.join(seed, 'SHA256SUMS'), sum.replace('../passwd', '../etc/../passwd'));
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('../etc/../passwd');
    expect(result.stderr).toContain('outside the seed');
    expect(await listTree(target)).toEqual([]);
  });

  test('absolute paths and malformed SHA256SUMS lines are refused', async () => {
    const { seed, target, script, elsewhere } = await setup();
    const sums = path.join(seed, 'SHA256SUMS');
    const original = await readFile(sums, 'utf8');
    await writeFile(sums, `${original}${'a'.repeat(64)}  /etc/passwd\n`);
    let result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('SHA256SUMS line 9 is not');
    await writeFile(sums, `${original}${'a'.repeat(64)} *seed-install.sh\n`);
    result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    await writeFile(sums, `${original}deadbeef  seed-install.sh\n`);
    result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(await listTree(target)).toEqual([]);
  });

  test('an unlisted extra file under models/ is refused', async () => {
    const { seed, target, script, elsewhere } = await setup();
    await writeFile(path.join(seed, 'models/embed-mini/extra.bin'), 'surprise');
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('models/embed-mini/extra.bin: not listed in SHA256SUMS');
    expect(await listTree(target)).toEqual([]);
  });

  test('a payload file swapped for a symlink with the same content is refused', async () => {
    const { seed, target, script, elsewhere } = await setup();
    const file = path.join(seed, 'models/embed-mini/model.safetensors');
    const outside = path.join(elsewhere, 'same-bytes');
    await writeFile(outside, await readFile(file));
    await unlink(file);
    await symlink(outside, file);
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('models/embed-mini/model.safetensors: is a symlink');
    expect(await listTree(target)).toEqual([]);
  });

  test('a bundle folder swapped for a symlink is refused', async () => {
    const { seed, target, script, elsewhere } = await setup();
    const moved = path.join(elsewhere, 'embed-mini');
    execFileSync('mv', [path.join(seed, 'models/embed-mini'), moved]);
    await symlink(moved, path.join(seed, 'models/embed-mini'));
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('folder models/embed-mini is a symlink');
    expect(await listTree(target)).toEqual([]);
  });

  test('an archive member with ../ is refused and nothing is written', async () => {
    const { seed, target, script, elsewhere } = await setup();
    await replaceArchive(seed, [
      { name: 'dubnium-0123abc/', type: 'directory' },
      { name: 'dubnium-0123abc/flake.nix' },
      { name: 'dubnium-0123abc/../../escaped', content: 'pwned\n' },
    ]);
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    // Both tars rewrite such names while listing and warn; the script refuses on that warning.
    expect(result.stderr).toMatch(/^seed-install: source\/dubnium-0123abc\.tar\.gz: unsafe member names \(tar: [Rr]emoving leading .dubnium-0123abc\/\.\.\/\.\.\/. from member names\); refusing this archive$/m);
    expect(await listTree(target)).toEqual([]);
    expect(await listTree(path.dirname(target))).not.toContain('escaped');
  });

  test('archive members written through a symlink, hard links, absolute paths and two top folders are refused', async () => {
    const { seed, target, script, elsewhere } = await setup();
    const cases: Array<[CraftedEntry[], RegExp]> = [
      [
        [
          { name: 'top/', type: 'directory' },
          { name: 'top/etc', type: 'symlink', linkname: '/etc' },
          { name: 'top/etc/evil', content: 'x' },
        ],
        /lies beneath symlink 'top\/etc'/,
      ],
      [
        [
          { name: 'top/', type: 'directory' },
          { name: 'top/a', content: 'a' },
          { name: 'top/b', type: 'link', linkname: 'top/a' },
        ],
        /is a hard link/,
      ],
      [[{ name: '/top/a', content: 'a' }], /unsafe member names \(tar: [Rr]emoving leading .\/. from member names\)/],
      [
        [
          { name: 'top/', type: 'directory' },
          { name: 'top/..', content: 'a' },
        ],
        // GNU tar warns about it; busybox lists it as is and the name check catches it.
        /unsafe member names|member 'top\/\.\.' contains '\.\.'/,
      ],
      [
        [
          { name: 'top/', type: 'directory' },
          { name: 'top/fifo', type: 'fifo' },
        ],
        /is not a file, folder or symlink/,
      ],
      [
        [
          { name: 'one/a', content: 'a' },
          { name: 'two/b', content: 'b' },
        ],
        /more than one top-level entry/,
      ],
      [[{ name: 'just-a-file', content: 'a' }], /is not a folder/],
    ];
    for (const [entries, message] of cases) {
      await replaceArchive(seed, entries);
      const result = runScript(shell, script, ['--root', target], elsewhere);
      expect(result.stderr, String(message)).toMatch(message);
      expect(result.code, String(message)).toBe(3);
      expect(await listTree(target)).toEqual([]);
    }
  });

  test('zero or two source archives are refused', async () => {
    const { seed, target, script, elsewhere } = await setup();
    await makeSourceArchive(path.join(seed, 'source/other-1.tar.gz'), 'other-1', { 'a.nix': '{}' });
    await writeSha256Sums(seed);
    let result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('expected exactly one');
    await rm(path.join(seed, 'source'), { recursive: true });
    await writeSha256Sums(seed);
    result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('no <name>-<rev>.tar.gz archive');
    expect(await listTree(target)).toEqual([]);
  });

  test('an existing bundle is replaced whole, with no temporary folder left behind', async () => {
    const { target, script, elsewhere } = await setup();
    const bundle = path.join(target, store, 'qwen-small');
    await writeTree(bundle, { 'config.json': 'old config', 'stale-shard.safetensors': 'old' });
    // Leftover of an interrupted earlier run.
    await writeTree(path.join(target, store, '.qwen-small.partial-99999'), { 'half.bin': 'x' });
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await readFile(path.join(bundle, 'config.json'), 'utf8')).toBe(defaultBundles['qwen-small']!['config.json']);
    await expect(lstat(path.join(bundle, 'stale-shard.safetensors'))).rejects.toThrow();
    expect(await readdir(path.join(target, store))).toEqual(['embed-mini', 'qwen-small']);
  });

  test('a full disk fails with exit 1, leaves the previous bundle whole and no temporary folder', async () => {
    const { target, script, elsewhere } = await setup({ bundles: { big: { 'shard.safetensors': Buffer.alloc(256 * 1024, 1) } } });
    // A real filesystem too small for the new bundle: the copy fails partway, as on a full disk.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', target]);
    try {
      await writeTree(path.join(target, store, 'big'), { 'old.txt': 'previous bundle' });
      const result = runScript(shell, script, ['--root', target], elsewhere);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^seed-install: copying models\/big to .*\.big\.partial-\d+ failed \(disk full\?\); .* is unchanged$/m);
      expect(await readdir(path.join(target, store))).toEqual(['big']);
      expect(await readdir(path.join(target, store, 'big'))).toEqual(['old.txt']);
      expect(await readdir(target)).toEqual(['var']);
    } finally {
      execFileSync('umount', [target]);
    }
  });

  test('--dry-run verifies, prints the plan and writes nothing', async () => {
    const { seed, target, script, elsewhere } = await setup();
    await writeTree(path.join(target, store, 'embed-mini'), { 'old.bin': 'old' });
    const before = await listTree(target);
    const result = runScript(shell, script, ['--root', target, '--dry-run'], elsewhere);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`would replace model bundle ${path.join(target, store, 'embed-mini')}`);
    expect(result.stdout).toContain(`would install model bundle models/qwen-small to ${path.join(target, store, 'qwen-small')}`);
    expect(result.stdout).toContain(`would unpack source/dubnium-0123abc.tar.gz into ${path.join(target, 'etc/nixos')}`);
    expect(await listTree(target)).toEqual(before);
    // A damaged seed still fails a dry run.
    await appendFile(path.join(seed, 'models/embed-mini/config.json'), ' ');
    const damaged = runScript(shell, script, ['--root', target, '--dry-run'], elsewhere);
    expect(damaged.code).toBe(3);
    expect(await listTree(target)).toEqual(before);
  });

  test('--help exits 0 with options and exit codes; bad usage exits 2', async () => {
    const { target, script, elsewhere } = await setup();
    const help = runScript(shell, script, ['--help'], elsewhere);
    expect(help.code).toBe(0);
    for (const text of ['--root DIR', '--source-to DIR', '--force', '--dry-run', 'Exit codes', 'hardware-configuration.nix']) {
      expect(help.stdout).toContain(text);
    }
    const unknown = runScript(shell, script, ['--bogus'], elsewhere);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe("seed-install: unknown option '--bogus'; see --help\n");
    const noRoot = runScript(shell, script, ['--root', path.join(target, 'not-mounted')], elsewhere);
    expect(noRoot.code).toBe(2);
    expect(noRoot.stderr).toContain('is not a folder');
    const missingValue = runScript(shell, script, ['--root'], elsewhere);
    expect(missingValue.code).toBe(2);
    expect(await listTree(target)).toEqual([]);
  });

  test('beside nixos-generate-config output: adds the source and keeps both generated files', async () => {
    const { target, script, elsewhere } = await setup();
    const nixos = path.join(target, 'etc/nixos');
    await writeTree(nixos, { 'hardware-configuration.nix': '# generated hw\n', 'configuration.nix': '# generated\n' });
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await readFile(path.join(nixos, 'hardware-configuration.nix'), 'utf8')).toBe('# generated hw\n');
    expect(await readFile(path.join(nixos, 'configuration.nix'), 'utf8')).toBe('# generated\n');
    expect((await readdir(nixos)).sort()).toEqual(['.sops.yaml', 'configuration.nix', 'flake.nix', 'hardware-configuration.nix', 'hosts']);
    expect(await readdir(path.join(target, 'etc'))).toEqual(['nixos']);
  });

  test('an existing file the archive would overwrite is refused without --force, before any bundle is installed', async () => {
    const { target, script, elsewhere } = await setup();
    const nixos = path.join(target, 'etc/nixos');
    await writeTree(nixos, { 'flake.nix': '# mine\n', 'hardware-configuration.nix': '# hw\n' });
    const before = await listTree(target);
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('already has: flake.nix');
    expect(result.stderr).toContain('--force');
    expect(await listTree(target)).toEqual(before);
    expect(await readFile(path.join(nixos, 'flake.nix'), 'utf8')).toBe('# mine\n');
  });

  test('--force replaces the source folder and keeps hardware-configuration.nix the archive lacks', async () => {
    const { target, script, elsewhere } = await setup();
    const nixos = path.join(target, 'etc/nixos');
    await writeTree(nixos, { 'flake.nix': '# mine\n', 'hardware-configuration.nix': '# hw\n', 'old.nix': 'x' });
    const result = runScript(shell, script, ['--root', target, '--force'], elsewhere);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect((await readdir(nixos)).sort()).toEqual(['.sops.yaml', 'flake.nix', 'hardware-configuration.nix', 'hosts']);
    expect(await readFile(path.join(nixos, 'flake.nix'), 'utf8')).toBe(defaultSource['flake.nix']);
    expect(await readFile(path.join(nixos, 'hardware-configuration.nix'), 'utf8')).toBe('# hw\n');
    expect(await readdir(path.join(target, 'etc'))).toEqual(['nixos']);
  });

  test("--force takes the archive's hardware-configuration.nix when it has one", async () => {
    const { target, script, elsewhere } = await setup({ source: { ...defaultSource, 'hardware-configuration.nix': '# from repo\n' } });
    const nixos = path.join(target, 'etc/nixos');
    await writeTree(nixos, { 'hardware-configuration.nix': '# generated\n' });
    const refused = runScript(shell, script, ['--root', target], elsewhere);
    expect(refused.code).toBe(2);
    const result = runScript(shell, script, ['--root', target, '--force'], elsewhere);
    expect(result.code).toBe(0);
    expect(await readFile(path.join(nixos, 'hardware-configuration.nix'), 'utf8')).toBe('# from repo\n');
  });

  test('a destination blocked by a file is refused with exit 2 before anything is written', async () => {
    const { target, script, elsewhere } = await setup();
    await writeTree(target, { 'var/lib': 'a file where a folder belongs' });
    let result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${path.join(target, 'var/lib')} is not a folder`);
    expect(await listTree(target)).toEqual(['var/', 'var/lib']);
    await rm(path.join(target, 'var'), { recursive: true });
    await writeTree(target, { etc: 'a file' });
    result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--source-to DIR');
    expect(await listTree(target)).toEqual(['etc']);
  });

  test('--source-to and the manifest modelStore choose the destinations', async () => {
    const { target, script, elsewhere } = await setup({ modelStore: '/srv/ai/models' });
    const sourceTo = path.join(elsewhere, 'checkout with space');
    const result = runScript(shell, script, [`--root=${target}`, '--source-to', sourceTo], elsewhere);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await readdir(path.join(target, 'srv/ai/models'))).toEqual(['embed-mini', 'qwen-small']);
    expect(await readFile(path.join(sourceTo, 'hosts/workstation/default.nix'), 'utf8')).toBe(defaultSource['hosts/workstation/default.nix']);
    expect(await listTree(target)).not.toContain('etc/');
  });

  test('without modelStore in the manifest the contract default is used', async () => {
    const { target, script, elsewhere } = await setup({ modelStore: null });
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.code).toBe(0);
    expect(await readdir(path.join(target, store))).toEqual(['embed-mini', 'qwen-small']);
  });

  test('an unsafe modelStore is refused', async () => {
    for (const modelStore of ['/var/lib/../../etc', 'relative/models', '/var/$(touch x)/models', '/var/lib/a b']) {
      const { target, script, elsewhere } = await setup({ modelStore });
      const result = runScript(shell, script, ['--root', target], elsewhere);
      expect(result.code, modelStore).toBe(3);
      expect(result.stderr, modelStore).toMatch(/^seed-install: dubnium-seed.json: modelStore/);
      expect(await listTree(target)).toEqual([]);
      expect(await listTree(elsewhere)).toEqual([]);
    }
  });

  test('a git archive (pax global header) with a long path and a symlink installs', async () => {
    const longPath = `modules/${'deeply-nested-folder/'.repeat(6)}service.nix`;
    const repo = await gitRepo({ 'flake.nix': '{ }\n', [longPath]: '{ }\n' });
    await symlink('flake.nix', path.join(repo, 'link.nix'));
    execFileSync('git', ['add', 'link.nix'], { cwd: repo });
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', 'commit', '-qm', 'link'], { cwd: repo });
    const { seed, target, script, elsewhere } = await setup();
    execFileSync('git', ['archive', '--format=tar.gz', '--prefix=dubnium-0123abc/', '-o', path.join(seed, 'source/dubnium-0123abc.tar.gz'), 'HEAD'], { cwd: repo });
    await writeSha256Sums(seed);
    const result = runScript(shell, script, ['--root', target], elsewhere);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const nixos = path.join(target, 'etc/nixos');
    expect(await readFile(path.join(nixos, longPath), 'utf8')).toBe('{ }\n');
    expect((await lstat(path.join(nixos, 'link.nix'))).isSymbolicLink()).toBe(true);
    expect(await readdir(nixos)).not.toContain('pax_global_header');
  });

  test('installed files are readable by the service user whatever the caller umask', async () => {
    const { seed, target, script, elsewhere } = await setup();
    await chmod(path.join(seed, 'models/embed-mini/config.json'), 0o644);
    const env = shell.appletPath ? { ...process.env, PATH: appletDir } : process.env;
    const result = spawnSync('sh', ['-c', 'umask 077; exec "$@"', 'sh', shell.command, ...shell.args, script, '--root', target], { cwd: elsewhere, env, encoding: 'utf8' });
    expect(result.status).toBe(0);
    const mode = (await lstat(path.join(target, store, 'embed-mini/config.json'))).mode & 0o777;
    expect(mode & 0o044).toBe(0o044);
  });
});
