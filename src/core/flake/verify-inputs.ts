/**
 * Verifying carried flake inputs on a seed without unpacking them: each `inputs/*.tar.gz` is
 * streamed through gunzip and a tar reader into a NAR hasher, and must give the narHash the
 * manifest records, whose fixed-output store path must be the one recorded too.
 */
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { NarHasher, type NarEntry } from './nar.js';
import { fixedOutputSourcePath, parseSriSha256, toSriSha256 } from './store-path.js';

export interface InputArchiveCheck {
  /** The NAR hash of the archive's `source` tree, when it could be computed. */
  narHash?: string;
  entries: number;
  issues: string[];
}

/** Tar entry name to NAR path: `source` is the root, `source/a/b/` is `a/b`. */
function narPath(name: string): string | undefined {
  const trimmed = name.replace(/\/+$/, '');
  if (trimmed === 'source') return '';
  if (!trimmed.startsWith('source/')) return undefined;
  const rest = trimmed.slice('source/'.length);
  return rest.split('/').every((part) => part !== '' && part !== '.' && part !== '..') ? rest : undefined;
}

/**
 * Streams the carried input archive `file` and computes the NAR hash of its `source` tree; entries
 * outside `source/`, of other types, or out of NAR order are issues (never thrown).
 */
export async function narHashOfInputArchive(file: string): Promise<InputArchiveCheck> {
  const hasher = new NarHasher();
  const issues: string[] = [];
  let entries = 0;
  const extractor = extract();
  extractor.on('entry', (header, stream, next) => {
    entries += 1;
    const done = (message?: string) => {
      if (message && issues.length < 20) issues.push(message);
      stream.resume();
      stream.on('end', () => next());
    };
    const relative = narPath(header.name);
    if (relative === undefined) return done(`entry ${JSON.stringify(header.name)} is not inside the top folder source/`);
    let entry: NarEntry;
    switch (header.type) {
      case 'directory':
        entry = { path: relative, type: 'directory' };
        break;
      case 'symlink':
        entry = { path: relative, type: 'symlink', target: header.linkname ?? '' };
        break;
      case 'file':
      case 'contiguous-file':
        entry = { path: relative, type: 'file', executable: ((header.mode ?? 0) & 0o100) !== 0, size: header.size ?? 0 };
        break;
      default:
        return done(`entry ${JSON.stringify(header.name)} is a ${header.type ?? 'unknown'} entry, which a Nix store path cannot hold`);
    }
    if (issues.length > 0) return done();
    try {
      hasher.entry(entry);
    } catch (error) {
      return done(`entry ${JSON.stringify(header.name)}: ${(error as Error).message}`);
    }
    stream.on('data', (chunk: unknown) => {
      try {
        hasher.contents(chunk as Buffer);
      } catch (error) {
        if (issues.length < 20) issues.push(`entry ${JSON.stringify(header.name)}: ${(error as Error).message}`);
      }
    });
    stream.on('end', () => next());
  });
  try {
    await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), createGunzip(), extractor);
  } catch (error) {
    issues.push(`the archive does not open: ${(error as Error).message}`);
  }
  if (issues.length > 0) return { entries, issues };
  try {
    return { narHash: toSriSha256(hasher.digest()), entries, issues };
  } catch (error) {
    return { entries, issues: [`the archive holds no complete source tree: ${(error as Error).message}`] };
  }
}

/** Checks one recorded carried input: the store path follows from the narHash, and the archive's tree has that hash. */
export async function checkCarriedInput(file: string, record: { narHash: string; storePath: string }): Promise<string[]> {
  if (!parseSriSha256(record.narHash)) return [`its narHash ${JSON.stringify(record.narHash)} is not an SRI sha256`];
  const issues: string[] = [];
  const storePath = fixedOutputSourcePath(record.narHash);
  if (storePath !== record.storePath) issues.push(`the manifest's store path ${record.storePath} is not the one its narHash gives (${storePath})`);
  const check = await narHashOfInputArchive(file);
  issues.push(...check.issues);
  if (check.narHash !== undefined && check.narHash !== record.narHash) issues.push(`its contents have NAR hash ${check.narHash}, the manifest (and flake.lock) say ${record.narHash}`);
  return issues;
}
