/** Drives the built CLI as a user would: spawn `node dist/cli.js`, collect stdout, stderr, exit code. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { writeBundle, type BundleSpec } from './bundles.js';
import { gitRepo } from './tmp.js';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called once the process is spawned (to kill it mid-run). */
  onSpawn?: (child: ChildProcess) => void;
}

/** The environment tests run the CLI in: no CI leak of the developer's own tokens, a private HOME. */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LANG: 'C.UTF-8', CI: 'true', ...extra };
  return env;
}

export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? PROJECT_ROOT,
      env: options.env ?? cliEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    options.onSpawn?.(child);
  });
}

/**
 * Sends `signal` to the child once a `*.dubnium-partial` file in `dir` has grown past `minBytes`:
 * a build interrupted mid-copy, deterministically, whatever the machine's speed.
 */
export function interruptMidCopy(child: ChildProcess, dir: string, minBytes: number, signal: NodeJS.Signals): void {
  const timer = setInterval(() => {
    const partial = existsSync(dir) ? readdirSync(dir).find((name) => name.endsWith('.dubnium-partial')) : undefined;
    const size = partial ? (statSync(path.join(dir, partial), { throwIfNoEntry: false })?.size ?? 0) : 0;
    if (size > minBytes) {
      child.kill(signal);
      clearInterval(timer);
    }
  }, 2);
  child.on('exit', () => clearInterval(timer));
}

/**
 * Builds a small seed with the CLI into `<workspace>/seed` (a git repository and a two-shard bundle
 * made there too): the template that verify tests copy and then damage.
 */
export async function buildSeedTemplate(workspace: string, bundle: BundleSpec = { shards: 2 }): Promise<string> {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = _: { }; }\n', 'hosts/a/default.nix': '{ ... }: { }\n' }, path.join(workspace, 'repo'));
  const written = await writeBundle(path.join(workspace, 'models', 'tiny-llama'), bundle);
  const seed = path.join(workspace, 'seed');
  const built = await runCli(['build', '--repo', repo, '--model', written.dir, '--target', seed, '--no-verify', '--json']);
  if (built.code !== 0) throw new Error(`test setup: build failed: ${built.stderr}`);
  return seed;
}
