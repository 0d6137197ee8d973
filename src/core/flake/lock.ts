/**
 * Reading `flake.lock`: the node graph from `root`, every locked input with the attribute paths
 * that reach it, and whether its bytes must travel on the seed (the installer cannot fetch them
 * without the operator's credentials or machine), can be fetched at install (public), or are
 * already in the source archive (relative `path:` inputs inside the repository).
 */
import path from 'node:path';
import { UsageError } from '../../errors.js';

/** Lock versions Nix still reads and that share the node-graph layout. */
export const SUPPORTED_LOCK_VERSIONS = [5, 6, 7] as const;

export type InputClass = 'carried' | 'fetched' | 'in-repo';

/** One locked input (one node of the lock graph other than the root). */
export interface LockedInput {
  /** The lock's node key: unique in the lock, used in file names. */
  node: string;
  /** Attribute paths from the root that reach this node, e.g. `secrets` or `hardware/nixpkgs` (first is the shortest). */
  paths: string[];
  /** `locked.type`: git, github, gitlab, sourcehut, path, tarball, file, hg... */
  type: string;
  /** A display URL with any credentials removed. */
  url: string;
  rev?: string;
  ref?: string;
  /** SRI sha256 of the tree's NAR serialization; what proves carried bytes. */
  narHash?: string;
  lastModified?: number;
  /** `dir` of the flake inside the tree (the tree itself is the whole repository). */
  dir?: string;
  /** Whether the lock asks for submodules (git inputs). */
  submodules: boolean;
  /** False for `flake = false` inputs. */
  flake: boolean;
  class: InputClass;
  /** Why it is in that class, as a short phrase for the plan. */
  reason: string;
  /** The raw `locked` attributes (never printed: a URL in it may carry credentials). */
  locked: Record<string, unknown>;
}

export interface FlakeLock {
  version: number;
  inputs: LockedInput[];
  /** Things the plan should say (a lock whose root node is missing has no inputs to walk). */
  warnings: string[];
}

/** Which inputs the operator asked to carry whatever their URL: names, attribute paths, or all. */
export type CarrySelection = readonly string[] | 'all';

interface RawNode {
  inputs?: Record<string, string | string[]>;
  locked?: Record<string, unknown>;
  original?: Record<string, unknown>;
  flake?: boolean;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Parses `flake.lock` text and walks its graph from `root` (transitive inputs and `follows` paths
 * included). Throws UsageError (exit 2) for text that is not a lock of a supported version.
 */
export function parseFlakeLock(text: string, file = 'flake.lock'): { version: number; nodes: Map<string, RawNode>; root: string } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${file} is not valid JSON (${(error as Error).message}): run \`nix flake lock\` to rewrite it.`);
  }
  if (!isRecord(data)) throw new UsageError(`${file} is not a flake lock (not a JSON object): run \`nix flake lock\` to rewrite it.`);
  const version = data.version;
  if (typeof version !== 'number' || !(SUPPORTED_LOCK_VERSIONS as readonly number[]).includes(version)) {
    throw new UsageError(
      `${file} has lock version ${JSON.stringify(version)}; dubnium-seed reads versions ${SUPPORTED_LOCK_VERSIONS.join(', ')}: run \`nix flake lock\` (or \`nix flake update\`) with a current Nix to rewrite it.`,
    );
  }
  if (!isRecord(data.nodes)) throw new UsageError(`${file} has no "nodes" object: run \`nix flake lock\` to rewrite it.`);
  const root = typeof data.root === 'string' ? data.root : 'root';
  const nodes = new Map<string, RawNode>();
  for (const [key, value] of Object.entries(data.nodes)) {
    if (!isRecord(value)) throw new UsageError(`${file}: node ${JSON.stringify(key)} is not an object: run \`nix flake lock\` to rewrite it.`);
    nodes.set(key, value as RawNode);
  }
  return { version, nodes, root };
}

/** Follows an input path (`follows` as an array of input names) from the root to a node key. */
function resolveFollows(nodes: Map<string, RawNode>, root: string, follows: readonly string[], file: string, depth = 0): string {
  if (depth > 64) throw new UsageError(`${file}: "follows" paths loop: run \`nix flake lock\` to rewrite it.`);
  let key = root;
  for (const name of follows) {
    const edge = nodes.get(key)?.inputs?.[name];
    if (edge === undefined) throw new UsageError(`${file}: the follows path ${follows.join('/')} names ${JSON.stringify(name)}, which ${JSON.stringify(key)} does not have: run \`nix flake lock\`.`);
    key = typeof edge === 'string' ? edge : resolveFollows(nodes, root, edge, file, depth + 1);
  }
  return key;
}

