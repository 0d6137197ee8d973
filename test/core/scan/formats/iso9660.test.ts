import { execFileSync } from 'node:child_process';
import { link, readFile, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileSource, type FileSource } from '../../../../src/core/scan/formats/byte-source.js';
import { fat } from '../../../../src/core/scan/formats/fat.js';
import { iso9660, isoVolumeBytes } from '../../../../src/core/scan/formats/iso9660.js';
import { partitions } from '../../../../src/core/scan/formats/partitions.js';
import { squashfs } from '../../../../src/core/scan/formats/squashfs.js';
import { FormatError, HEAD_BYTES } from '../../../../src/core/scan/formats/types.js';
import { sshKey } from '../../../helpers/credentials.js';
import { makeInstallerIso, makeIso, makeStick, memberBytes, walkMembers, writeTree } from '../../../helpers/installer-image.js';
import { tempDir } from '../../../helpers/tmp.js';

const HOST_KEY_PATH = 'nix/store/0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p-etc/etc/ssh/ssh_host_ed25519_key';

async function open(file: string): Promise<{ source: FileSource; head: Buffer }> {
  const source = await fileSource(file);
  return { source, head: await source.read(0, HEAD_BYTES) };
}

describe('iso9660', () => {
  it('reads a NixOS-shaped hybrid ISO with Rock Ridge names: every file in place, keys found at their inner path', async () => {
    const dir = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const deep = `${Array.from({ length: 12 }, (_, index) => `level${index}`).join('/')}/deep-secret.pem`;
    const { iso, folder } = await makeInstallerIso(dir, {
      extra: {
        [HOST_KEY_PATH]: key,
        [deep]: key,
        'Schlüssel mit langem Namen.txt': 'unicode name',
        'empty-file': '',
        'etc/link-to-key': { symlink: `/${HOST_KEY_PATH}` },
      },
    });
    // A hard link: the same extent under two names; both are members.
    await link(path.join(folder, 'version.txt'), path.join(folder, 'version-link.txt'));
    execFileSync('rm', [iso]);
    await makeIso(folder, iso, { biosBoot: 'isolinux/isolinux.bin', efiBoot: 'boot/efi.img' });

    const { source, head } = await open(iso);
    try {
      expect(head.readUInt16LE(510)).toBe(0xaa55); // the isohybrid MBR is there, and still:
      expect(iso9660.detect(head, source.size)).toBe(true);
      expect(isoVolumeBytes(head)).toBe((await stat(iso)).size);

      const walk = await walkMembers(iso9660, source);
      const names = walk.members.map((member) => member.name.slice(1)).sort();
      expect(walk.members.every((member) => member.name.startsWith('/'))).toBe(true);
      expect(names).toEqual(
        [
          'Schlüssel mit langem Namen.txt',
          'boot/bzImage',
          'boot/efi.img',
          'boot/initrd',
          'empty-file',
          'isolinux/boot.cat',
          'isolinux/isolinux.bin',
          'isolinux/isolinux.cfg',
          deep,
          'nix-store.squashfs',
          HOST_KEY_PATH,
          'version-link.txt',
          'version.txt',
        ].sort(),
      );
      expect(walk.unreadable).toEqual([]);
      const byName = new Map(walk.members.map((member) => [member.name.slice(1), member]));
      // Members are slices of the image: random reads give the file's own bytes.
      for (const name of [HOST_KEY_PATH, deep, 'nix-store.squashfs', 'boot/efi.img', 'version-link.txt', 'Schlüssel mit langem Namen.txt']) {
        const member = byName.get(name)!;
        const expected = await readFile(path.join(folder, name));
        expect(member.size).toBe(expected.length);
        expect((await member.source!.read(0, member.size!)).equals(expected)).toBe(true);
      }
      expect((await memberBytes(byName.get(HOST_KEY_PATH)!)).toString()).toContain(key.trim());
      expect((await memberBytes(byName.get(deep)!)).toString()).toContain('BEGIN OPENSSH PRIVATE KEY');
      expect(byName.get('empty-file')!.size).toBe(0);
      expect((await memberBytes(byName.get('empty-file')!)).length).toBe(0);
      // isolinux.bin is patched in place by -boot-info-table: it is the BIOS boot image, read once under its tree name.
      expect(walk.members.some((member) => member.name.startsWith('(el-torito)'))).toBe(false);
    } finally {
      await source.close();
    }
  });

  it('hands the squashfs handler the nix store in place: stick, installer image, nix-store.squashfs, host key', async () => {
    const dir = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const storeRoot = path.join(dir, 'store-root');
    await writeTree(storeRoot, { [`${HOST_KEY_PATH.replace(/^nix\/store\//, '')}`]: key, '0000-hello/bin/hello': 'hello' });
    const store = path.join(dir, 'nix-store.squashfs');
    execFileSync('mksquashfs', [storeRoot, store, '-comp', 'zstd', '-noappend', '-quiet', '-no-progress'], { stdio: 'ignore' });
    const { iso } = await makeInstallerIso(dir, { store });
    const { stick } = await makeStick(dir, iso, { 'seed/README': 'seed' });

    const { source } = await open(stick);
    try {
      const disk = await walkMembers(partitions, source);
      const image = disk.members.find((member) => member.name === '(installer image)')!;
      const files = await walkMembers(iso9660, image.source!);
      const squash = files.members.find((member) => member.name === '/nix-store.squashfs')!;
      expect(squash.size).toBe((await stat(store)).size);
      expect(squashfs.detect(await squash.source!.read(0, HEAD_BYTES), squash.size)).toBe(true);
      // A streamed member must be read before the next one is asked for.
      const found = new Map<string, string>();
      for await (const member of squashfs.members(squash.source!, { unreadable: () => {}, problem: () => {} })) {
        found.set(member.name, (await memberBytes(member)).toString());
      }
      expect(found.get(`/${HOST_KEY_PATH.replace(/^nix\/store\//, '')}`)).toBe(key);
    } finally {
      await source.close();
    }
  });

  it('uses Joliet names when there is no Rock Ridge, and plain ISO 9660 names when there is neither', async () => {
    const dir = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const folder = path.join(dir, 'root');
    await writeTree(folder, { 'Secrets Folder/Host Key (ed25519).txt': key, 'nix-store.squashfs': Buffer.from('hsqs') });

    const joliet = await makeIso(folder, path.join(dir, 'joliet.iso'), { rockRidge: false, joliet: true });
    const plain = await makeIso(folder, path.join(dir, 'plain.iso'), { rockRidge: false, joliet: false, isoLevel: 2 });
    for (const [file, expectedNames] of [
      [joliet, ['Secrets Folder/Host Key (ed25519).txt', 'nix-store.squashfs']],
      [plain, ['NIX_STORE.SQUASHFS', 'SECRETS_FOLDER/HOST_KEY__ED25519_.TXT']],
    ] as const) {
      const { source, head } = await open(file);
      try {
        expect(iso9660.detect(head, source.size)).toBe(true);
        const walk = await walkMembers(iso9660, source);
        expect(walk.members.map((member) => member.name).sort()).toEqual(expectedNames.map((name) => `/${name}`).sort());
        const keyMember = walk.members.find((member) => member.name.endsWith('.txt') || member.name.endsWith('.TXT'))!;
        expect((await memberBytes(keyMember)).toString()).toBe(key);
      } finally {
        await source.close();
      }
    }
  });

  it('yields an El Torito boot image hidden from the tree, sized from the FAT it holds, and FAT reads the key inside it', async () => {
    const dir = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const { iso, efiImage } = await makeInstallerIso(dir, {
      hideEfiImage: true,
      efi: { 'EFI/BOOT/BOOTX64.EFI': Buffer.alloc(100_000, 0x4d), 'boot/initrd-secrets/ssh_host_ed25519_key': key },
    });
    const { source } = await open(iso);
    try {
      const walk = await walkMembers(iso9660, source);
      expect(walk.members.some((member) => member.name === '/boot/efi.img')).toBe(false);
      const boot = walk.members.filter((member) => member.name.startsWith('(el-torito)/'));
      expect(boot.map((member) => member.name)).toEqual(['(el-torito)/efi.img']);
      const efi = boot[0]!;
      // The catalog's sector count is not the image size: the FAT boot sector is.
      expect(efi.size).toBe((await stat(efiImage)).size);
      expect((await efi.source!.read(0, efi.size!)).equals(await readFile(efiImage))).toBe(true);
      expect(fat.detect(await efi.source!.read(0, HEAD_BYTES), efi.size)).toBe(true);
      const inner = await walkMembers(fat, efi.source!);
      const keyFile = inner.members.find((member) => member.name === '/boot/initrd-secrets/ssh_host_ed25519_key')!;
      expect((await memberBytes(keyFile)).toString()).toBe(key);
    } finally {
      await source.close();
    }
  });

  it(
    'reads a file over 4 GiB (ISO level 3, several extents) as one member, reaching a marker near its end without streaming it',
    async () => {
      const dir = await tempDir();
      const folder = path.join(dir, 'root');
      const size = 4 * 1024 ** 3 + 3 * 1024 * 1024 + 17;
      const key = sshKey('ed25519').privateKey;
      await writeTree(folder, {
        'nix-store.squashfs': { sparse: size, markers: [{ offset: 0, bytes: 'hsqs' }, { offset: 4 * 1024 ** 3 - 2048 - 10, bytes: 'ACROSS-THE-EXTENT-BOUNDARY' }, { offset: size - key.length - 5, bytes: key }] },
        'after.txt': 'the record after the multi-extent file',
      });
      const iso = await makeIso(folder, path.join(dir, 'big.iso'), { sparseOutput: true });
      // xorriso itself says the file is stored as more than one extent.
      const extents = execFileSync('xorriso', ['-indev', iso, '-find', '/nix-store.squashfs', '-exec', 'report_lba', '--'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
        .split('\n')
        .filter((line) => line.startsWith('File data lba:'));
      expect(extents.length).toBeGreaterThan(1);

      const { source } = await open(iso);
      try {
        const walk = await walkMembers(iso9660, source);
        expect(walk.members.map((member) => member.name).sort()).toEqual(['/after.txt', '/nix-store.squashfs']);
        const store = walk.members.find((member) => member.name === '/nix-store.squashfs')!;
        expect(store.size).toBe(size);
        expect(store.source!.size).toBe(size);
        expect((await store.source!.read(0, 4)).toString()).toBe('hsqs');
        // A read that crosses from the first extent into the second.
        expect((await store.source!.read(4 * 1024 ** 3 - 2048 - 10, 26)).toString()).toBe('ACROSS-THE-EXTENT-BOUNDARY');
        expect((await store.source!.read(size - key.length - 5, key.length)).toString()).toBe(key);
        expect((await store.source!.read(size - 5, 100)).length).toBe(5);
        expect((await memberBytes(walk.members.find((member) => member.name === '/after.txt')!)).toString()).toContain('after the multi-extent');
      } finally {
        await source.close();
      }
    },
    900_000,
  );

  it('reports a member cut off by a truncated image, reads the others, and never reads past the ISO volume into what follows', async () => {
    const dir = await tempDir();
    const folder = path.join(dir, 'root');
    const tail = Buffer.concat([Buffer.from('START-OF-BIG'), Buffer.alloc(600_000, 0x41), Buffer.from('END-OF-BIG')]);
    await writeTree(folder, { 'a-small.txt': 'small', 'z-big.bin': tail });
    const iso = await makeIso(folder, path.join(dir, 'cut.iso'));
    const whole = await readFile(iso);
    const start = whole.indexOf('START-OF-BIG');
    expect(start).toBeGreaterThan(0);

    // Bytes after the volume (another partition on a stick) are not part of any member.
    await writeTree(dir, { 'longer.iso': Buffer.concat([whole, Buffer.alloc(1024 * 1024, 0x42)]) });
    const longer = await open(path.join(dir, 'longer.iso'));
    try {
      const walk = await walkMembers(iso9660, longer.source);
      expect(walk.members.map((member) => member.name).sort()).toEqual(['/a-small.txt', '/z-big.bin']);
      expect((await memberBytes(walk.members.find((member) => member.name === '/z-big.bin')!)).equals(tail)).toBe(true);
    } finally {
      await longer.source.close();
    }

    await truncate(iso, start + 1000);
    const { source } = await open(iso);
    try {
      const walk = await walkMembers(iso9660, source);
      expect(walk.members.map((member) => member.name)).toEqual(['/a-small.txt']);
      expect(walk.unreadable).toEqual([expect.objectContaining({ name: '/z-big.bin', reason: 'truncated' })]);
    } finally {
      await source.close();
    }
  });

  it('puts folders relocated for depth (Rock Ridge CL/RE, /rr_moved) back where they belong', async () => {
    const dir = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const folder = path.join(dir, 'root');
    const deep = `${Array.from({ length: 11 }, (_, index) => `l${index}`).join('/')}`;
    await writeTree(folder, { [`${deep}/deep_host_key`]: key, [`${deep}/sub/more.txt`]: 'more', 'top.txt': 'top' });
    const iso = await makeIso(folder, path.join(dir, 'relocated.iso'), { relocateDeepFolders: true, joliet: false, isoLevel: 2 });
    const bytes = await readFile(iso);
    expect(bytes.indexOf('RE\x04\x01', 0, 'latin1')).toBeGreaterThan(0); // the image does use relocation
    const { source } = await open(iso);
    try {
      const walk = await walkMembers(iso9660, source);
      expect(walk.members.map((member) => member.name).sort()).toEqual([`/${deep}/deep_host_key`, `/${deep}/sub/more.txt`, '/top.txt']);
      expect((await memberBytes(walk.members.find((member) => member.name.endsWith('deep_host_key'))!)).toString()).toBe(key);
      expect(walk.problems).toEqual([]);
    } finally {
      await source.close();
    }
  });

  it('refuses what is not an ISO and stops when the signal aborts', async () => {
    const dir = await tempDir();
    const folder = path.join(dir, 'root');
    await writeTree(folder, Object.fromEntries(Array.from({ length: 20 }, (_, index) => [`file-${index}.txt`, `content ${index}`])));
    const iso = await makeIso(folder, path.join(dir, 'many.iso'));
    const { source, head } = await open(iso);
    try {
      const broken = Buffer.from(head);
      broken.write('CD002', 32769, 'latin1');
      expect(iso9660.detect(broken, source.size)).toBe(false);
      expect(iso9660.detect(Buffer.alloc(1000), 1000)).toBe(false);

      const controller = new AbortController();
      const seen: string[] = [];
      const reading = (async () => {
        for await (const member of iso9660.members(source, { signal: controller.signal, unreadable: () => {}, problem: () => {} })) {
          seen.push(member.name);
          if (seen.length === 3) controller.abort(new Error('cancelled by the test'));
        }
      })();
      await expect(reading).rejects.toThrow('cancelled by the test');
      expect(seen.length).toBe(3);
    } finally {
      await source.close();
    }
    // These formats need random access: a stream is refused with a reason the walker reports (it spools such input first).
    for (const handler of [iso9660, fat, partitions]) {
      const stream = (async function* () {
        yield Buffer.alloc(16);
      })();
      const members = handler.members(stream, { unreadable: () => {}, problem: () => {} });
      await expect(members[Symbol.asyncIterator]().next()).rejects.toMatchObject({ reason: 'unsupported' });
    }
    // A cut volume descriptor set is a FormatError, not a crash.
    const cut = path.join(dir, 'descriptors-cut.iso');
    await writeTree(dir, { 'descriptors-cut.iso': (await readFile(iso)).subarray(0, 16 * 2048 + 100) });
    const short = await fileSource(cut);
    try {
      await expect(walkMembers(iso9660, short)).rejects.toBeInstanceOf(FormatError);
    } finally {
      await short.close();
    }
  });
});
