/**
 * `dubnium-seed verify` on hostile and broken media, driven as a user would: the built CLI on a
 * freshly built seed, changed one way at a time. Each case must give a clear message and the
 * contract's exit code, with no stack trace, no hang and no read outside the seed (proven with
 * strace where it matters).
 *
 * Covered elsewhere, not repeated here: an empty partition, a partition with another filesystem
 * (swap, squashfs) and a damaged ext4 through `verify /dev/loopN` or an image are in
 * test/media/seed-access.test.ts ("hostile and broken media"); manifest and archive details at
 * the core level are in test/core/verify-seed.test.ts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Manifest } from '../../src/core/manifest.js';
import { buildSeedTemplate, CLI, runCli, type CliResult } from '../helpers/cli.js';
import { githubToken } from '../helpers/credentials.js';
import { tempDir } from '../helpers/tmp.js';
import { craftArchive, readManifest, reseal, sha256 } from '../helpers/hostile-seed.js';

let template = '';
let workspace = '';

beforeAll(async () => {
  workspace = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-verify-hostile-'));
  template = await buildSeedTemplate(workspace, { shards: 2, shardBytes: 1024 * 1024 });
}, 120_000);

afterAll(async () => {
  if (workspace) await rm(workspace, { recursive: true, force: true });
});

/** A copy of the seed at `<base>/media/seed`, so `../../x` from the seed is `<base>/x`. */
async function freshSeed(): Promise<{ base: string; seed: string }> {
  const base = await tempDir();
  const seed = path.join(base, 'media', 'seed');
  await mkdir(path.dirname(seed));
  execFileSync('cp', ['-a', template, seed]);
  return { base, seed };
}


/** Every outcome: a clean exit code, no stack trace, no internal error, one JSON document with --json. */
function expectClean(result: CliResult, code: number): void {
  expect(result.signal).toBeNull();
  expect(result.stderr).not.toMatch(/internal error|\n\s+at [\w<]/);
  expect(result.stdout).not.toMatch(/\n\s+at [\w<]/);
  expect(result.code).toBe(code);
}

async function verifyBoth(seed: string, code: number): Promise<{ human: CliResult; json: { problems: { path: string; kind: string; message: string; action: string }[]; cacheBypass: string } }> {
  const human = await runCli(['verify', seed]);
  expectClean(human, code);
  const machine = await runCli(['verify', seed, '--json']);
  expectClean(machine, code);
  return { human, json: JSON.parse(machine.stdout) };
}

/** Runs verify under strace and returns every file-related syscall that names `needle`. */
function tracedFileCalls(seed: string, needle: string, logDir: string): { code: number | null; calls: string[] } {
  const log = path.join(logDir, 'strace.log');
  const result = spawnSync('strace', ['-f', '-qq', '-e', 'trace=%file,%desc', '-o', log, process.execPath, CLI, 'verify', seed, '--json'], { encoding: 'utf8', timeout: 120_000, env: { PATH: process.env.PATH, CI: 'true' } });
  const calls = execFileSync('cat', [log], { encoding: 'utf8' }).split('\n').filter((line) => line.includes(needle));
  return { code: result.status, calls };
}


describe('broken manifests: exit 3 with a clear message', () => {
  it('a truncated manifest', async () => {
    const { seed } = await freshSeed();
    const file = path.join(seed, 'dubnium-seed.json');
    await truncate(file, Math.floor((await stat(file)).size / 3));
    const { human, json } = await verifyBoth(seed, 3);
    expect(human.stdout).toMatch(/MANIFEST +dubnium-seed\.json is not valid JSON/);
    expect(json.problems).toEqual([expect.objectContaining({ path: 'dubnium-seed.json', kind: 'manifest' })]);
  });

  it('a manifest that is not JSON', async () => {
    const { seed } = await freshSeed();
    await writeFile(path.join(seed, 'dubnium-seed.json'), Buffer.from([0xff, 0xfe, 0, 1, 2, 3]));
    const { human } = await verifyBoth(seed, 3);
    expect(human.stdout).toMatch(/dubnium-seed\.json is not valid JSON/);
    expect(human.stdout).toMatch(/-> Do not use this media; rebuild the seed/);
  });

  it('format 2 names both formats and what to do', async () => {
    const { seed } = await freshSeed();
    await reseal(seed, (manifest) => void ((manifest as { format: number }).format = 2));
    const { human } = await verifyBoth(seed, 3);
    expect(human.stdout).toMatch(/has format 2; this tool reads format 1/);
    expect(human.stdout).toMatch(/newer dubnium-seed/);
  });

  it('a 100 MB manifest is refused quickly and is never opened', async () => {
    const { base, seed } = await freshSeed();
    const file = path.join(seed, 'dubnium-seed.json');
    await truncate(file, 100 * 1024 * 1024);
    const started = Date.now();
    const { human } = await verifyBoth(seed, 3);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(human.stdout).toMatch(/dubnium-seed\.json is 104857600 bytes, more than .* \(refused unread\)/);
    const traced = tracedFileCalls(seed, 'dubnium-seed.json', base);
    expect(traced.code).toBe(3);
    expect(traced.calls.filter((call) => /open/.test(call))).toEqual([]);
  });
});

