/**
 * [e2e] The real wizard binary in a real pseudo-terminal (tmux), from the first question to a
 * seed that `dubnium-seed verify` accepts. Runs the built dist/cli.js: `npm run build` first.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { loadProfile } from '../../src/profile.js';
import { writeHfCache } from '../helpers/bundles.js';
import { gitRepo, tempDir } from '../helpers/tmp.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = path.join(root, 'dist', 'cli.js');
const fixtures = path.join(root, 'fixtures');
// A private tmux server per test file: killing it never touches anyone else's sessions.
const socket = `dubnium-seed-e2e-${process.pid}`;
const session = 'wizard';

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function screen(): string {
  return tmux('capture-pane', '-p', '-J', '-S', '-', '-t', session);
}

async function waitFor(text: string | RegExp, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = screen();
    if (typeof text === 'string' ? current.includes(text) : text.test(current)) return current;
    if (Date.now() > deadline) throw new Error(`the terminal never showed ${String(text)}; it shows:\n${current}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function keys(...sequence: string[]): void {
  tmux('send-keys', '-t', session, ...sequence);
}

function quote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

afterEach(() => {
  spawnSync('tmux', ['-L', socket, 'kill-server'], { stdio: 'ignore' });
});

describe('[e2e] wizard in a pseudo-terminal', () => {
  it('runs from the first question to a verified seed in a folder, and saves a profile', async () => {
    expect(existsSync(cli), `${cli} is missing: run \`npm run build\` before the tests`).toBe(true);
    const repo = await gitRepo({ 'flake.nix': '{ outputs = { self }: { }; }\n', 'hosts/workstation/configuration.nix': '{ ... }: { }\n' });
    const home = await tempDir('dubnium-seed-home-');
    const cache = path.join(home, '.cache', 'huggingface', 'hub');
    await mkdir(cache, { recursive: true });
    await writeHfCache(cache, 'dubnium/tiny-demo', path.join(fixtures, 'models', 'tiny-demo'));
    const target = path.join(await tempDir(), 'seed');
    const command = [
      'env -u CI -u HF_HOME -u HF_HUB_CACHE -u XDG_CACHE_HOME',
      `HOME=${quote(home)}`,
      `DUBNIUM_SEED_DRIVELIST_FILE=${quote(path.join(fixtures, 'drivelist', 'this-vm.json'))}`,
      `${quote(process.execPath)} ${quote(cli)}; echo WIZARD-EXIT=$?; sleep 600`,
    ].join(' ');
    tmux('new-session', '-d', '-x', '120', '-y', '40', '-s', session, '-c', repo, command);

    await waitFor('Start from a profile?');
    keys('Enter');
    await waitFor(/Which configuration repository goes on the seed\?\s*\n❯ .*branch main, commit [0-9a-f]{12}, clean/);
    keys('Enter');
    await waitFor(/Which model bundles go on the seed\?[\s\S]*tiny-demo .*KiB, \d+ files, 2 shards/);
    keys('Space');
    keys('Enter');
    await waitFor(/Where should the seed go\? No mounted USB stick or SD card is eligible[\s\S]*system drive/);
    keys('Enter');
    await waitFor('Seed folder (created when missing):');
    keys('-l', target);
    keys('Enter');
    const plan = await waitFor(`Write `);
    expect(plan).toContain('The plan');
    expect(plan).toContain('models/tiny-demo');
    expect(plan).toContain('(Y/n)');
    expect(existsSync(target)).toBe(false);
    keys('Enter');
    const built = await waitFor('Save these answers as a profile', 120_000);
    expect(built).toMatch(/✔ Copy, hash and scan model bundles and the installer: \d+ written/);
    expect(built).toContain('✔ Read the seed back and verify it: ok');
    keys('Enter');
    await waitFor('Profile name');
    keys('-l', 'e2e');
    keys('Enter');
    const done = await waitFor(/WIZARD-EXIT=\d+/);
    expect(done).toContain('WIZARD-EXIT=0');
    expect(done).toContain('dubnium-seed build --profile e2e');

    const verify = spawnSync(process.execPath, [cli, 'verify', target], { encoding: 'utf8', env: { ...process.env, HOME: home } });
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
    const profile = await loadProfile('e2e', repo);
    expect(profile.data.target?.folder).toBe(target);

    // The lead pastes a transcript of this run into the README.
    if (process.env.DUBNIUM_SEED_TRANSCRIPT) await writeFile(process.env.DUBNIUM_SEED_TRANSCRIPT, done.replace(/\n+$/, '\n'));
  });

  it('Ctrl-C at the first question exits 130 and writes nothing', async () => {
    expect(existsSync(cli), `${cli} is missing: run \`npm run build\` before the tests`).toBe(true);
    const repo = await gitRepo({ 'flake.nix': '{ }\n' });
    const home = await tempDir('dubnium-seed-home-');
    const command = `env -u CI HOME=${quote(home)} ${quote(process.execPath)} ${quote(cli)}; echo WIZARD-EXIT=$?; sleep 600`;
    tmux('new-session', '-d', '-x', '120', '-y', '40', '-s', session, '-c', repo, command);
    await waitFor('Start from a profile?');
    keys('C-c');
    const done = await waitFor(/WIZARD-EXIT=\d+/);
    expect(done).toContain('WIZARD-EXIT=130');
    expect(done).toContain('Cancelled at a prompt: nothing was written.');
    expect(existsSync(path.join(repo, 'profiles'))).toBe(false);
  });
});
