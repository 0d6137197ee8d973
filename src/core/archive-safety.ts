/**
 * Checks a seed's source archive without extracting it: it must open, hold one top-level folder,
 * and every entry must stay inside it (no absolute or `..` paths, no links leaving the folder,
 * no device nodes or FIFOs). A hostile tarball is reported, never unpacked.
 */
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';

export interface ArchiveIssue {
  entry: string;
  message: string;
}

export interface ArchiveCheck {
  entries: number;
  topFolders: string[];
  issues: ArchiveIssue[];
}

/** Whether `target`, taken relative to the folder of `entry`, stays inside `top`. */
function linkStaysInside(entry: string, target: string, top: string): boolean {
  if (target.startsWith('/')) return false;
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(entry), target));
  return resolved === top || resolved.startsWith(`${top}/`);
}

/**
 * Reads the gzip tarball `file` through (nothing is extracted) and reports every entry that would
 * land outside its top-level folder, or is not a file, folder or link inside it; `expectedTop` is
 * the folder the manifest records. A damaged archive is an issue, never a throw.
 */
/** A hostile archive may hold millions of bad entries; the first ones say enough. */
const MAX_ISSUES = 50;

export async function checkSourceArchive(file: string, expectedTop?: string): Promise<ArchiveCheck> {
  const issues: ArchiveIssue[] = [];
  let unreported = 0;
  const report = (issue: ArchiveIssue) => {
    if (issues.length < MAX_ISSUES) issues.push(issue);
    else unreported += 1;
  };
  const tops = new Set<string>();
  let entries = 0;
  // tar writes a later member through an earlier symlink member: a link that stays inside on
  // paper (`a -> .`) can then carry `a/b -> ../x` outside. Nothing may lie beneath a symlink.
  const symlinks: string[] = [];
  const extractor = extract();
  extractor.on('entry', (header, stream, next) => {
    entries += 1;
    const name = header.name;
    const normalized = name.replace(/\/+$/, '');
    const segments = normalized.split('/');
    if (name.startsWith('/')) report({ entry: name, message: 'absolute path' });
    else if (segments.includes('..')) report({ entry: name, message: 'path with ".." leaves the archive folder' });
    else if (segments[0]) tops.add(segments[0]);
    const top = expectedTop ?? segments[0] ?? '';
    const under = symlinks.find((link) => normalized.startsWith(`${link}/`));
    if (under !== undefined) report({ entry: name, message: `lies beneath the symlink ${JSON.stringify(under)}, so it would be written wherever that link points` });
    switch (header.type) {
      case 'file':
      case 'contiguous-file':
      case 'directory':
        break;
      case 'symlink':
        symlinks.push(normalized);
        if (!header.linkname || !linkStaysInside(normalized, header.linkname, top)) report({ entry: name, message: `symlink to ${JSON.stringify(header.linkname)} leaves the archive folder` });
        break;
      case 'link':
        if (!header.linkname || header.linkname.startsWith('/') || header.linkname.split('/').includes('..') || !header.linkname.startsWith(`${top}/`)) {
          report({ entry: name, message: `hard link to ${JSON.stringify(header.linkname)} leaves the archive folder` });
        }
        break;
      default:
        report({ entry: name, message: `${header.type ?? 'unknown'} entries are not allowed` });
    }
    stream.on('end', () => next());
    stream.resume();
  });
  try {
    await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), createGunzip(), extractor);
  } catch (error) {
    issues.push({ entry: '', message: `the archive does not open: ${(error as Error).message}` });
  }
  if (unreported > 0) issues.push({ entry: '', message: `and ${unreported} more unsafe entries` });
  if (tops.size !== 1) issues.push({ entry: '', message: `expected one top-level folder, found ${tops.size}${tops.size ? ` (${[...tops].slice(0, 5).join(', ')})` : ''}` });
  else if (expectedTop && !tops.has(expectedTop)) issues.push({ entry: '', message: `top-level folder is ${[...tops][0]}, the manifest says ${expectedTop}` });
  return { entries, topFolders: [...tops], issues };
}
