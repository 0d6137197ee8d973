/**
 * Looking inside containers: tar, gzip (and tar.gz), zip (nested too), zlib streams such as git loose
 * objects, and git packfiles (every object inflated; deltas scanned as their raw instructions, whose
 * inserted bytes carry any new text). Members are scanned with the same FileScanner, named `outer!inner`. A container that cannot
 * be read whole (encrypted zip entry, corrupt gzip, truncated tar) is a problem AND a finding of kind
 * `unreadable-container`: the gate cannot vouch for bytes it could not see, so it stops.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip, inflateSync } from 'node:zlib';
import type yauzl from 'yauzl';
import { readFully } from '../../../util/read-fully.js';
import type { Finding } from '../../types.js';
import { fingerprint } from '../rules/fingerprint.js';
import { FileScanner, unencryptedFinding, type FileResult, type FileTarget, type ScanEnvironment } from '../file-scanner.js';
import { mustBeEncrypted, parseSopsConfig } from '../rules/sops.js';
import { detectContainer, type ContainerKind } from './container-kind.js';

export { detectContainer, type ContainerKind } from './container-kind.js';

const CHUNK = 4 * 1024 * 1024;

function joinInner(parent: string | undefined, name: string): string {
  return parent === undefined ? name : `${parent}!${name}`;
}

function unreadable(target: FileTarget, message: string): { finding: Finding; problem: FileResult['problems'][number] } {
  const where = { path: target.path, ...(target.inner !== undefined ? { inner: target.inner } : {}) };
  return {
    problem: { ...where, message },
    finding: {
      ...where,
      kind: 'unreadable-container',
      rule: 'unreadable-container',
      fingerprint: fingerprint('unreadable-container', `${target.path}\0${target.inner ?? ''}\0${message}`),
      note: message,
    },
  };
}

function sourceStream(source: Buffer | string): Readable {
  if (typeof source === 'string') return createReadStream(source, { highWaterMark: CHUNK });
  return Readable.from(
    (function* slices() {
      for (let offset = 0; offset < source.length; offset += CHUNK) yield source.subarray(offset, offset + CHUNK);
    })(),
  );
}

interface MemberResult {
  name: string;
  result: FileResult;
}

async function scanMember(environment: ScanEnvironment, parent: FileTarget, name: string, size: number | undefined, chunks: AsyncIterable<Buffer>, depth: number): Promise<MemberResult> {
  const scanner = new FileScanner(environment, { path: parent.path, inner: joinInner(parent.inner, name), ...(size !== undefined ? { size } : {}) }, depth);
  for await (const chunk of chunks) scanner.update(chunk);
  return { name, result: await scanner.finishDetailed() };
}

/** Applies `.sops.yaml` files found among a container's members to the members they govern. */
function applyMemberSopsRules(members: MemberResult[], parent: FileTarget, out: FileResult): void {
  const configs = members.filter((member) => /(^|\/)\.sops\.ya?ml$/.test(member.name) && member.result.sopsConfigs.length > 0);
  for (const config of configs) {
    let parsed;
    try {
      parsed = parseSopsConfig(config.result.sopsConfigs[0]!.text);
    } catch (error) {
      out.problems.push({ path: parent.path, inner: joinInner(parent.inner, config.name), message: `cannot parse .sops.yaml: ${(error as Error).message}` });
      continue;
    }
    const dir = path.posix.dirname(config.name);
    for (const member of members) {
      if (!member.result.unencrypted) continue;
      const relative = dir === '.' ? member.name : member.name.startsWith(`${dir}/`) ? member.name.slice(dir.length + 1) : undefined;
      if (relative === undefined || !mustBeEncrypted(parsed, relative)) continue;
      out.findings.push(unencryptedFinding(parent.path, joinInner(parent.inner, member.name), relative, member.result.unencrypted.fingerprint));
    }
  }
}

function collect(members: MemberResult[], parent: FileTarget): FileResult {
  const out: FileResult = { findings: [], problems: [], sopsConfigs: [], files: 0 };
  for (const { result } of members) {
    out.findings.push(...result.findings);
    out.problems.push(...result.problems);
    out.files += result.files;
  }
  applyMemberSopsRules(members, parent, out);
  return out;
}

function escapesRoot(linkName: string, memberName: string): boolean {
  if (path.posix.isAbsolute(linkName)) return true;
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(memberName), linkName));
  return resolved === '..' || resolved.startsWith('../');
}