describe('nothing outside the seed is ever read', () => {
  it('SHA256SUMS entry ../../etc/passwd whose hash matches: refused, never opened or stat-ed', async () => {
    const { base, seed } = await freshSeed();
    const passwd = Buffer.from('root:x:0:0::/root:/bin/sh\n');
    await mkdir(path.join(base, 'etc'));
    await writeFile(path.join(base, 'etc', 'passwd'), passwd);
    const sums = path.join(seed, 'SHA256SUMS');
    await writeFile(sums, `${await readFile(sums, 'utf8')}${sha256(passwd)}  ../../etc/passwd\n`);
    const { human, json } = await verifyBoth(seed, 3);
    expect(human.stdout).toMatch(/SHA256SUMS line \d+: path "\.\.\/\.\.\/etc\/passwd" leaves the seed root/);
    expect(json.problems.every((problem) => !problem.path.includes('..'))).toBe(true);
    const traced = tracedFileCalls(seed, 'etc/passwd', base);
    expect(traced.code).toBe(3);
    expect(traced.calls.filter((call) => call.includes(base) || call.includes('../'))).toEqual([]);
  });

  it('manifest entry ../../etc/passwd (digests resealed): refused, never opened or stat-ed', async () => {
    const { base, seed } = await freshSeed();
    const passwd = Buffer.from('root:x:0:0::/root:/bin/sh\n');
    await mkdir(path.join(base, 'etc'));
    await writeFile(path.join(base, 'etc', 'passwd'), passwd);
    await reseal(seed, (manifest) => manifest.files.push({ path: '../../etc/passwd', size: passwd.length, sha256: sha256(passwd) }));
    const { human } = await verifyBoth(seed, 3);
    expect(human.stdout).toMatch(/files\.\d+\.path: must be a relative path inside the seed/);
    const traced = tracedFileCalls(seed, 'etc/passwd', base);
    expect(traced.calls.filter((call) => call.includes(base) || call.includes('../'))).toEqual([]);
  });

  it('a shard swapped for a symlink to an identical file outside: not-regular, the target never opened', async () => {
    const { base, seed } = await freshSeed();
    const rel = 'models/tiny-llama/model-00001-of-00002.safetensors';
    const outside = path.join(base, 'outside.safetensors');
    await writeFile(outside, await readFile(path.join(seed, rel)));
    await rm(path.join(seed, rel));
    await symlink(outside, path.join(seed, rel));
    const { human, json } = await verifyBoth(seed, 3);
    expect(json.problems).toEqual([expect.objectContaining({ path: rel, kind: 'not-regular' })]);
    expect(human.stdout).toContain(`${rel} is a symlink; seed files are always regular files and links are never followed`);
    const traced = tracedFileCalls(seed, 'outside.safetensors', base);
    expect(traced.calls).toEqual([]);
  });

  it('a FIFO in place of a payload file neither hangs nor is opened', async () => {
    const { seed } = await freshSeed();
    const rel = 'models/tiny-llama/config.json';
    await rm(path.join(seed, rel));
    execFileSync('mkfifo', [path.join(seed, rel)]);
    const { json } = await verifyBoth(seed, 3);
    expect(json.problems).toEqual([expect.objectContaining({ path: rel, kind: 'not-regular' })]);
  });
});