/**
 * Removes credentials from a URL for display and the manifest: the whole user info of http(s)
 * URLs (a token often sits there), the password of others (an ssh user name such as `git` stays),
 * and query parameters whose name says token, password, secret or key.
 */
export function redactUrl(url: string): string {
  // scp-like `user@host:path`: the user is an account name (`git`), never a secret.
  if (/^[^@/:]+@[^/:]+:(?!\/\/)/.test(url)) return url;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//');
  }
  if (parsed.protocol.includes('http')) parsed.username = '';
  parsed.password = '';
  for (const name of [...parsed.searchParams.keys()]) {
    if (/token|passw|secret|key|auth/i.test(name)) parsed.searchParams.delete(name);
  }
  return parsed.toString();
}

function str(locked: Record<string, unknown>, key: string): string | undefined {
  const value = locked[key];
  return typeof value === 'string' ? value : undefined;
}

function displayUrl(type: string, locked: Record<string, unknown>): string {
  switch (type) {
    case 'github':
    case 'gitlab':
    case 'sourcehut':
      return `${type}:${str(locked, 'owner') ?? '?'}/${str(locked, 'repo') ?? '?'}`;
    case 'path':
      return `path:${str(locked, 'path') ?? '?'}`;
    default:
      return redactUrl(str(locked, 'url') ?? `${type}:?`);
  }
}

/** Whether a git/hg/tarball URL needs credentials or this machine, and why. */
function urlNeedsCarrying(url: string): string | undefined {
  if (/^[^@/:]+@[^/:]+:(?!\/\/)/.test(url)) return 'an scp-like ssh URL needs the operator\'s ssh key';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    if (url.startsWith('/')) return 'a local path on this machine, absent on the installer';
    return 'a URL the installer cannot parse';
  }
  const scheme = parsed.protocol.replace(/:$/, '');
  if (/(^|\+)ssh$/.test(scheme)) return 'git over ssh needs the operator\'s ssh key';
  if (scheme === 'file' || scheme.endsWith('+file')) return 'a local repository on this machine, absent on the installer';
  if (parsed.username || parsed.password) return 'the URL carries user credentials';
  if ([...parsed.searchParams.keys()].some((name) => /token|passw|secret|auth/i.test(name))) return 'the URL carries a token';
  return undefined;
}

/** Where a path input lies: inside the archived tree (relative, not escaping) or elsewhere. */
function pathInputClass(locked: Record<string, unknown>, viaRoot: boolean): { class: InputClass; reason: string } {
  const inputPath = str(locked, 'path') ?? '';
  if (inputPath.startsWith('/')) {
    return { class: 'carried', reason: inputPath.startsWith('/nix/store/') ? 'a store path of this machine\'s Nix store' : 'an absolute path on this machine, absent on the installer' };
  }
  const normalized = path.posix.normalize(inputPath);
  if (normalized === '..' || normalized.startsWith('../')) return { class: 'carried', reason: 'a relative path outside the repository' };
  if (!viaRoot) return { class: 'in-repo', reason: 'a relative path inside its parent input' };
  return { class: 'in-repo', reason: 'a relative path inside the repository (already in the source archive)' };
}

function classify(type: string, locked: Record<string, unknown>, viaRoot: boolean): { class: InputClass; reason: string } {
  switch (type) {
    case 'github':
    case 'gitlab':
    case 'sourcehut':
      return { class: 'fetched', reason: `a public ${type} archive, fetched at install` };
    case 'path':
      return pathInputClass(locked, viaRoot);
    case 'git':
    case 'hg':
    case 'tarball':
    case 'file': {
      const url = str(locked, 'url') ?? '';
      const why = urlNeedsCarrying(url);
      if (why) return { class: 'carried', reason: why };
      return { class: 'fetched', reason: type === 'git' || type === 'hg' ? `a public ${type} repository over https, fetched at install` : 'a public download, fetched at install' };
    }
    default:
      return { class: 'fetched', reason: `input type ${type} is left to Nix at install` };
  }
}

/**
 * Every locked input reachable from the root, classified. `carry` names inputs (node keys or
 * attribute paths such as `a/b`) to carry whatever their URL, or `all` for a fully offline
 * evaluation; an unknown name is a UsageError listing the lock's names.
 */