// Archive readers load on first use: most scans (and every CLI start) never need them.
async function scanTar(input: Readable, environment: ScanEnvironment, parent: FileTarget, depth: number): Promise<FileResult> {
  const { default: tarStream } = await import('tar-stream');
  const extract = tarStream.extract();
  input.on('error', (error) => extract.destroy(error));
  input.pipe(extract);
  const members: MemberResult[] = [];
  const problems: FileResult['problems'] = [];
  for await (const entry of extract) {
    const name = entry.header.name.replace(/^\.\//, '');
    if (entry.header.type === 'file' || entry.header.type === 'contiguous-file') {
      members.push(await scanMember(environment, parent, name, entry.header.size, entry as unknown as AsyncIterable<Buffer>, depth));
      continue;
    }
    if ((entry.header.type === 'symlink' || entry.header.type === 'link') && entry.header.linkname && escapesRoot(entry.header.linkname, name)) {
      problems.push({ path: parent.path, inner: joinInner(parent.inner, name), message: `symlink points outside the archive (${entry.header.linkname}); not followed` });
    }
    entry.resume();
  }
  const out = collect(members, parent);
  out.problems.push(...problems);
  return out;
}

async function* withHead(head: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  if (head.length > 0) yield head;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

async function scanGzip(source: Buffer | string, environment: ScanEnvironment, parent: FileTarget, depth: number): Promise<FileResult> {
  const input = sourceStream(source);
  const gunzip = createGunzip();
  input.on('error', (error) => gunzip.destroy(error));
  input.pipe(gunzip);
  const iterator = gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const headParts: Buffer[] = [];
  let headLength = 0;
  while (headLength < 512) {
    const next = await iterator.next();
    if (next.done) break;
    headParts.push(next.value);
    headLength += next.value.length;
  }
  const head = Buffer.concat(headParts);
  const outerName = path.posix.basename((parent.inner ?? parent.path).replace(/\\/g, '/'));
  if (detectContainer(head) === 'tar') {
    const tarInput = Readable.from(withHead(head, iterator));
    return scanTar(tarInput, environment, { ...parent }, depth);
  }
  const name = outerName.replace(/\.(?:gz|tgz|z)$/i, '') || '(gunzip)';
  const member = await scanMember(environment, parent, name === outerName ? `${outerName}(gunzip)` : name, undefined, withHead(head, iterator), depth);
  return collect([member], parent);
}

async function openZip(source: Buffer | string): Promise<yauzl.ZipFile> {
  const { default: yauzl } = await import('yauzl');
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, zip?: yauzl.ZipFile) => (error || !zip ? reject(error ?? new Error('cannot open zip')) : resolve(zip));
    if (typeof source === 'string') yauzl.open(source, { lazyEntries: true, autoClose: true }, done);
    else yauzl.fromBuffer(source, { lazyEntries: true }, done);
  });
}

async function scanZip(source: Buffer | string, environment: ScanEnvironment, parent: FileTarget, depth: number): Promise<FileResult> {
  const zip = await openZip(source);
  const members: MemberResult[] = [];
  const extra: FileResult = { findings: [], problems: [], sopsConfigs: [], files: 0 };
  try {
    for (;;) {
      const entry = await new Promise<yauzl.Entry | undefined>((resolve, reject) => {
        const onEntry = (value: yauzl.Entry) => {
          cleanup();
          resolve(value);
        };
        const onEnd = () => {
          cleanup();
          resolve(undefined);
        };
        const onError = (error: Error) => {
          cleanup();
          reject(error);
        };
        const cleanup = () => {
          zip.off('entry', onEntry);
          zip.off('end', onEnd);
          zip.off('error', onError);
        };
        zip.on('entry', onEntry);
        zip.on('end', onEnd);
        zip.on('error', onError);
        zip.readEntry();
      });
      if (!entry) break;
      if (entry.fileName.endsWith('/')) continue;
      if (entry.generalPurposeBitFlag & 1) {
        const { finding, problem } = unreadable({ path: parent.path, inner: joinInner(parent.inner, entry.fileName) }, 'encrypted zip entry: its content cannot be checked');
        extra.findings.push(finding);
        extra.problems.push(problem);
        continue;
      }
      const stream = await new Promise<Readable>((resolve, reject) => zip.openReadStream(entry, (error, value) => (error || !value ? reject(error ?? new Error('no stream')) : resolve(value))));
      members.push(await scanMember(environment, parent, entry.fileName, entry.uncompressedSize, stream, depth));
    }
  } finally {
    zip.close();
  }
  const out = collect(members, parent);
  out.findings.push(...extra.findings);
  out.problems.push(...extra.problems);
  return out;
}

