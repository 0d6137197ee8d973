/**
 * The NAR (Nix ARchive) serialization hash of a tree, computed while streaming: files are read in
 * chunks and never held whole, so memory stays flat whatever the input's size. A locked flake
 * input's `narHash` is this hash; carrying an input means proving its bytes against it.
 *
 * NAR layout: every string is a little-endian u64 length, the bytes, and zero padding to 8. A node
 * is `( type regular [executable ""] contents <bytes> )`, `( type symlink target <t> )` or
 * `( type directory entry ( name <n> node <node> ) ... )` with entries sorted by name bytewise.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { toSriSha256 } from './store-path.js';

const READ_CHUNK = 1024 * 1024;
const ZEROS = Buffer.alloc(8);

/** One node of a tree in NAR order, with its path relative to the root ('' for the root). */
export type NarEntry =
  | { path: string; type: 'directory' }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'file'; executable: boolean; size: number };

function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Writes NAR framing into a hash. Entries must come in NAR order (depth first, names sorted by
 * bytes within each folder); anything else is refused, because the hash would not be Nix's.
 */
export class NarHasher {
  private readonly hash: Hash = createHash('sha256');
  /** Open folders, root first; each knows its last child name. */
  private readonly stack: { path: string; last?: string }[] = [];
  private started = false;
  private fileRemaining = 0;
  private fileSize = 0;
  private rootIsLeaf = false;

  private str(value: string | Buffer): void {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(bytes.length));
    this.hash.update(length);
    this.hash.update(bytes);
    const padding = (8 - (bytes.length % 8)) % 8;
    if (padding) this.hash.update(ZEROS.subarray(0, padding));
  }

  /** Starts a node: opens the enclosing folders' entry frames as needed. */
  entry(entry: NarEntry): void {
    if (this.fileRemaining > 0) throw new Error(`the contents of the previous file are incomplete before ${entry.path}`);
    if (this.fileSize > 0) this.endContents();
    if (!this.started) {
      if (entry.path !== '') throw new Error(`the tree must start with its root, not ${entry.path}`);
      this.started = true;
      this.str('nix-archive-1');
    } else {
      if (this.rootIsLeaf || entry.path === '') throw new Error(`unexpected entry ${JSON.stringify(entry.path)} after the root`);
      const parent = entry.path.includes('/') ? entry.path.slice(0, entry.path.lastIndexOf('/')) : '';
      const name = entry.path.slice(parent ? parent.length + 1 : 0);
      if (name === '' || name === '.' || name === '..') throw new Error(`invalid name in ${JSON.stringify(entry.path)}`);
      // Close finished folders (and the entry frames around them) until the parent is on top.
      while (this.stack.length > 0 && this.stack.at(-1)!.path !== parent) {
        this.stack.pop();
        this.str(')'); // the folder node
        this.str(')'); // its entry frame
      }
      const top = this.stack.at(-1);
      if (!top) throw new Error(`${JSON.stringify(entry.path)} comes outside the folder it belongs to (not in NAR order)`);
      if (top.last !== undefined && compareNames(top.last, name) >= 0) throw new Error(`${JSON.stringify(entry.path)} is not in NAR order (names sorted by bytes)`);
      top.last = name;
      this.str('entry');
      this.str('(');
      this.str('name');
      this.str(name);
      this.str('node');
    }
    this.str('(');
    this.str('type');
    switch (entry.type) {
      case 'directory':
        this.str('directory');
        this.stack.push({ path: entry.path });
        return;
      case 'symlink':
        this.str('symlink');
        this.str('target');
        this.str(entry.target);
        this.closeLeaf(entry.path);
        return;
      case 'file': {
        this.str('regular');
        if (entry.executable) {
          this.str('executable');
          this.str('');
        }
        this.str('contents');
        const length = Buffer.alloc(8);
        length.writeBigUInt64LE(BigInt(entry.size));
        this.hash.update(length);
        this.fileRemaining = entry.size;
        this.fileSize = entry.size;
        if (entry.size === 0) this.closeLeaf(entry.path);
        else if (entry.path === '') this.rootIsLeaf = true;
        return;
      }
    }
  }

  /** The next bytes of the current file's contents. */
  contents(chunk: Buffer): void {
    if (chunk.length > this.fileRemaining) throw new Error('more file contents than the entry announced');
    this.hash.update(chunk);
    this.fileRemaining -= chunk.length;
  }

  private endContents(): void {
    const padding = (8 - (this.fileSize % 8)) % 8;
    if (padding) this.hash.update(ZEROS.subarray(0, padding));
    this.fileSize = 0;
    this.str(')');
    // A leaf inside a folder closes its entry frame as well.
    if (this.stack.length > 0) this.str(')');
  }

  private closeLeaf(entryPath: string): void {
    this.str(')');
    if (this.stack.length > 0) this.str(')');
    else if (entryPath === '') this.rootIsLeaf = true;
  }

  /** Ends the archive; returns the sha256 digest bytes. */
  digest(): Buffer {
    if (!this.started) throw new Error('empty tree');
    if (this.fileRemaining > 0) throw new Error('the last file is incomplete');
    if (this.fileSize > 0) this.endContents();
    while (this.stack.length > 0) {
      this.stack.pop();
      this.str(')');
      if (this.stack.length > 0) this.str(')');
    }
    return this.hash.digest();
  }
}

/** One file system node met while walking a tree in NAR order, with where it is on disk. */
export type WalkedEntry = NarEntry & { absPath: string };

/**
 * Walks `root` in NAR order without following symlinks. Modes are reduced to what NAR keeps:
 * executable or not. Sockets, FIFOs and devices cannot be in a NAR and are refused.
 */
export async function* walkNarOrder(root: string, relative = ''): AsyncGenerator<WalkedEntry> {
  const absPath = relative ? path.join(root, relative) : root;
  const info = await lstat(absPath);
  if (info.isSymbolicLink()) {
    yield { path: relative, type: 'symlink', target: await readlink(absPath), absPath };
  } else if (info.isFile()) {
    yield { path: relative, type: 'file', executable: (info.mode & 0o100) !== 0, size: info.size, absPath };
  } else if (info.isDirectory()) {
    yield { path: relative, type: 'directory', absPath };
    const names = (await readdir(absPath)).sort(compareNames);
    for (const name of names) yield* walkNarOrder(root, relative ? `${relative}/${name}` : name);
  } else {
    throw new Error(`${absPath} is not a file, folder or symlink, so it cannot be part of a Nix store path`);
  }
}

/** Reads a file in chunks (a fresh buffer per chunk), refusing one that changed size or became a link. */
export async function* readFileChunks(file: string, expectedSize: number): AsyncGenerator<Buffer> {
  const handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    let total = 0;
    for (;;) {
      const buffer = Buffer.allocUnsafe(READ_CHUNK);
      const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > expectedSize) throw new Error(`${file} grew while it was read`);
      yield buffer.subarray(0, bytesRead);
    }
    if (total !== expectedSize) throw new Error(`${file} shrank while it was read`);
  } finally {
    await handle.close();
  }
}

/** The NAR hash of the tree at `root` as SRI (`sha256-<base64>`), reading every file in chunks. */
export async function narHashOfPath(root: string): Promise<string> {
  const hasher = new NarHasher();
  for await (const entry of walkNarOrder(root)) {
    hasher.entry(entry);
    if (entry.type === 'file') for await (const chunk of readFileChunks(entry.absPath, entry.size)) hasher.contents(chunk);
  }
  return toSriSha256(hasher.digest());
}