describe('hostile source archives (digests resealed, so only the archive check sees them)', () => {
  const cases = [
    { label: '../ entries', entries: [{ name: 'top/', type: 'directory' as const }, { name: 'top/../../../root/.ssh/authorized_keys' }], message: /path with "\.\." leaves the archive folder/ },
    { label: 'an absolute path', entries: [{ name: 'top/', type: 'directory' as const }, { name: '/etc/shadow' }], message: /"\/etc\/shadow": absolute path/ },
    { label: 'a symlink leaving the folder', entries: [{ name: 'top/', type: 'directory' as const }, { name: 'top/etc', type: 'symlink' as const, linkname: '/etc' }], message: /symlink to "\/etc" leaves the archive folder/ },
    { label: 'a device node', entries: [{ name: 'top/', type: 'directory' as const }, { name: 'top/sda', type: 'block-device' as const }], message: /block-device entries are not allowed/ },
  ];
  for (const { label, entries, message } of cases) {
    it(`${label}: exit 3, the archive named, "do not unpack"`, async () => {
      const { seed } = await freshSeed();
      const manifest = await readManifest(seed);
      await craftArchive(path.join(seed, manifest.source.file), entries);
      await reseal(seed, (edited) => void (edited.source.topFolder = 'top'));
      const { human, json } = await verifyBoth(seed, 3);
      expect(json.problems.length).toBeGreaterThan(0);
      expect(json.problems.every((problem) => problem.kind === 'archive' && problem.path === manifest.source.file)).toBe(true);
      expect(human.stdout).toMatch(message);
      expect(human.stdout).toMatch(/-> Do not unpack this archive/);
    });
  }
});

describe('the manifest and SHA256SUMS are leak-scanned too', () => {
  it('a token written into the manifest (digests resealed) is found: exit 4 naming the manifest', async () => {
    const { seed } = await freshSeed();
    const token = githubToken('ghp');
    await reseal(seed, (manifest) => {
      manifest.profile = `demo ${token}`;
    });
    const machine = await runCli(['verify', seed, '--json']);
    expectClean(machine, 4);
    const report = JSON.parse(machine.stdout) as { findings: { path: string; rule: string }[]; problems: unknown[] };
    expect(report.findings.map((finding) => [finding.path, finding.rule])).toEqual([['dubnium-seed.json', 'github-token']]);
    expect(report.problems).toEqual([]);
    // Neither report repeats it (the manifest summary is withheld).
    expect(machine.stdout).not.toContain(token);
    const human = await runCli(['verify', seed]);
    expectClean(human, 4);
    expect(human.stdout + human.stderr).toMatch(/dubnium-seed\.json/);
    expect(human.stdout + human.stderr).not.toContain(token);
  });

  it('a token on a line of its own in SHA256SUMS: exit 4 naming SHA256SUMS (and the bad line as a problem)', async () => {
    const { seed } = await freshSeed();
    const token = githubToken('gho');
    await writeFile(path.join(seed, 'SHA256SUMS'), `${await readFile(path.join(seed, 'SHA256SUMS'), 'utf8')}${token}\n`);
    const machine = await runCli(['verify', seed, '--json']);
    expectClean(machine, 4);
    const report = JSON.parse(machine.stdout) as { findings: { path: string; rule: string }[]; problems: { path: string }[] };
    expect(report.findings.map((finding) => [finding.path, finding.rule])).toEqual([['SHA256SUMS', 'github-token']]);
    expect(report.problems.map((problem) => problem.path)).toContain('SHA256SUMS');
  });
});

describe('bundles and unusable input', () => {
  it('a same-size shard with a broken header, resealed everywhere: a bundle problem, exit 3', async () => {
    const { seed } = await freshSeed();
    const rel = 'models/tiny-llama/model-00002-of-00002.safetensors';
    const handle = await open(path.join(seed, rel), 'r+');
    await handle.write(Buffer.from('{"not":"a length field"}'), 0, 24, 0);
    await handle.close();
    await reseal(seed);
    const { human, json } = await verifyBoth(seed, 3);
    expect(json.problems).toEqual([expect.objectContaining({ path: 'models/tiny-llama', kind: 'bundle' })]);
    expect(human.stdout).toMatch(/models\/tiny-llama no longer validates: .*model-00002-of-00002\.safetensors/);
  });

  it('an image file of zeros is unusable input: exit 2, no stack trace', async () => {
    const image = path.join(await tempDir(), 'blank.img');
    await writeFile(image, '');
    await truncate(image, 8 * 1024 * 1024);
    const result = await runCli(['verify', image]);
    expectClean(result, 2);
    expect(result.stderr).toMatch(/blank\.img/);
  });
});

/** A small xorshift PRNG, so a failing run can be replayed from the logged seed. */
function prng(seed: number): (below: number) => number {
  let state = seed >>> 0 || 1;
  return (below) => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % below;
  };
}

