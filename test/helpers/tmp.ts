/** Temp folders that are removed after each test, and a pinned-author git helper. */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterEach } from 'vitest';

const created: string[] = [];

afterEach(async () => {
  while (created.length > 0) {
    const dir = created.pop()!;
    await rm(dir, { recursive: true, force: true });
  }
});

/** A fresh temp folder, removed after the current test. */
export async function tempDir(prefix = 'dubnium-seed-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Writes files (relative path -> content) under `root`, creating folders. */
export async function writeTree(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [relative, content] of Object.entries(files)) {
    const full = path.join(root, relative);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, content);
  }
}

const gitEnv = {
  GIT_AUTHOR_NAME: 'Test Author',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'Test Author',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
  GIT_AUTHOR_DATE: '2024-01-02T03:04:05Z',
  GIT_COMMITTER_DATE: '2024-01-02T03:04:05Z',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: tmpdir(),
};

/** Runs git in `cwd` with a pinned author and date; returns stdout. */
export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'init.defaultBranch=main', '-c', 'commit.gpgsign=false', ...args], {
    cwd,
    env: { ...process.env, ...gitEnv },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Creates a git repository with `files`, all committed. */
export async function gitRepo(files: Record<string, string | Buffer>, dir?: string): Promise<string> {
  const root = dir ?? (await tempDir('dubnium-seed-repo-'));
  await writeTree(root, files);
  git(root, 'init', '-q');
  git(root, 'add', '-A');
  git(root, 'commit', '-q', '-m', 'initial');
  return root;
}

/** Every file and folder under `root` (relative, sorted; a fresh filesystem's lost+found left out); [] when `root` does not exist. */
export function listTree(root: string): string[] {
  if (!existsSync(root)) return [];
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(root, rel))) {
      const child = rel ? `${rel}/${name}` : name;
      if (child === 'lost+found') continue;
      out.push(child);
      if (statSync(path.join(root, child)).isDirectory()) walk(child);
    }
  };
  walk('');
  return out.sort();
}
