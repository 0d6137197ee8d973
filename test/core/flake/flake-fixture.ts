/**
 * A configuration flake whose lock pins a private input the way a real one is pinned
 * (`git+ssh://git@<unreachable host>/...`), made offline with the real Nix: the input is locked from
 * a local repository into a private chroot store, then its url and type are rewritten, keeping its
 * narHash and rev. The lock also pins a public github input (never fetched: nothing uses it) and a
 * relative `path:` input inside the repository.
 */
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ageKeyFile } from '../../helpers/credentials.js';
import { encValue } from '../../helpers/sops-repo.js';
import { git, gitRepo, writeTree } from '../../helpers/tmp.js';
import { nixEnv, type NixEnv } from './nix-env.js';

export const PRIVATE_URL = 'ssh://git@unreachable.invalid/operator/nix-secrets.git';

export interface FlakeFixture {
  dir: string;
  nix: NixEnv;
  /** The private input's repository (a local clone the profile can name). */
  privateRepo: string;
  /** The configuration repository (committed, with flake.lock). */
  configRepo: string;
  /** A chroot store (`nix --store`) that holds the private input's locked tree. */
  store: string;
  /** The `path:` input's folder (outside the repository). */
  extraFolder: string;
  /** The private input's locked narHash and rev. */
  narHash: string;
  rev: string;
}

/** Makes the fixture under `dir`; `privateFiles` adds files to the private input (a key, say). */
export async function makeFlakeFixture(dir: string, privateFiles: Record<string, string> = {}): Promise<FlakeFixture> {
  const nix = nixEnv(path.join(dir, 'nix'));
  const recipient = ageKeyFile().recipient;
  const privateRepo = path.join(dir, 'nix-secrets');
  await mkdir(privateRepo);
  await writeTree(privateRepo, {
    'flake.nix': '{ outputs = _: { value = "secret-module"; hosts = [ "workstation" ]; }; }\n',
    '.sops.yaml': `creation_rules:\n  - path_regex: secrets/.*\\.yaml$\n    age: ${recipient}\n`,
    'secrets/workstation.yaml': `wifi_password: ${encValue()}\nsops:\n    age:\n        - recipient: ${recipient}\n          enc: |\n            -----BEGIN AGE ENCRYPTED FILE-----\n            ${Buffer.from(encValue()).toString('base64').slice(0, 60)}\n            -----END AGE ENCRYPTED FILE-----\n    lastmodified: "2024-01-02T03:04:05Z"\n    mac: ${encValue()}\n    version: 3.8.1\n`,
    'modules/ünïcødé name.nix': '{ }\n',
    'modules/a-b.nix': '{ }\n',
    'modules/a/default.nix': '{ }\n',
    'bin/rotate.sh': '#!/bin/sh\necho rotate\n',
    ...privateFiles,
  });
  await chmod(path.join(privateRepo, 'bin/rotate.sh'), 0o755);
  await symlink('modules/a/default.nix', path.join(privateRepo, 'default.nix'));
  await gitRepo({}, privateRepo);

  // A second private input: a `path:` folder elsewhere on the operator's machine.
  const extraFolder = path.join(dir, 'operator-notes');
  await writeTree(extraFolder, { 'note.txt': 'private note' });

  const configRepo = path.join(dir, 'dubnium');
  await mkdir(configRepo);
  const flakeNix = (secretsUrl: string) =>
    [
      '{',
      `  inputs.secrets.url = "${secretsUrl}";`,
      '  inputs.local.url = "path:./modules/local";',
      `  inputs.notes = { url = "path:${extraFolder}"; flake = false; };`,
      '  inputs.nixpkgs = { url = "github:NixOS/nixpkgs/nixos-25.05"; flake = false; };',
      '  outputs = { self, secrets, local, notes, nixpkgs }: { value = secrets.value; localValue = local.value; note = builtins.readFile "${notes}/note.txt"; };',
      '}',
      '',
    ].join('\n');
  await writeTree(configRepo, {
    'flake.nix': flakeNix(`git+file://${privateRepo}`).replace('  inputs.nixpkgs = { url = "github:NixOS/nixpkgs/nixos-25.05"; flake = false; };\n', '').replace(', nixpkgs }', ' }'),
    'modules/local/flake.nix': '{ outputs = _: { value = "local-module"; }; }\n',
  });
  git(configRepo, 'init', '-q');
  git(configRepo, 'add', '-A');
  git(configRepo, 'commit', '-q', '-m', 'config');
  const store = path.join(dir, 'operator-store');
  nix.run('nix', ['--store', store, 'flake', 'lock', '--offline'], { cwd: configRepo });

  // Pin it as a real private input is pinned: same narHash and rev, an ssh URL nobody can reach.
  const lock = JSON.parse(await readFile(path.join(configRepo, 'flake.lock'), 'utf8'));
  const locked = lock.nodes.secrets.locked;
  lock.nodes.secrets.locked = { lastModified: locked.lastModified, narHash: locked.narHash, ref: 'main', rev: locked.rev, revCount: locked.revCount, type: 'git', url: PRIVATE_URL };
  lock.nodes.secrets.original = { type: 'git', url: PRIVATE_URL };
  // A public input as `nix flake lock` pins one (never fetched here: nothing evaluates it).
  lock.nodes.nixpkgs = {
    flake: false,
    locked: { lastModified: 1730785428, narHash: 'sha256-Zwl8YgTVJTEum+L+0zVAWvXAGbWAuXHax3KzuejaDyo=', owner: 'NixOS', repo: 'nixpkgs', rev: '4aa36568d413aca0ea84a1684d2d46f55dbabad7', type: 'github' },
    original: { owner: 'NixOS', ref: 'nixos-25.05', repo: 'nixpkgs', type: 'github' },
  };
  lock.nodes.root.inputs.nixpkgs = 'nixpkgs';
  await writeFile(path.join(configRepo, 'flake.lock'), `${JSON.stringify(lock, null, 2)}\n`);
  await writeFile(path.join(configRepo, 'flake.nix'), flakeNix(`git+${PRIVATE_URL}`));
  git(configRepo, 'add', '-A');
  git(configRepo, 'commit', '-q', '-m', 'pin the private input');
  return { dir, nix, privateRepo, configRepo, store, extraFolder, narHash: locked.narHash, rev: locked.rev };
}