describe('target: every single-byte corruption is found', () => {
  const rngSeed = Number(process.env.DUBNIUM_FLIP_SEED ?? randomInt(1, 2 ** 31));
  const random = prng(rngSeed);
  const kinds: { label: string; file: (manifest: Manifest) => string }[] = [
    { label: 'the source archive', file: (manifest) => manifest.source.file },
    { label: 'a shard', file: () => 'models/tiny-llama/model-00001-of-00002.safetensors' },
    { label: 'a JSON file of a bundle', file: () => 'models/tiny-llama/config.json' },
    { label: 'seed-install.sh', file: () => 'seed-install.sh' },
    { label: 'the manifest', file: () => 'dubnium-seed.json' },
    { label: 'SHA256SUMS', file: () => 'SHA256SUMS' },
  ];
  for (const kind of kinds) {
    it(`one flipped byte in ${kind.label}: exit 3 naming it (replay with DUBNIUM_FLIP_SEED=${rngSeed})`, async () => {
      console.log(`flip test RNG seed ${rngSeed} (set DUBNIUM_FLIP_SEED to replay)`);
      for (let round = 0; round < 3; round += 1) {
        const { seed } = await freshSeed();
        const rel = kind.file(await readManifest(seed));
        const file = path.join(seed, rel);
        const size = (await stat(file)).size;
        const offset = random(size);
        const mask = 1 + random(255);
        const handle = await open(file, 'r+');
        const byte = Buffer.alloc(1);
        await handle.read(byte, 0, 1, offset);
        await handle.write(Buffer.from([byte[0]! ^ mask]), 0, 1, offset);
        await handle.close();
        const context = `${rel} offset ${offset} xor 0x${mask.toString(16)} (seed ${rngSeed})`;
        const result = await runCli(['verify', seed, '--json']);
        expect(result.code, context).toBe(3);
        expect(result.stderr, context).not.toMatch(/internal error|\n\s+at [\w<]/);
        const report = JSON.parse(result.stdout) as { problems: { path: string }[] };
        expect(report.problems.map((problem) => problem.path), context).toContain(rel);
        await rm(path.dirname(seed), { recursive: true, force: true });
      }
    }, 60_000);
  }
});

describe('an unreadable file (EIO from the block layer)', () => {
  // Device-mapper's `error` target is the classic way, but this kernel may lack dm. The same EIO
  // comes from a loop device shrunk under a mounted filesystem: reads of blocks past the device's
  // end fail ("attempt to access beyond end of device"). The victim file lives alone on that
  // filesystem and is bind-mounted over its place in the seed, so only its reads fail.
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    while (cleanups.length > 0) {
      try {
        cleanups.pop()!();
      } catch {
        // keep cleaning the rest
      }
    }
  });

  it('names the file as unreadable with what to do, exit 3, and reads everything else', async () => {
    const { seed } = await freshSeed();
    const dir = await tempDir();
    const image = path.join(dir, 'victim.img');
    const mount = path.join(dir, 'mnt');
    await mkdir(mount);
    const rel = 'models/tiny-llama/model-00002-of-00002.safetensors';
    execFileSync('truncate', ['-s', '16M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-m', '0', image], { stdio: 'ignore' });
    const loop = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
    cleanups.push(() => execFileSync('losetup', ['-d', loop]));
    execFileSync('mount', [loop, mount]);
    execFileSync('cp', [path.join(seed, rel), path.join(mount, 'victim')]);
    execFileSync('umount', [mount]);
    execFileSync('mount', ['-o', 'ro,noload', loop, mount]);
    cleanups.push(() => execFileSync('umount', [mount]));
    execFileSync('mount', ['--bind', path.join(mount, 'victim'), path.join(seed, rel)]);
    cleanups.push(() => execFileSync('umount', [path.join(seed, rel)]));

    const extents = execFileSync('filefrag', ['-v', path.join(mount, 'victim')], { encoding: 'utf8' });
    const victimStart = Number(/^\s*0:\s+\d+\.\.\s*\d+:\s+(\d+)\.\./m.exec(extents)![1]);
    expect(victimStart).toBeGreaterThan(0);
    await truncate(image, victimStart * 4096);
    execFileSync('losetup', ['-c', loop]);
    expect(spawnSync('dd', [`if=${path.join(seed, rel)}`, 'of=/dev/null', 'iflag=direct', 'bs=1M'], { encoding: 'utf8' }).stderr).toMatch(/Input\/output error/);

    const { human, json } = await verifyBoth(seed, 3);
    expect(json.problems).toEqual([expect.objectContaining({ path: rel, kind: 'unreadable' })]);
    expect(human.stdout).toContain(`${rel} is unreadable: the media returned a read error (EIO)`);
    expect(human.stdout).toMatch(/-> The media has a read error/);
  });
});
