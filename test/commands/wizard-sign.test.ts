/**
 * The wizard's "Sign the seed with" question: keys found in ssh-agent (a real agent on its own
 * socket) and ~/.ssh, unusable ones disabled with the reason; the plan and the result print the
 * fingerprint; the saved profile names the key. Not asked when flags or the profile decided.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi, afterEach } from 'vitest';
import { runWizard, type WizardDependencies } from '../../src/commands/wizard.js';
import { verifySeed } from '../../src/core/verify-seed.js';
import { recordedSource } from '../../src/hardware/drives.js';
import { resolveBuild } from '../../src/options.js';
import { loadProfile } from '../../src/profile.js';
import { createOutput } from '../../src/ui/output.js';
import { writeHfCache } from '../helpers/bundles.js';
import { makeKey, startAgent } from '../helpers/ssh-signing.js';
import { gitRepo, tempDir, writeTree } from '../helpers/tmp.js';
import { moveTo, promptDriver } from '../ui/wizard/prompt-driver.js';

const fixtures = fileURLToPath(new URL('../../fixtures/', import.meta.url));

afterEach(() => {
  vi.unstubAllEnvs();
});

async function setup() {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = { self }: { }; }\n' });
  const home = await tempDir('dubnium-seed-home-');
  const cache = path.join(home, '.cache', 'huggingface', 'hub');
  await mkdir(cache, { recursive: true });
  await writeHfCache(cache, 'dubnium/tiny-demo', path.join(fixtures, 'models', 'tiny-demo'));
  const ssh = path.join(home, '.ssh');
  await mkdir(ssh, { recursive: true });
  const fileKey = makeKey(ssh, 'id_ed25519');
  const locked = makeKey(ssh, 'id_locked', { passphrase: 'secret words' });
  const orphan = makeKey(ssh, 'id_orphan');
  await import('node:fs/promises').then((fs) => fs.unlink(orphan.file));
  // The agent's key lives outside ~/.ssh: the wizard only knows it from ssh-add -L.
  const keys = await tempDir();
  const agentKey = makeKey(keys, 'agent-only');
  const agent = await startAgent(keys);
  agent.add(agentKey);
  // planBuild and the signing itself talk to the agent named in the process environment.
  vi.stubEnv('SSH_AUTH_SOCK', agent.socket);
  const shipped = await tempDir();
  const target = path.join(await tempDir(), 'seed');
  const lines: string[] = [];
  const driver = promptDriver();
  const deps: WizardDependencies = {
    prompts: driver.prompts,
    drives: recordedSource(path.join(fixtures, 'drivelist', 'this-vm.json')),
    write: (text) => lines.push(text),
    renderer: 'silent',
    env: { HOME: home, SSH_AUTH_SOCK: agent.socket },
    shippedProfiles: shipped,
    systemDisks: [],
  };
  const context = { interactive: true, output: createOutput(false), signal: new AbortController().signal, cwd: repo };
  return { repo, target, lines, driver, deps, context, fileKey, locked, orphan, agentKey };
}

describe('runWizard: the signing key', () => {
  it('offers agent and ~/.ssh keys, signs through the agent, prints the fingerprint, saves the key in the profile', async () => {
    const { repo, target, lines, driver, deps, context, fileKey, locked, orphan, agentKey } = await setup();
    const run = runWizard(context, {}, deps);
    // No profiles anywhere: the first question is the repository.
    (await driver.next('select')).events.keypress('enter');
    const models = await driver.next('checkbox');
    models.events.keypress('space');
    models.events.keypress('enter');
    const where = await driver.next('select');
    await moveTo(where, 'A folder');
    where.events.keypress('enter');
    const folder = await driver.next('input');
    folder.events.type(target);
    folder.events.keypress('enter');

    const question = await driver.next('select');
    const screen = question.getScreen();
    expect(screen).toContain('Sign the seed with');
    expect(screen).toContain(`${agentKey.fingerprint}  ED25519 agent-only@example.invalid  in ssh-agent`);
    expect(screen).toContain(`${fileKey.fingerprint}  ED25519 id_ed25519@example.invalid  ${fileKey.file}`);
    expect(screen).toMatch(new RegExp(`${locked.fingerprint.replace(/[+/]/g, '\\$&')}.*passphrase-protected: ssh-add it first`));
    expect(screen).toMatch(new RegExp(`${orphan.fingerprint.replace(/[+/]/g, '\\$&')}.*not in ssh-agent, and no private key file beside it`));
    expect(screen).toContain("Don't sign");
    question.events.keypress('enter');

    const confirmation = await driver.next('confirm');
    expect(lines.join('\n')).toContain(`  signed   by ${agentKey.fingerprint}  (ED25519 agent-only@example.invalid, through ssh-agent)`);
    confirmation.events.keypress('enter');
    const save = await driver.next('confirm');
    save.events.keypress('enter');
    const name = await driver.next('input');
    name.events.type('signed');
    name.events.keypress('enter');
    await expect(run).resolves.toBe(0);

    const text = lines.join('\n');
    expect(text).toContain(`signed  dubnium-seed.json.sig by ${agentKey.fingerprint}`);
    expect(text).toContain(`--signer ${agentKey.fingerprint}`);
    const report = await verifySeed({ root: target, scan: false, signer: agentKey.fingerprint });
    expect(report.problems).toEqual([]);
    expect(report.signature).toMatchObject({ state: 'valid', signerMatches: true });

    // The agent-only key has no .pub file: the profile carries its public key line.
    const loaded = await loadProfile('signed', repo);
    const agentLine = (await readFile(agentKey.pub, 'utf8')).trim();
    expect(loaded.data.sign?.key).toBe(agentLine);
    expect(resolveBuild({}, loaded, '/').options.sign).toBe(agentLine);
    expect(text).toContain(`--sign '${agentLine}'`);
  }, 120_000);

  it('is not asked when --no-sign (or the profile) decided it', async () => {
    const { target, lines, driver, deps, context, repo, fileKey } = await setup();
    await writeTree(repo, { 'profiles/keyed.yaml': `source:\n  repo: ..\nmodels:\n  - path: ${path.join(fixtures, 'models', 'tiny-demo')}\nsign:\n  key: ${fileKey.file}\n` });
    const run = runWizard(context, { profile: 'keyed', target }, deps);
    const confirmation = await driver.next('confirm');
    expect(lines.join('\n')).toContain(`Signing key: ${fileKey.file} (from profile keyed)`);
    expect(lines.join('\n')).toContain(`  signed   by ${fileKey.fingerprint}  (ED25519 id_ed25519@example.invalid, key file)`);
    confirmation.events.type('n');
    confirmation.events.keypress('enter');
    await expect(run).rejects.toThrow(/nothing was written/);

    const unsigned = runWizard(context, { profile: 'keyed', target, sign: false }, deps);
    const again = await driver.next('confirm');
    expect(lines.join('\n')).toContain('  signed   no');
    again.events.type('n');
    again.events.keypress('enter');
    await expect(unsigned).rejects.toThrow(/nothing was written/);
  }, 120_000);
});