async function scanZlib(source: Buffer, environment: ScanEnvironment, parent: FileTarget, depth: number): Promise<FileResult | undefined> {
  let inflated: Buffer;
  try {
    inflated = inflateSync(source);
  } catch {
    return undefined; // two bytes look like a zlib header by chance: not a container
  }
  const header = /^(blob|tree|commit|tag) (\d+)\0/.exec(inflated.toString('latin1', 0, 32));
  const payload = header ? inflated.subarray(header[0].length) : inflated;
  const name = header ? `(git ${header[1]})` : '(zlib)';
  const member = await scanMember(environment, parent, name, payload.length, (async function* one() { yield payload; })(), depth);
  return collect([member], parent);
}

const PACK_TYPES = ['', 'commit', 'tree', 'blob', 'tag', '', 'ofs-delta', 'ref-delta'];
/** Larger pack objects are not inflated in memory: the pack is reported as unreadable instead. */
const MAX_PACK_OBJECT = 256 * 1024 * 1024;

/**
 * A git packfile, read entry by entry in order (no .idx needed): each object's zlib stream is
 * inflated and scanned as a member named `(git blob @offset)`. Delta objects are scanned as they
 * are: copy instructions are a few bytes, inserted text comes through as it was written.
 */
async function scanGitPack(source: Buffer | string, environment: ScanEnvironment, parent: FileTarget, depth: number): Promise<FileResult> {
  const handle = typeof source === 'string' ? await open(source, 'r') : undefined;
  try {
    const total = handle ? (await handle.stat()).size : (source as Buffer).length;
    const read = async (offset: number, length: number): Promise<Buffer> => {
      const size = Math.max(0, Math.min(length, total - offset));
      if (!handle) return (source as Buffer).subarray(offset, offset + size);
      const out = Buffer.allocUnsafe(size);
      return out.subarray(0, await readFully(handle, out, offset));
    };
    const count = (await read(8, 4)).readUInt32BE(0);
    const members: MemberResult[] = [];
    let offset = 12;
    for (let index = 0; index < count; index++) {
      const header = await read(offset, 64);
      let at = 0;
      let byte = header[at++]!;
      const type = (byte >> 4) & 7;
      let size = byte & 15;
      for (let shift = 4; byte & 0x80; shift += 7) {
        if (at >= header.length) throw new Error(`truncated object header at offset ${offset}`);
        byte = header[at++]!;
        size += (byte & 0x7f) * 2 ** shift;
      }
      if (type === 6) {
        do byte = header[at++]!;
        while (byte & 0x80 && at < header.length);
      } else if (type === 7) {
        at += 20;
      }
      if (!PACK_TYPES[type]) throw new Error(`unknown object type ${type} at offset ${offset}`);
      if (size > MAX_PACK_OBJECT) throw new Error(`object at offset ${offset} is ${size} bytes, too large to inflate`);
      // The compressed stream is at most a little larger than its content (stored blocks).
      const window = await read(offset + at, size + (size >> 12) + 64);
      const { buffer: inflated, engine } = inflateSync(window, { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      if (inflated.length !== size) throw new Error(`object at offset ${offset} inflates to ${inflated.length} bytes, not ${size}`);
      members.push(await scanMember(environment, parent, `(git ${PACK_TYPES[type]} @${offset})`, size, (async function* one() { yield inflated; })(), depth));
      offset += at + engine.bytesWritten;
    }
    return collect(members, parent);
  } finally {
    await handle?.close();
  }
}

/**
 * Scans the members of a container given as bytes or as a (spooled) file path. Unreadable containers
 * come back as a problem plus an `unreadable-container` finding.
 */
export async function scanContainer(kind: ContainerKind, source: Buffer | string, environment: ScanEnvironment, target: FileTarget, depth: number): Promise<FileResult> {
  try {
    if (kind === 'gzip') return await scanGzip(source, environment, target, depth);
    if (kind === 'zip') return await scanZip(source, environment, target, depth);
    if (kind === 'tar') return await scanTar(sourceStream(source), environment, target, depth);
    if (kind === 'git-pack') return await scanGitPack(source, environment, target, depth);
    if (Buffer.isBuffer(source)) return (await scanZlib(source, environment, target, depth)) ?? { findings: [], problems: [], sopsConfigs: [], files: 0 };
    return { findings: [], problems: [], sopsConfigs: [], files: 0 };
  } catch (error) {
    const { finding, problem } = unreadable(target, `cannot read ${kind} container: ${(error as Error).message}`);
    return { findings: [finding], problems: [problem], sopsConfigs: [], files: 0 };
  }
}
