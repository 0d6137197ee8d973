import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CancelledError } from '../../../src/errors.js';
import { recordedSource } from '../../../src/hardware/drives.js';
import { resolveBuild } from '../../../src/options.js';
import { loadProfile } from '../../../src/profile.js';
import { discoverModelBundles, discoverTargetDrives, describeRepository } from '../../../src/ui/wizard/discover.js';
import { cancellablePrompts } from '../../../src/ui/wizard/prompts.js';
import {
  askModels,
  askProfile,
  askRepository,
  askTarget,
  confirmBuild,
  offerSaveProfile,
  profileFromAnswers,
  scriptedCommand,
} from '../../../src/ui/wizard/steps.js';
import { discoverProfiles } from '../../../src/ui/wizard/discover.js';
import { breakBundle, writeBundle } from '../../helpers/bundles.js';
import { git, gitRepo, tempDir, writeTree } from '../../helpers/tmp.js';
import { moveTo, promptDriver, waitForScreen } from './prompt-driver.js';
import type { BuildPlan } from '../../../src/core/build-seed.js';

const fixtures = fileURLToPath(new URL('../../../fixtures/drivelist/', import.meta.url));
const drivesFrom = (name: string, protectedPaths: string[] = []) =>
  discoverTargetDrives(recordedSource(path.join(fixtures, name)), { protectedPaths, systemDisks: [] });

describe('askProfile', () => {
  it('offers local and shipped profiles, shows an invalid one disabled, and returns the chosen one', async () => {
    const cwd = await tempDir();
    const shipped = await tempDir();
    await writeTree(cwd, {
      'profiles/lab.yaml': 'description: The lab stick\nsource:\n  repo: ../repo\n',
      'profiles/broken.yaml': 'source:\n  repo: 42\n  colour: blue\n',
    });
    await writeTree(shipped, { 'demo.yaml': 'description: Shipped demo\n', 'lab.yaml': 'description: shadowed\n' });
    const candidates = await discoverProfiles(cwd, shipped);
    expect(candidates.map((candidate) => `${candidate.name}/${candidate.origin}`)).toEqual(['broken/here', 'lab/here', 'demo/shipped']);

    const driver = promptDriver();
    const answer = askProfile(driver.prompts, candidates);
    const prompt = await driver.next('select');
    const screen = prompt.getScreen();
    expect(screen).toContain('No profile: answer each question');
    expect(screen).toContain('lab  The lab stick');
    expect(screen).toContain('demo (shipped)  Shipped demo');
    expect(screen).toMatch(/broken.*invalid: Profile .*broken\.yaml is invalid/);
    await moveTo(prompt, 'lab');
    prompt.events.keypress('enter');
    const chosen = await answer;
    expect(chosen?.name).toBe('lab');
    expect(chosen?.data.source?.repo).toBe('../repo');
  });

  it('returns undefined for "No profile"', async () => {
    const cwd = await tempDir();
    await writeTree(cwd, { 'profiles/lab.yaml': 'description: x\n' });
    const driver = promptDriver();
    const answer = askProfile(driver.prompts, await discoverProfiles(cwd, await tempDir()));
    (await driver.next('select')).events.keypress('enter');
    await expect(answer).resolves.toBeUndefined();
  });
});

