import { access, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runWizard, type WizardDependencies } from '../../src/commands/wizard.js';
import { verifySeed } from '../../src/core/verify-seed.js';
import { CancelledError } from '../../src/errors.js';
import { recordedSource } from '../../src/hardware/drives.js';
import { resolveBuild } from '../../src/options.js';
import { loadProfile } from '../../src/profile.js';
import { createOutput } from '../../src/ui/output.js';
import { writeHfCache } from '../helpers/bundles.js';
import { gitRepo, tempDir, writeTree } from '../helpers/tmp.js';
import { moveTo, promptDriver, type PromptDriver } from '../ui/wizard/prompt-driver.js';

const fixtures = fileURLToPath(new URL('../../fixtures/', import.meta.url));

async function setup() {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = { self }: { }; }\n', 'hosts/workstation/configuration.nix': '{ ... }: { }\n' });
  const home = await tempDir('dubnium-seed-home-');
  const cache = path.join(home, '.cache', 'huggingface', 'hub');
  await mkdir(cache, { recursive: true });
  const hf = await writeHfCache(cache, 'dubnium/tiny-demo', path.join(fixtures, 'models', 'tiny-demo'));
  const shipped = await tempDir();
  await writeTree(shipped, { 'demo.yaml': 'description: Shipped demo\n' });
  const target = path.join(await tempDir(), 'seed');
  const lines: string[] = [];
  const driver = promptDriver();
  const deps: WizardDependencies = {
    prompts: driver.prompts,
    drives: recordedSource(path.join(fixtures, 'drivelist', 'this-vm.json')),
    write: (text) => lines.push(text),
    renderer: 'silent',
    env: { HOME: home },
    shippedProfiles: shipped,
    systemDisks: [],
  };
  const context = { interactive: true, output: createOutput(false), signal: new AbortController().signal, cwd: repo };
  return { repo, home, hf, target, lines, driver, deps, context };
}

/** Answers up to (not including) the final confirmation; returns the confirmation prompt. */
async function answerUpToConfirmation(driver: PromptDriver, target: string) {
  const profile = await driver.next('select');
  expect(profile.getScreen()).toContain('demo (shipped)');
  profile.events.keypress('enter');
  const repository = await driver.next('select');
  expect(repository.getScreen()).toContain('branch main');
  repository.events.keypress('enter');
  const models = await driver.next('checkbox');
  expect(models.getScreen()).toMatch(/tiny-demo .*KiB, \d+ files, 2 shards, revision [0-9a-f]{12}/);
  models.events.keypress('space');
  models.events.keypress('enter');
  const where = await driver.next('select');
  expect(where.getScreen()).toContain('No mounted USB stick or SD card is eligible');
  expect(where.getScreen()).toMatch(/vda.*system drive/);
  await moveTo(where, 'A folder');
  where.events.keypress('enter');
  const folder = await driver.next('input');
  folder.events.type(target);
  folder.events.keypress('enter');
  return driver.next('confirm');
}

describe('runWizard', () => {
  it('asks, shows the plan, builds a verified seed, saves a profile that resolves to the same options', async () => {
    const { repo, hf, target, lines, driver, deps, context } = await setup();
    const run = runWizard(context, {}, deps);
    const confirmation = await answerUpToConfirmation(driver, target);
    const plan = lines.join('\n');
    expect(plan).toContain('The plan');
    expect(plan).toContain(`source   ${repo}`);
    expect(plan).toContain('left out: .git');
    expect(plan).toMatch(/models/m);
    expect(plan).toContain('models/tiny-demo');
    expect(plan).toMatch(/free, the seed needs/);
    expect(plan).toContain('will be created');
    await expect(access(target)).rejects.toThrow();
    expect(confirmation.getScreen()).toContain(`to ${target}? (Y/n)`);
    confirmation.events.keypress('enter');

    const save = await driver.next('confirm');
    expect(save.getScreen()).toContain('Save these answers as a profile');
    save.events.keypress('enter');
    const name = await driver.next('input');
    name.events.type('lab');
    name.events.keypress('enter');
    await expect(run).resolves.toBe(0);

    const report = await verifySeed({ root: target, scan: { allowlist: [], operatorSecrets: false } });
    expect(report.ok).toBe(true);
    const text = lines.join('\n');
    expect(text).toContain(`Seed written to ${target}`);
    expect(text).toContain('dubnium-seed build --profile lab');
    expect(text).toContain(`dubnium-seed build --repo ${repo} --model ${hf.repoDir} --target ${target}`);

    const loaded = await loadProfile('lab', repo);
    const fromProfile = resolveBuild({}, loaded, '/');
    const fromFlags = resolveBuild({ repo, model: [hf.repoDir], target }, undefined, repo);
    expect({ ...fromProfile.options, profile: null }).toEqual(fromFlags.options);
    expect(fromProfile.target).toEqual({ kind: 'folder', path: target });
  });

  it('"no" at the confirmation writes nothing and exits 130', async () => {
    const { target, driver, deps, context } = await setup();
    const run = runWizard(context, {}, deps);
    const confirmation = await answerUpToConfirmation(driver, target);
    confirmation.events.type('n');
    confirmation.events.keypress('enter');
    const error = await run.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CancelledError);
    expect((error as CancelledError).message).toContain('nothing was written');
    await expect(access(target)).rejects.toThrow();
  });

  it('Ctrl-C at a prompt exits 130 with nothing written', async () => {
    const { target, driver, deps, context } = await setup();
    const run = runWizard(context, {}, deps);
    (await driver.next('select')).events.keypress('enter');
    (await driver.next('select')).events.keypress('enter');
    (await driver.next('checkbox')).events.keypress({ name: 'c', ctrl: true });
    const error = await run.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CancelledError);
    expect((error as CancelledError).exitCode).toBe(130);
    await expect(access(target)).rejects.toThrow();
  });

  it('asks only what the profile leaves open', async () => {
    const { repo, hf, target, lines, driver, deps, context } = await setup();
    await writeTree(repo, { 'profiles/half.yaml': `source:\n  repo: ..\nmodels:\n  - path: ${hf.repoDir}\n` });
    const run = runWizard(context, { profile: 'half' }, deps);
    const where = await driver.next('select');
    expect(where.getScreen()).toContain('Where should the seed go?');
    await moveTo(where, 'A folder');
    where.events.keypress('enter');
    const folder = await driver.next('input');
    folder.events.type(target);
    folder.events.keypress('enter');
    (await driver.next('confirm')).events.keypress('enter');
    const save = await driver.next('confirm');
    save.events.type('n');
    save.events.keypress('enter');
    await expect(run).resolves.toBe(0);
    expect(lines).toContain(`Repository: ${repo} (from profile half)`);
    expect(driver.count()).toBe(4);
  });
});
