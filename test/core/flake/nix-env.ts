/**
 * A private, offline Nix for tests: its own HOME, state, config and cache folders, so nothing
 * touches the machine's store or settings. Each call names its `--store` chroot explicitly.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export interface NixEnv {
  env: NodeJS.ProcessEnv;
  /** Runs a Nix command; returns stdout (throws with stderr on failure). */
  run(command: string, args: string[], options?: { cwd?: string }): string;
  /** Runs a Nix command; returns the exit code and both streams. */
  attempt(command: string, args: string[], options?: { cwd?: string }): { code: number; stdout: string; stderr: string };
}

/** A Nix environment rooted in `dir` (created). */
export function nixEnv(dir: string): NixEnv {
  for (const sub of ['home', 'state', 'conf', 'cache']) mkdirSync(path.join(dir, sub), { recursive: true });
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: path.join(dir, 'home'),
    NIX_STATE_DIR: path.join(dir, 'state'),
    NIX_CONF_DIR: path.join(dir, 'conf'),
    XDG_CACHE_HOME: path.join(dir, 'cache'),
    XDG_CONFIG_HOME: path.join(dir, 'conf'),
    NIX_CONFIG: 'experimental-features = nix-command flakes\nbuild-users-group =\nsubstituters =\n',
    GIT_CONFIG_NOSYSTEM: '1',
    LANG: 'C.UTF-8',
  };
  const attempt = (command: string, args: string[], options: { cwd?: string } = {}) => {
    try {
      const stdout = execFileSync(command, args, { env, cwd: options.cwd ?? dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
      return { code: 0, stdout, stderr: '' };
    } catch (error) {
      const failed = error as { status?: number; stdout?: string; stderr?: string };
      return { code: failed.status ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  };
  return {
    env,
    attempt,
    run(command, args, options) {
      const result = attempt(command, args, options);
      if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.code}): ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      return result.stdout;
    },
  };
}