describe('askRepository', () => {
  it('defaults to the work tree around the current folder, shown with branch, commit and dirty files', async () => {
    const repo = await gitRepo({ 'flake.nix': '{ }\n', 'hosts/a/configuration.nix': '{ }\n' });
    await writeFile(path.join(repo, 'flake.nix'), '{ outputs = { }; }\n');
    await writeFile(path.join(repo, 'notes.txt'), 'untracked\n');
    const commit = git(repo, 'rev-parse', 'HEAD').trim();
    const driver = promptDriver();
    const answer = askRepository(driver.prompts, { cwd: path.join(repo, 'hosts', 'a') });
    const prompt = await driver.next('select');
    expect(prompt.getScreen()).toContain(`${repo}  (branch main, commit ${commit.slice(0, 12)}, 2 uncommitted files)`);
    prompt.events.keypress('enter');
    await expect(answer).resolves.toBe(repo);
  });

  it('asks for a path outside a work tree and rejects folders that are not repositories', async () => {
    const plain = await tempDir();
    const repo = await gitRepo({ 'flake.nix': '{ }\n' });
    const info = await describeRepository(plain);
    expect(info.root).toBeNull();
    const driver = promptDriver();
    const answer = askRepository(driver.prompts, { cwd: plain, around: info });
    const prompt = await driver.next('input');
    expect(prompt.getScreen()).toContain(`No git work tree around ${plain}`);
    prompt.events.type(plain);
    prompt.events.keypress('enter');
    await waitForScreen(prompt, 'is not inside a git work tree');
    for (let index = 0; index < plain.length; index += 1) prompt.events.keypress('backspace');
    prompt.events.type(repo);
    prompt.events.keypress('enter');
    await expect(answer).resolves.toBe(repo);
  });
});

describe('askModels', () => {
  it('lists bundles with size and status, shows an invalid bundle disabled with the reason, returns the selection', async () => {
    const folder = await tempDir();
    await writeBundle(path.join(folder, 'good-model'));
    const broken = await writeBundle(path.join(folder, 'broken-model'));
    await breakBundle(broken, 'config-missing');
    const candidates = await discoverModelBundles([folder]);
    expect(candidates.map((candidate) => [path.basename(candidate.path), candidate.bundle !== undefined])).toEqual([
      ['broken-model', false],
      ['good-model', true],
    ]);

    const driver = promptDriver();
    const answer = askModels(driver.prompts, candidates, { cwd: folder, searched: [folder] });
    const prompt = await driver.next('checkbox');
    const screen = prompt.getScreen();
    expect(screen).toMatch(/good-model {2}\d+(\.\d)? KiB, \d+ files, 2 shards/);
    expect(screen).toMatch(/broken-model.*invalid: .*has no config\.json/);
    // Space on the disabled bundle selects nothing.
    prompt.events.keypress('space');
    expect(prompt.getScreen()).not.toContain('◉');
    await moveTo(prompt, 'good-model');
    prompt.events.keypress('space');
    prompt.events.keypress('enter');
    await expect(answer).resolves.toEqual([{ path: path.join(folder, 'good-model') }]);
  });

  it('asks for a path when nothing was found, validating it as a bundle', async () => {
    const folder = await tempDir();
    const bundle = await writeBundle(path.join(folder, 'm'));
    const driver = promptDriver();
    const answer = askModels(driver.prompts, [], { cwd: folder, searched: ['/nowhere'] });
    const prompt = await driver.next('input');
    expect(prompt.getScreen()).toContain('No model bundles found in /nowhere');
    prompt.events.type(folder);
    prompt.events.keypress('enter');
    await waitForScreen(prompt, 'config.json');
    prompt.events.type('/m');
    prompt.events.keypress('enter');
    await expect(answer).resolves.toEqual([{ path: bundle.dir }]);
  });
});

