/**
 * The one wrapper for subprocesses: array arguments, no shell, explicit cwd, a timeout,
 * stdin ignored unless given, one typed error carrying the command, exit code and stderr tail.
 *
 * Built on node:child_process rather than execa: the few things this tool needs (collect the output,
 * a timeout, stdin from a buffer, children stopped when the tool exits) are a page of code, and
 * execa with its dependencies is 160 modules that every build loaded before its first byte reached
 * the stick (~0.15 s of a cold start).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CommandError } from '../errors.js';

export interface RunOptions {
  cwd: string;
  /** Milliseconds; default 120 s. */
  timeout?: number;
  /** Bytes or text for stdin; stdin is ignored otherwise. */
  input?: string | Buffer;
  /** Added to (or, with an `undefined` value, removed from) the tool's own environment. */
  env?: NodeJS.ProcessEnv;
  /** Return the result instead of throwing on a non-zero exit. */
  reject?: boolean;
  /** Keep stdout as a Buffer (binary output such as `git ls-files -z`). */
  binary?: boolean;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stdoutBuffer: Buffer;
  stderr: string;
}

const DEFAULT_TIMEOUT = 120_000;
/** Output kept per stream; a command printing more is stopped and reported, not buffered on. */
const MAX_OUTPUT = 512 * 1024 * 1024;
/** After SIGTERM (timeout, too much output, the tool exiting), a child gets this long before SIGKILL. */
const KILL_GRACE = 5_000;

/** Children still running: stopped when the tool exits, so that none outlives it (an mkfs, a mount helper). */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const running of live) running.kill('SIGTERM');
    });
  }
  live.add(child);
}

function tail(text: string, lines = 3): string {
  return text.trim().split('\n').slice(-lines).join(' | ');
}

interface Outcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  /** Why the command did not run to its own end: not started, timed out, or too much output. */
  failure?: string;
}

function execute(command: string, args: readonly string[], options: RunOptions): Promise<Outcome> {
  const timeout = options.timeout ?? DEFAULT_TIMEOUT;
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        cwd: options.cwd,
        // Node leaves out variables whose value is undefined: that is how a caller removes one.
        env: { ...process.env, ...options.env },
        stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      });
    } catch (error) {
      resolve({ exitCode: null, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), failure: `could not be started: ${(error as Error).message}` });
      return;
    }
    track(child);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const sizes = { stdout: 0, stderr: 0 };
    let failure: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (reason: string) => {
      failure ??= reason;
      child.kill('SIGTERM');
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), KILL_GRACE).unref();
    };
    const collect = (name: 'stdout' | 'stderr', into: Buffer[]) => (chunk: Buffer) => {
      sizes[name] += chunk.length;
      if (sizes[name] > MAX_OUTPUT) stop(`printed more than ${MAX_OUTPUT / 1024 / 1024} MiB on ${name}`);
      else into.push(chunk);
    };
    child.stdout?.on('data', collect('stdout', stdout));
    child.stderr?.on('data', collect('stderr', stderr));
    const timer = setTimeout(() => stop(`timed out after ${timeout} ms`), timeout);
    if (child.stdin) {
      // A command may exit without reading all of its input (EPIPE): its exit code tells what happened.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
    child.once('error', (error: NodeJS.ErrnoException) => {
      // Only a spawn failure arrives before 'close' without an exit; kill errors do not matter here.
      if (child.pid === undefined) failure ??= `could not be started: ${error.code === 'ENOENT' ? (existsSync(options.cwd) ? `${command} was not found on PATH` : `its working folder ${options.cwd} does not exist`) : error.message}`;
    });
    child.once('close', (exitCode, signal) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      live.delete(child);
      resolve({ exitCode, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr), ...(failure ? { failure } : {}) });
    });
  });
}

export async function run(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const outcome = await execute(command, args, options);
  const stderr = outcome.stderr.toString('utf8');
  const display = [command, ...args].join(' ');
  if (outcome.failure) throw new CommandError(display, null, tail(stderr), `${display} ${outcome.failure}`);
  if (outcome.exitCode === null) {
    // Killed by a signal nobody here sent (the OOM killer, an operator's kill).
    if (options.reject === false) return { exitCode: -1, stdout: options.binary ? '' : outcome.stdout.toString('utf8'), stdoutBuffer: outcome.stdout, stderr };
    throw new CommandError(display, null, tail(stderr), `${display} was killed by ${outcome.signal ?? 'a signal'}${stderr.trim() ? `: ${tail(stderr)}` : ''}`);
  }
  const result = { exitCode: outcome.exitCode, stdout: options.binary ? '' : outcome.stdout.toString('utf8'), stdoutBuffer: outcome.stdout, stderr };
  if (outcome.exitCode !== 0 && options.reject !== false) throw new CommandError(display, outcome.exitCode, tail(stderr));
  return result;
}

/** True when `command` can be found on PATH. */
export async function hasCommand(command: string): Promise<boolean> {
  const outcome = await execute('sh', ['-c', 'command -v "$1"', 'sh', command], { cwd: process.cwd() });
  return outcome.exitCode === 0;
}
