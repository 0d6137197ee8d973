/**
 * The one wrapper for subprocesses: array arguments, no shell, explicit cwd, a timeout,
 * stdin ignored unless given, one typed error carrying the command, exit code and stderr tail.
 */
import type { execa as Execa } from 'execa';
import { CommandError } from '../errors.js';

export interface RunOptions {
  cwd: string;
  /** Milliseconds; default 120 s. */
  timeout?: number;
  /** Bytes or text for stdin; stdin is ignored otherwise. */
  input?: string | Buffer;
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

let execaModule: Promise<typeof Execa> | undefined;

/**
 * execa, loaded on first use: with its dependencies it is 136 modules (~0.12 s of start-up), which a
 * verify of a folder or a scan never needs.
 */
function loadExeca(): Promise<typeof Execa> {
  execaModule ??= import('execa').then((module) => module.execa);
  return execaModule;
}

/** execa 9 returns Uint8Array (not Buffer) for `encoding: 'buffer'`, and strings otherwise. */
function asBuffer(value: unknown): Buffer {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return Buffer.from(String(value ?? ''), 'utf8');
}

function tail(text: string, lines = 3): string {
  return text.trim().split('\n').slice(-lines).join(' | ');
}

export async function run(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const execa = await loadExeca();
  const result = await execa(command, args, {
    cwd: options.cwd,
    timeout: options.timeout ?? 120_000,
    reject: false,
    stdin: options.input === undefined ? 'ignore' : 'pipe',
    ...(options.input !== undefined ? { input: options.input } : {}),
    env: options.env,
    extendEnv: true,
    encoding: options.binary ? 'buffer' : 'utf8',
    stripFinalNewline: false,
    maxBuffer: 512 * 1024 * 1024,
  });
  const stdoutBuffer = asBuffer(result.stdout);
  const stdout = options.binary ? '' : String(result.stdout ?? '');
  const stderr = asBuffer(result.stderr).toString('utf8');
  const exitCode = typeof result.exitCode === 'number' ? result.exitCode : -1;
  const display = [command, ...args].join(' ');
  if (result.failed && (result.timedOut || result.exitCode === undefined)) {
    throw new CommandError(display, null, tail(stderr), result.timedOut ? `${display} timed out after ${options.timeout ?? 120_000} ms` : `${display} could not be started: ${result.shortMessage}`);
  }
  if (exitCode !== 0 && options.reject !== false) {
    throw new CommandError(display, exitCode, tail(stderr));
  }
  return { exitCode, stdout, stdoutBuffer, stderr };
}

/** True when `command` can be found on PATH. */
export async function hasCommand(command: string): Promise<boolean> {
  const execa = await loadExeca();
  const result = await execa('sh', ['-c', 'command -v "$1"', 'sh', command], { reject: false, stdin: 'ignore' });
  return result.exitCode === 0;
}