describe('askTarget', () => {
  it('preselects the only eligible stick and lists excluded drives disabled with the reason', async () => {
    const drives = await drivesFrom('laptop-nvme-usb-iso.json');
    const driver = promptDriver();
    const answer = askTarget(driver.prompts, { drives, cwd: '/' });
    const prompt = await driver.next('select');
    const screen = prompt.getScreen();
    expect(screen.split('\n').find((line) => line.startsWith('❯'))).toContain('/run/media/alice/nixos-minimal-24.11-x86_64');
    expect(screen).toContain('SanDisk Ultra');
    expect(screen).toContain('61.5 GB');
    expect(screen).toMatch(/Samsung SSD 980 PRO.*system drive/);
    prompt.events.keypress('enter');
    const chosen = await answer;
    expect(chosen.folder).toBe('/run/media/alice/nixos-minimal-24.11-x86_64');
    expect(chosen.drive?.drive.device).toBe('/dev/sda');
  });

  it('needs an extra explicit confirmation for a drive larger than 128 GB; "no" goes back to the list', async () => {
    const drives = await drivesFrom('zram-usb-ssd.json');
    const driver = promptDriver();
    const target = await tempDir();
    const answer = askTarget(driver.prompts, { drives, cwd: '/' });
    const list = await driver.next('select');
    expect(list.getScreen()).toMatch(/\/run\/media\/dave\/T7 \[T7\].*Samsung PSSD T7.*needs confirmation/);
    expect(list.getScreen()).toMatch(/zram0.*virtual device/);
    list.events.keypress('enter');
    const confirmation = await driver.next('confirm');
    expect(confirmation.getScreen()).toContain('larger than 128.0 GB');
    expect(confirmation.getScreen()).toContain('(y/N)');
    confirmation.events.keypress('enter');
    const again = await driver.next('select');
    await moveTo(again, 'A folder');
    again.events.keypress('enter');
    const folder = await driver.next('input');
    folder.events.type(target);
    folder.events.keypress('enter');
    await expect(answer).resolves.toEqual({ folder: target });
  });

  it('accepts a fixed, non-removable disk only after an explicit "yes"', async () => {
    const recorded = JSON.parse(await readFile(path.join(fixtures, 'zram-usb-ssd.json'), 'utf8')) as { device: string; mountpoints: unknown[] }[];
    const dataDisk = recorded.find((drive) => drive.device === '/dev/sda')!;
    dataDisk.mountpoints = [{ path: '/run/media/dave/data', label: 'data' }];
    const file = path.join(await tempDir(), 'fixed.json');
    await writeFile(file, JSON.stringify(recorded.filter((drive) => drive.device === '/dev/sda')));
    const drives = await discoverTargetDrives(recordedSource(file), { protectedPaths: [], systemDisks: [], largeDriveBytes: 4e12 });
    const driver = promptDriver();
    const answer = askTarget(driver.prompts, { drives, cwd: '/' });
    (await driver.next('select')).events.keypress('enter');
    const confirmation = await driver.next('confirm');
    expect(confirmation.getScreen()).toContain('fixed, non-removable disk');
    confirmation.events.type('y');
    confirmation.events.keypress('enter');
    const chosen = await answer;
    expect(chosen.folder).toBe('/run/media/dave/data');
    expect(chosen.drive?.needsConfirmation).toEqual(['not-removable']);
  });

  it('with no eligible drive, defaults to a folder and refuses a folder holding other files', async () => {
    const drives = await drivesFrom('this-vm.json');
    expect(drives.mounts).toEqual([]);
    const busy = await tempDir();
    await writeTree(busy, { 'thesis.odt': 'x' });
    const driver = promptDriver();
    const answer = askTarget(driver.prompts, { drives, cwd: busy });
    const list = await driver.next('select');
    expect(list.getScreen()).toContain('No mounted USB stick or SD card is eligible');
    list.events.keypress('enter');
    const folder = await driver.next('input');
    folder.events.type(busy);
    folder.events.keypress('enter');
    await waitForScreen(folder, 'holds files that are not part of a seed (thesis.odt)');
    folder.events.type('/seed');
    folder.events.keypress('enter');
    await expect(answer).resolves.toEqual({ folder: path.join(busy, 'seed') });
  });

  it('refuses the stick that holds the repository', async () => {
    const drives = await drivesFrom('workstation-repo-on-usb.json', ['/run/media/carol/WORK/dubnium']);
    expect(drives.mounts).toEqual([]);
    expect(drives.excluded.map((verdict) => verdict.drive.device)).toContain('/dev/sdb');
    expect(drives.unmounted.map((verdict) => verdict.drive.device)).toEqual(['/dev/sdc']);
  });
});