export function readLockedInputs(text: string, options: { file?: string; carry?: CarrySelection } = {}): FlakeLock {
  const file = options.file ?? 'flake.lock';
  const { version, nodes, root } = parseFlakeLock(text, file);
  if (!nodes.has(root)) {
    // Nix itself would refuse this lock; there is no graph to walk, so nothing to carry either.
    if (options.carry === 'all' || (options.carry ?? []).length > 0) {
      throw new UsageError(`${file} has no root node ${JSON.stringify(root)}, so its inputs cannot be found: run \`nix flake lock\` to rewrite it.`);
    }
    return { version, inputs: [], warnings: [`${file} has no root node ${JSON.stringify(root)}; Nix will refuse it (run \`nix flake lock\`), and no flake inputs were checked.`] };
  }
  const paths = new Map<string, string[]>();
  const order: string[] = [];
  // Breadth first, so each node's first path is its shortest.
  const queue: { key: string; prefix: string[] }[] = [{ key: root, prefix: [] }];
  const expanded = new Set<string>([root]);
  while (queue.length > 0) {
    const { key, prefix } = queue.shift()!;
    for (const [name, edge] of Object.entries(nodes.get(key)?.inputs ?? {})) {
      const target = typeof edge === 'string' ? edge : Array.isArray(edge) ? resolveFollows(nodes, root, edge, file) : undefined;
      if (target === undefined) throw new UsageError(`${file}: input ${JSON.stringify(name)} of ${JSON.stringify(key)} is neither a node name nor a follows path.`);
      if (!nodes.has(target)) throw new UsageError(`${file}: input ${[...prefix, name].join('/')} points at node ${JSON.stringify(target)}, which the lock does not have: run \`nix flake lock\`.`);
      if (target === root) continue;
      // A follows edge reuses a node reached elsewhere; only direct edges name new attribute paths.
      if (typeof edge !== 'string') continue;
      const attrPath = [...prefix, name];
      if (!paths.has(target)) {
        paths.set(target, []);
        order.push(target);
      }
      paths.get(target)!.push(attrPath.join('/'));
      if (!expanded.has(target)) {
        expanded.add(target);
        queue.push({ key: target, prefix: attrPath });
      }
    }
  }
  // Nodes reached only through follows still count (their target was reached directly elsewhere).
  const carry = options.carry ?? [];
  const inputs: LockedInput[] = [];
  const known = new Set<string>();
  for (const key of order) {
    const node = nodes.get(key)!;
    const locked = isRecord(node.locked) ? node.locked : undefined;
    const nodePaths = paths.get(key)!;
    known.add(key);
    for (const attrPath of nodePaths) known.add(attrPath);
    if (!locked) continue;
    const type = str(locked, 'type') ?? 'unknown';
    const viaRoot = nodePaths.some((attrPath) => !attrPath.includes('/'));
    let { class: inputClass, reason } = classify(type, locked, viaRoot);
    const named = carry === 'all' || carry.includes(key) || nodePaths.some((attrPath) => carry.includes(attrPath));
    if (named && inputClass === 'fetched') {
      inputClass = 'carried';
      reason = carry === 'all' ? 'every input is carried (carryInputs: all, fully offline evaluation)' : 'named in carryInputs';
    }
    inputs.push({
      node: key,
      paths: nodePaths,
      type,
      url: displayUrl(type, locked),
      ...(str(locked, 'rev') ? { rev: str(locked, 'rev') } : {}),
      ...(str(locked, 'ref') ? { ref: str(locked, 'ref') } : {}),
      ...(str(locked, 'narHash') ? { narHash: str(locked, 'narHash') } : {}),
      ...(typeof locked.lastModified === 'number' ? { lastModified: locked.lastModified } : {}),
      ...(str(locked, 'dir') ? { dir: str(locked, 'dir') } : {}),
      submodules: locked.submodules === true || locked.submodules === 1,
      flake: node.flake !== false,
      class: inputClass,
      reason,
      locked,
    });
  }
  if (carry !== 'all') {
    const unknown = carry.filter((name) => !known.has(name));
    if (unknown.length > 0) {
      throw new UsageError(
        `carryInputs names ${unknown.map((name) => JSON.stringify(name)).join(', ')}, which ${file} does not have; its inputs are ${[...known].sort().join(', ') || '(none)'}.`,
      );
    }
  }
  return { version, inputs, warnings: [] };
}
