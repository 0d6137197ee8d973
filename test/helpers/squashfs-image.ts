/**
 * Helpers for the squashfs and cpio handler tests: a file as a ByteSource, every member of a handler
 * hashed, every regular file of a folder hashed, and a compressible tree with the shapes an installer's
 * Nix store has (deep store paths, many small files, big files, a sparse file, hard and symbolic links).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync, closeSync, writeSync, ftruncateSync } from 'node:fs';
import path from 'node:path';
import type { ByteSource, FormatHandler, UnscannedReason } from '../../src/core/scan/formats/types.js';

/** Random access to a file (the byte sources the walker gives random-access handlers). */
export { fileSource } from '../../src/core/scan/formats/byte-source.js';

export interface Collected {
  /** Member name -> sha256 of its bytes. */
  hashes: Map<string, string>;
  /** Member name -> the size the container declared. */
  sizes: Map<string, number | undefined>;
  /** Names in the order they came. */
  order: string[];
  unreadable: Array<{ name: string | undefined; reason: UnscannedReason; message: string }>;
  /** Members whose bytes contain `needle`, when one is given. */
  containing: string[];
}

/** Runs `handler.members` to the end, hashing each member's bytes. */
export async function collect(handler: FormatHandler, input: ByteSource, options: { needle?: string; signal?: AbortSignal } = {}): Promise<Collected> {
  const out: Collected = { hashes: new Map(), sizes: new Map(), order: [], unreadable: [], containing: [] };
  const needle = options.needle === undefined ? undefined : Buffer.from(options.needle);
  const context = {
    ...(options.signal ? { signal: options.signal } : {}),
    unreadable: (name: string | undefined, reason: UnscannedReason, message: string) => out.unreadable.push({ name, reason, message }),
    problem: () => undefined,
  };
  for await (const member of handler.members(input, context)) {
    const hash = createHash('sha256');
    let tail = Buffer.alloc(0);
    let found = false;
    for await (const chunk of member.stream()) {
      hash.update(chunk);
      if (needle && !found) {
        const window = Buffer.concat([tail, chunk]);
        found = window.includes(needle);
        tail = window.subarray(Math.max(0, window.length - needle.length));
      }
    }
    if (out.hashes.has(member.name)) throw new Error(`member ${member.name} came twice`);
    out.hashes.set(member.name, hash.digest('hex'));
    out.sizes.set(member.name, member.size);
    out.order.push(member.name);
    if (found) out.containing.push(member.name);
  }
  return out;
}

/** sha256 of every regular file under `root`, keyed by its absolute path inside the tree (`/a/b`). */
export function treeHashes(root: string): Map<string, string> {
  const files = execFileSync('find', ['.', '-type', 'f', '-print0'], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28 }).split('\0').filter(Boolean);
  const out = new Map<string, string>();
  for (const file of files) out.set(file.replace(/^\./, ''), createHash('sha256').update(readFileSync(path.join(root, file))).digest('hex'));
  return out;
}

/** Compressible text that is not all the same (so blocks compress but are not deduplicated). */
export function compressibleText(bytes: number, seed: string): Buffer {
  const lines: string[] = [];
  let length = 0;
  for (let index = 0; length < bytes; index++) {
    const line = `${seed} line ${index}: services.example${index % 97}.enable = ${index % 3 === 0}; # ${((index + seed.length) * 2654435761 >>> 0).toString(16)}\n`;
    lines.push(line);
    length += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

/** A fake 32-character Nix store hash. */
export function storeHash(): string {
  const alphabet = '0123456789abcdfghijklmnpqrsvwxyz';
  return Array.from(randomBytes(32), (byte) => alphabet[byte % 32]).join('');
}

/**
 * Writes an installer-like tree under `root` with `key` as a host key in an `-etc` store path and,
 * a second time, in the middle of a big compressible file. Returns the key's and the big file's paths.
 */
export function nixLikeTree(root: string, key: string): { keyPath: string; bigPath: string } {
  const etc = `/nix/store/${storeHash()}-etc/etc`;
  const keyPath = `${etc}/ssh/ssh_host_ed25519_key`;
  const put = (relative: string, content: Buffer | string) => {
    mkdirSync(path.dirname(path.join(root, relative)), { recursive: true });
    writeFileSync(path.join(root, relative), content);
  };
  put(keyPath, key);
  put(`${etc}/ssh/ssh_host_ed25519_key.pub`, 'ssh-ed25519 AAAA test\n');
  // A big compressible file spanning many blocks, the key in the middle of one of them.
  const bigPath = `/nix/store/${storeHash()}-big/share/big.txt`;
  const half = compressibleText(1536 * 1024 + 12345, 'big');
  put(bigPath, Buffer.concat([half, Buffer.from(key), compressibleText(1024 * 1024 + 777, 'tail')]));
  // Incompressible data: its blocks are stored uncompressed even in a compressed image.
  put(`/nix/store/${storeHash()}-random/lib/blob.bin`, randomBytes(300 * 1024));
  // Exactly two blocks of the default size: no tail in a fragment.
  put(`/nix/store/${storeHash()}-exact/exact.bin`, compressibleText(256 * 1024, 'exact'));
  put('/empty', '');
  // Many small files (they share fragments), in a folder whose listing spans metadata blocks.
  const many = `/nix/store/${storeHash()}-many-small-files-with-rather-long-names`;
  for (let index = 0; index < 700; index++) put(`${many}/share/doc/file-number-${String(index).padStart(4, '0')}-of-a-long-listing.txt`, compressibleText(index * 7 % 5000, `small${index}`));
  // Deep nesting.
  let deep = `/nix/store/${storeHash()}-deep`;
  for (let level = 0; level < 30; level++) deep += `/level${level}`;
  put(`${deep}/bottom.txt`, 'the bottom\n');
  // A sparse file: a hole of whole blocks with data on either side.
  const sparse = path.join(root, 'sparse.img');
  const fd = openSync(sparse, 'w');
  writeSync(fd, compressibleText(5000, 'sparse-head'), 0, 5000, 0);
  writeSync(fd, compressibleText(5000, 'sparse-tail'), 0, 5000, 3 * 1024 * 1024);
  ftruncateSync(fd, 4 * 1024 * 1024 + 99);
  closeSync(fd);
  // A hard link (two names of one inode) and symlinks (not members).
  linkSync(path.join(root, bigPath), path.join(root, 'hardlink-to-big.txt'));
  symlinkSync(`..${keyPath}`, path.join(root, 'nix/symlink-to-key'));
  symlinkSync('/etc/shadow', path.join(root, 'absolute-symlink'));
  execFileSync('mkfifo', [path.join(root, 'a-fifo')]);
  return { keyPath, bigPath };
}

/** Runs mksquashfs quietly with `args` (compression, block size, ...). */
export function mksquashfs(root: string, image: string, args: string[]): void {
  execFileSync('mksquashfs', [root, image, '-noappend', '-quiet', '-no-progress', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}
