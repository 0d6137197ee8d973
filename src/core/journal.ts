/**
 * The build journal (`.dubnium-seed.journal` in the seed root): one JSON line per payload file that
 * is complete and flushed. A rerun over an interrupted seed uses it to keep complete files instead of
 * writing them again. It is removed when the manifest is written.
 */
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { JOURNAL_NAME, isSafeRelativePath, type ManifestFile } from './manifest.js';

export class Journal {
  private constructor(
    private readonly handle: FileHandle,
    private readonly entries: Map<string, ManifestFile>,
  ) {}

  /** Opens (creating) the journal; `seed` entries (from a previous manifest) count as complete. */
  static async open(seedRoot: string, seed: readonly ManifestFile[] = []): Promise<Journal> {
    const file = path.join(seedRoot, JOURNAL_NAME);
    const entries = new Map<string, ManifestFile>();
    for (const entry of seed) entries.set(entry.path, entry);
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const entry = JSON.parse(line) as ManifestFile;
        if (typeof entry.path === 'string' && isSafeRelativePath(entry.path) && Number.isInteger(entry.size) && /^[0-9a-f]{64}$/.test(entry.sha256)) {
          entries.set(entry.path, entry);
        }
      } catch {
        // A torn last line from an interrupted write: that file is simply written again.
      }
    }
    const handle = await open(file, 'a', 0o644);
    const journal = new Journal(handle, entries);
    // The previous manifest is about to be removed: carry its entries over in one flushed write.
    await journal.append(seed);
    return journal;
  }

  /**
   * The recorded entry for `relPath` if the file on the media still has the recorded size;
   * the caller still compares the source's digest before keeping it.
   */
  async candidate(seedRoot: string, relPath: string): Promise<ManifestFile | undefined> {
    const entry = this.entries.get(relPath);
    if (!entry) return undefined;
    try {
      const info = await stat(path.join(seedRoot, relPath));
      return info.isFile() && info.size === entry.size ? entry : undefined;
    } catch {
      return undefined;
    }
  }

  async record(entry: ManifestFile): Promise<void> {
    await this.append([entry]);
  }

  private async append(entries: readonly ManifestFile[]): Promise<void> {
    if (entries.length === 0) return;
    for (const entry of entries) this.entries.set(entry.path, entry);
    await this.handle.write(entries.map((entry) => `${JSON.stringify({ path: entry.path, size: entry.size, sha256: entry.sha256 })}\n`).join(''));
    await this.handle.datasync();
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}
