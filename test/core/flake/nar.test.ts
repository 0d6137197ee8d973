import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NarHasher, narHashOfPath } from '../../../src/core/flake/nar.js';
import { fixedOutputSourcePath, nixBase32, parseSriSha256 } from '../../../src/core/flake/store-path.js';
import { tempDir } from '../../helpers/tmp.js';
import { nixEnv } from './nix-env.js';

/** A tree with everything NAR treats specially. */
async function awkwardTree(root: string): Promise<void> {
  await mkdir(path.join(root, 'sub/deeper'), { recursive: true });
  await mkdir(path.join(root, 'empty'));
  await mkdir(path.join(root, 'a'));
  await writeFile(path.join(root, 'a/x'), 'inside a\n');
  // 'a-c' sorts before 'a/x' as a path, but after 'a' as a name: NAR order is per folder.
  await writeFile(path.join(root, 'a-c'), 'dash\n');
  await writeFile(path.join(root, 'with space.nix'), '{ }\n');
  await writeFile(path.join(root, 'ünïcødé-ñame'), 'unicode\n');
  // Bytewise 'B' < 'a' < 'É' (0xC3...), though a locale would sort them a, B, É.
  await writeFile(path.join(root, 'B-upper'), 'B\n');
  await writeFile(path.join(root, 'Émile'), 'E\n');
  await writeFile(path.join(root, 'empty-file'), '');
  await writeFile(path.join(root, 'seven'), '1234567');
  await writeFile(path.join(root, 'eight'), '12345678');
  await writeFile(path.join(root, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(path.join(root, 'run.sh'), 0o755);
  await writeFile(path.join(root, 'sub/deeper/big.bin'), Buffer.alloc(3 * 1024 * 1024 + 5, 7));
  await symlink('../a/x', path.join(root, 'sub/link-to-x'));
  await symlink('does-not-exist', path.join(root, 'dangling'));
}

describe('NAR hash', () => {
  it('equals `nix hash path` on a tree with executables, symlinks, empty folders and unusual names', async () => {
    const dir = await tempDir();
    const nix = nixEnv(path.join(dir, 'nix'));
    const tree = path.join(dir, 'tree');
    await mkdir(tree);
    await awkwardTree(tree);
    const expected = nix.run('nix', ['hash', 'path', tree]).trim();
    expect(expected).toMatch(/^sha256-/);
    expect(await narHashOfPath(tree)).toBe(expected);
  });

  it('equals `nix hash path` for a single file, an executable and a symlink as the root', async () => {
    const dir = await tempDir();
    const nix = nixEnv(path.join(dir, 'nix'));
    await writeFile(path.join(dir, 'plain'), 'just a file\n');
    await writeFile(path.join(dir, 'exe'), 'x');
    await chmod(path.join(dir, 'exe'), 0o755);
    await symlink('plain', path.join(dir, 'link'));
    for (const name of ['plain', 'exe', 'link']) {
      expect(await narHashOfPath(path.join(dir, name))).toBe(nix.run('nix', ['hash', 'path', path.join(dir, name)]).trim());
    }
  });

  it('changes when one byte or the executable bit changes', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'f'), 'abc');
    const before = await narHashOfPath(dir);
    await chmod(path.join(dir, 'f'), 0o755);
    const executable = await narHashOfPath(dir);
    await writeFile(path.join(dir, 'f'), 'abd');
    expect(new Set([before, executable, await narHashOfPath(dir)]).size).toBe(3);
  });

  it('refuses entries that are not in NAR order', () => {
    const hasher = new NarHasher();
    hasher.entry({ path: '', type: 'directory' });
    hasher.entry({ path: 'b', type: 'file', executable: false, size: 0 });
    expect(() => hasher.entry({ path: 'a', type: 'file', executable: false, size: 0 })).toThrow(/NAR order/);
  });
});

describe('store path of a locked input', () => {
  it('is what `nix-store --add-fixed --recursive sha256` prints for the tree', async () => {
    const dir = await tempDir();
    const nix = nixEnv(path.join(dir, 'nix'));
    const source = path.join(dir, 'source');
    await mkdir(source);
    await awkwardTree(source);
    const added = nix.run('nix-store', ['--store', path.join(dir, 'store'), '--add-fixed', '--recursive', 'sha256', source]).trim();
    expect(fixedOutputSourcePath(await narHashOfPath(source))).toBe(added);
  });

  it('encodes like Nix base-32 and rejects what is not SRI sha256', () => {
    // nix hash to-base32 of the empty string's sha256.
    const empty = Buffer.from('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'hex');
    expect(nixBase32(empty)).toBe('0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73');
    expect(parseSriSha256('sha256-abc')).toBeUndefined();
    expect(() => fixedOutputSourcePath('sha512-xyz')).toThrow();
  });
});
