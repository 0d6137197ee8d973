/**
 * ByteSources (random access for 'random' formats) over a buffer, an open file, or a spool: a
 * stream written to a private temp file because a 'random' format needs it and it has no source of
 * its own. Spools live in a 0700 folder, the file 0600, and are removed when done, and on exit.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileSource } from '../formats/byte-source.js';
import type { ByteSource } from '../formats/types.js';

export class BufferSource implements ByteSource {
  constructor(private readonly bytes: Buffer) {}

  get size(): number {
    return this.bytes.length;
  }

  async read(position: number, length: number): Promise<Buffer> {
    return this.bytes.subarray(Math.min(position, this.bytes.length), Math.min(this.bytes.length, position + length));
  }
}

/** A region of an open file (the whole file by default). */
export class FileSource implements ByteSource {
  constructor(
    private readonly handle: FileHandle,
    readonly size: number,
    private readonly offset = 0,
  ) {}

  /**
   * The whole of `file`, a regular file or a block device (a stick, one partition): one opener for
   * both, formats/byte-source's, which sizes a block device from sysfs (its st_size is 0).
   */
  static async open(file: string): Promise<ByteSource & { close(): Promise<void> }> {
    return fileSource(file);
  }

  async read(position: number, length: number): Promise<Buffer> {
    const wanted = Math.max(0, Math.min(length, this.size - position));
    const out = Buffer.allocUnsafe(wanted);
    let filled = 0;
    while (filled < wanted) {
      const { bytesRead } = await this.handle.read(out, filled, wanted - filled, this.offset + position + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === wanted ? out : out.subarray(0, filled);
  }
}

/** Spool folders still on disk: removed on exit too (a second Ctrl-C exits without unwinding). */
const live = new Set<string>();
let hooked = false;

function removeAll(): void {
  for (const dir of live) rmSync(dir, { recursive: true, force: true });
  live.clear();
}

/** A private temp file a stream is written to, then read at random. `remove()` always, in a finally. */
export class Spool {
  private written = 0;

  private constructor(
    private readonly dir: string,
    private readonly handle: FileHandle,
  ) {}

  static async create(): Promise<Spool> {
    if (!hooked) {
      hooked = true;
      process.once('exit', removeAll);
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'dubnium-scan-'));
    live.add(dir);
    try {
      return new Spool(dir, await open(path.join(dir, 'spool'), 'w+', 0o600));
    } catch (error) {
      live.delete(dir);
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  async write(chunk: Buffer): Promise<void> {
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, done, chunk.length - done, this.written + done);
      done += bytesWritten;
    }
    this.written += chunk.length;
  }

  /** The bytes written so far, at random. */
  source(): ByteSource {
    return new FileSource(this.handle, this.written);
  }

  async remove(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this.dir);
  }
}

/**
 * The synchronous spool of the build's push-fed scanner (`update` is synchronous): the bytes of a
 * large file whose head is a container, unpacked at `finish`.
 */
export class SyncSpool {
  readonly file: string;
  private fd: number | undefined;

  constructor() {
    if (!hooked) {
      hooked = true;
      process.once('exit', removeAll);
    }
    this.dir = mkdtempSync(path.join(tmpdir(), 'dubnium-scan-'));
    live.add(this.dir);
    this.file = path.join(this.dir, 'spool');
    this.fd = openSync(this.file, 'w', 0o600);
  }

  private readonly dir: string;

  write(chunk: Buffer): void {
    let done = 0;
    while (done < chunk.length) done += writeSync(this.fd!, chunk, done, chunk.length - done);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  remove(): void {
    this.close();
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this.dir);
  }
}
