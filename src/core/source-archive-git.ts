/**
 * The git queries behind the source archive: where the work tree is, what is tracked, what is
 * untracked, what differs from HEAD. Every path crosses the process boundary NUL-separated (`-z`),
 * so names with spaces, quotes or newlines arrive verbatim.
 */
import { UsageError, CommandError } from '../errors.js';
import { run, type RunResult } from '../util/run.js';
import { isEncryptingFilter } from './scan/rules/git-crypt.js';

/**
 * Variables that would point git at another repository or index than the folder we were given
 * (set, for example, when the tool runs from a git hook) are removed; optional locks are off so
 * that reading the status never rewrites the index of a repository we only archive.
 */
const GIT_ENV: NodeJS.ProcessEnv = {
  GIT_DIR: undefined,
  GIT_WORK_TREE: undefined,
  GIT_INDEX_FILE: undefined,
  GIT_OBJECT_DIRECTORY: undefined,
  GIT_ALTERNATE_OBJECT_DIRECTORIES: undefined,
  GIT_COMMON_DIR: undefined,
  GIT_NAMESPACE: undefined,
  GIT_PREFIX: undefined,
  GIT_OPTIONAL_LOCKS: '0',
  LC_ALL: 'C',
};

/** Runs git in `cwd`; a git that is missing becomes a UsageError that names --plain-folder. */
export async function runGit(cwd: string, args: readonly string[], options: { reject?: boolean; input?: string } = {}): Promise<RunResult> {
  try {
    return await run('git', ['-c', 'core.quotePath=false', ...args], { cwd, env: GIT_ENV, reject: options.reject, timeout: 300_000, ...(options.input !== undefined ? { input: options.input } : {}) });
  } catch (error) {
    if (error instanceof CommandError && error.code === null && /could not be started/.test(error.message)) {
      throw new UsageError(`git is not installed, so ${cwd} cannot be archived from its git work tree: install git, or pass --plain-folder to archive the folder as it is.`, [], { cause: error });
    }
    if (error instanceof CommandError) throw gitFailure(cwd, error.stderrTail, error);
    throw error;
  }
}

function gitFailure(cwd: string, stderr: string, cause?: unknown): Error {
  if (/dubious ownership/.test(stderr)) {
    return new UsageError(
      `git refuses to read ${cwd} because the repository belongs to another user (running with sudo?): run as the repository's owner, or trust it with \`git config --global --add safe.directory ${cwd}\`.`,
      [],
      { cause },
    );
  }
  return cause instanceof Error ? cause : new Error(stderr);
}

/**
 * Splits `-z` output into names. The output is read as UTF-8 text (run()'s binary mode does not
 * return the bytes with execa 9); a name that is not valid UTF-8 decodes with U+FFFD and would not
 * round-trip to the file on disk, so it is refused rather than silently missed.
 */
export function splitNul(output: string, cwd: string): string[] {
  const parts = output.split('\0');
  if (parts.at(-1) === '') parts.pop();
  for (const name of parts) {
    if (name.includes('\uFFFD')) {
      throw new UsageError(`A file name in ${cwd} is not valid UTF-8 (${JSON.stringify(name)}): rename it so the archive can hold it.`);
    }
  }
  return parts;
}

export type WorkTreeLocation =
  | { kind: 'work-tree'; toplevel: string }
  | { kind: 'not-a-repository' }
  | { kind: 'bare' }
  | { kind: 'inside-git-dir' };

/** Finds the work tree containing `dir` (which must exist). */
export async function locateWorkTree(dir: string): Promise<WorkTreeLocation> {
  const probe = await runGit(dir, ['rev-parse', '--is-bare-repository', '--is-inside-work-tree'], { reject: false });
  if (probe.exitCode !== 0) {
    if (/not a git repository/i.test(probe.stderr)) return { kind: 'not-a-repository' };
    throw gitFailure(dir, probe.stderr.trim(), new CommandError('git rev-parse', probe.exitCode, probe.stderr.trim()));
  }
  const [bare, inside] = probe.stdout.split('\n');
  if (bare === 'true') return { kind: 'bare' };
  if (inside !== 'true') return { kind: 'inside-git-dir' };
  const top = await runGit(dir, ['rev-parse', '--show-toplevel']);
  return { kind: 'work-tree', toplevel: top.stdout.replace(/\n$/, '') };
}