describe('cancel and confirm', () => {
  it('Ctrl-C at a prompt becomes CancelledError (exit 130)', async () => {
    const driver = promptDriver();
    const prompts = cancellablePrompts(driver.prompts);
    const answer = askTarget(prompts, { drives: { mounts: [], unmounted: [], excluded: [] }, cwd: '/' });
    const prompt = await driver.next('select');
    prompt.events.keypress({ name: 'c', ctrl: true });
    const error = await answer.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CancelledError);
    expect((error as CancelledError).exitCode).toBe(130);
  });

  it('defaults the final confirmation to "no" for a drive and "yes" for a folder', async () => {
    const plan = { payloadBytes: 3 * 1024 * 1024, target: '/run/media/x' } as BuildPlan;
    for (const onDrive of [true, false]) {
      const driver = promptDriver();
      const answer = confirmBuild(driver.prompts, { plan, onDrive });
      const prompt = await driver.next('confirm');
      expect(prompt.getScreen()).toContain('Write 3.0 MiB to /run/media/x');
      prompt.events.keypress('enter');
      await expect(answer).resolves.toBe(!onDrive);
    }
  });
});

describe('offerSaveProfile', () => {
  it('writes a YAML profile that loadProfile accepts and that resolves to the same options; asks before overwriting', async () => {
    const cwd = await tempDir();
    const repo = await gitRepo({ 'flake.nix': '{ }\n' });
    const bundle = await writeBundle(path.join(await tempDir(), 'tiny'));
    const target = path.join(await tempDir(), 'seed');
    await mkdir(path.join(cwd, 'profiles'));
    await writeFile(path.join(cwd, 'profiles', 'taken.yaml'), 'description: keep me\n');
    const answers = { repo, models: [{ path: bundle.dir }], targetFolder: target };
    const data = profileFromAnswers(answers);

    const driver = promptDriver();
    const saved = offerSaveProfile(driver.prompts, { data, cwd });
    (await driver.next('confirm')).events.keypress('enter');
    const name = await driver.next('input');
    name.events.type('bad name');
    name.events.keypress('enter');
    await waitForScreen(name, 'Use letters, digits');
    for (let index = 0; index < 8; index += 1) name.events.keypress('backspace');
    name.events.type('taken');
    name.events.keypress('enter');
    const overwrite = await driver.next('confirm');
    expect(overwrite.getScreen()).toContain('profiles/taken.yaml exists. Overwrite it? (y/N)');
    overwrite.events.keypress('enter');
    const second = await driver.next('input');
    second.events.type('lab');
    second.events.keypress('enter');
    const file = await saved;
    expect(file).toBe(path.join(cwd, 'profiles', 'lab.yaml'));
    expect(await readFile(path.join(cwd, 'profiles', 'taken.yaml'), 'utf8')).toBe('description: keep me\n');

    const loaded = await loadProfile('lab', cwd);
    const fromProfile = resolveBuild({}, loaded, path.join(cwd, 'elsewhere'));
    const fromFlags = resolveBuild({ repo, model: [bundle.dir], target }, undefined, cwd);
    expect(fromProfile.missing).toEqual([]);
    expect({ ...fromProfile.options, profile: null }).toEqual(fromFlags.options);
    expect(fromProfile.target).toEqual(fromFlags.target);
    expect(scriptedCommand(answers)).toBe(`dubnium-seed build --repo ${repo} --model ${bundle.dir} --target ${target}`);
    expect(scriptedCommand(answers, { profileName: 'lab' })).toBe('dubnium-seed build --profile lab');
  });

  it('keeps the starting profile’s other settings and rewrites its relative paths', async () => {
    const cwd = await tempDir();
    await writeTree(cwd, { 'conf/profiles/base.yaml': 'description: base\nmodelFolders: [../models]\nverify: false\ntarget:\n  folder: ../old\n  label: SEED\n' });
    const base = await loadProfile(path.join(cwd, 'conf/profiles/base.yaml'), cwd);
    const data = profileFromAnswers({ repo: '/r', models: [], targetFolder: '/t' }, base);
    expect(data).toEqual({ description: 'base', modelFolders: [path.join(cwd, 'conf/models')], verify: false, target: { label: 'SEED', folder: '/t' }, source: { repo: '/r' }, models: [] });
  });
});