/** The commit HEAD points at and its committer time (seconds), or null when there is no commit yet. */
export async function headCommit(toplevel: string): Promise<{ commit: string; time: number } | null> {
  const head = await runGit(toplevel, ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}'], { reject: false });
  if (head.exitCode !== 0) return null;
  const commit = head.stdout.trim();
  const time = await runGit(toplevel, ['show', '-s', '--format=%ct', commit]);
  return { commit, time: Number.parseInt(time.stdout.trim(), 10) };
}

/** A pathspec limiting a query to `prefix` (relative to the top level, no trailing slash), matched literally. */
function pathspec(prefix: string): string[] {
  return prefix ? ['--', `:(literal)${prefix}`] : ['--'];
}

export interface IndexEntry {
  /** Path relative to the top level of the work tree. */
  path: string;
  /** Git mode, e.g. 100644, 100755, 120000, 160000 (a submodule). */
  mode: string;
}

/** What the index tracks under `prefix`; conflicted paths (several stages) appear once. */
/**
 * The files among `fullNames` (paths from the work tree's top) that git-crypt encrypts: their `filter`
 * attribute is `git-crypt` (or `git-crypt-KEYNAME`; transcrypt's `crypt`, `crypt-CONTEXT`), as git itself reads every `.gitattributes`,
 * `.git/info/attributes` and the user's attributes file. In an unlocked work tree those files are plaintext.
 */
export async function listGitCrypt(toplevel: string, fullNames: readonly string[]): Promise<Set<string>> {
  const governed = new Set<string>();
  if (fullNames.length === 0) return governed;
  const result = await runGit(toplevel, ['check-attr', '-z', '--stdin', 'filter'], { input: fullNames.map((name) => `${name}\0`).join('') });
  const fields = splitNul(result.stdout, toplevel);
  for (let index = 0; index + 2 < fields.length; index += 3) {
    const value = fields[index + 2]!;
    if (isEncryptingFilter(value)) governed.add(fields[index]!);
  }
  return governed;
}

export async function listIndex(toplevel: string, prefix: string): Promise<IndexEntry[]> {
  const result = await runGit(toplevel, ['ls-files', '-z', '--stage', '--full-name', ...pathspec(prefix)]);
  const seen = new Set<string>();
  const entries: IndexEntry[] = [];
  for (const record of splitNul(result.stdout, toplevel)) {
    const tab = record.indexOf('\t');
    const path = record.slice(tab + 1);
    if (tab === -1 || seen.has(path)) continue;
    seen.add(path);
    entries.push({ path, mode: record.slice(0, record.indexOf(' ')) });
  }
  return entries;
}

/**
 * Untracked files that are not ignored under `prefix`. A nested repository that is not a submodule
 * is listed by git as one folder ending in '/'.
 */
export async function listUntracked(toplevel: string, prefix: string): Promise<string[]> {
  const result = await runGit(toplevel, ['ls-files', '-z', '--others', '--exclude-standard', '--full-name', ...pathspec(prefix)]);
  return splitNul(result.stdout, toplevel);
}

/**
 * Tracked paths whose working-tree state differs from HEAD (modified, deleted, added to the index).
 * Porcelain `git diff` compares content when only the stat data changed, so touching a file does not
 * make it dirty. A submodule counts only when a different commit is checked out; its own changes
 * are found by looking into it.
 */
export async function listChangedSinceHead(toplevel: string, prefix: string): Promise<string[]> {
  const result = await runGit(
    toplevel,
    ['diff', 'HEAD', '--name-only', '-z', '--no-renames', '--no-ext-diff', '--no-textconv', '--ignore-submodules=dirty', ...pathspec(prefix)],
  );
  return splitNul(result.stdout, toplevel);
}
