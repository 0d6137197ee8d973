/** The subprocess wrapper, against real processes. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CommandError } from '../../src/errors.js';
import { hasCommand, run } from '../../src/util/run.js';
import { tempDir } from '../helpers/tmp.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('run', () => {
  it('returns stdout and stderr as text, and stdout as bytes', async () => {
    const result = await run('sh', ['-c', 'printf "a\\nb\\n"; printf "warn\\n" >&2'], { cwd: '/' });
    expect(result).toMatchObject({ exitCode: 0, stdout: 'a\nb\n', stderr: 'warn\n' });
    expect(result.stdoutBuffer.toString()).toBe('a\nb\n');
  });

  it('keeps binary output intact (NUL separators, bytes that are not UTF-8)', async () => {
    const result = await run('printf', ['a\\000\\377b'], { cwd: '/', binary: true });
    expect([...result.stdoutBuffer]).toEqual([0x61, 0, 0xff, 0x62]);
    expect(result.stdout).toBe('');
  });

  it('feeds input on stdin, text or bytes, and ignores stdin otherwise', async () => {
    expect((await run('cat', [], { cwd: '/', input: 'hello' })).stdout).toBe('hello');
    expect((await run('wc', ['-c'], { cwd: '/', input: Buffer.alloc(3 * 1024 * 1024, 1) })).stdout.trim()).toBe(String(3 * 1024 * 1024));
    // Without input, a reader of stdin sees end of file at once instead of waiting for a terminal.
    expect((await run('cat', [], { cwd: '/', timeout: 10_000 })).stdout).toBe('');
  });

  it('survives a command that exits without reading its input', async () => {
    const result = await run('sh', ['-c', 'exit 3'], { cwd: '/', input: Buffer.alloc(8 * 1024 * 1024), reject: false });
    expect(result.exitCode).toBe(3);
  });

  it('throws a CommandError with the exit code and the stderr tail, or returns it with reject: false', async () => {
    const failing = run('sh', ['-c', 'echo one >&2; echo two >&2; exit 7'], { cwd: '/' });
    await expect(failing).rejects.toBeInstanceOf(CommandError);
    await expect(failing).rejects.toMatchObject({ code: 7, stderrTail: 'one | two', message: expect.stringContaining('failed with exit code 7') });
    expect((await run('sh', ['-c', 'exit 7'], { cwd: '/', reject: false })).exitCode).toBe(7);
  });

  it('runs in the given folder, with variables added to and removed from the environment', async () => {
    const dir = await tempDir();
    process.env.DUBNIUM_RUN_TEST_REMOVED = 'present';
    try {
      const result = await run('sh', ['-c', 'pwd; echo "${DUBNIUM_RUN_TEST_ADDED}"; echo "${DUBNIUM_RUN_TEST_REMOVED-unset}"'], {
        cwd: dir,
        env: { DUBNIUM_RUN_TEST_ADDED: 'added', DUBNIUM_RUN_TEST_REMOVED: undefined },
      });
      expect(result.stdout.split('\n')).toEqual([dir, 'added', 'unset', '']);
    } finally {
      delete process.env.DUBNIUM_RUN_TEST_REMOVED;
    }
  });

  it('says plainly when a command cannot be started: missing from PATH, or a missing working folder', async () => {
    const missing = 'dubnium-no-such-command';
    await expect(run(missing, [], { cwd: '/' })).rejects.toMatchObject({ code: null, message: 'dubnium-no-such-command could not be started: dubnium-no-such-command was not found on PATH' });
    await expect(run('true', [], { cwd: '/nonexistent/dubnium' })).rejects.toThrow(/could not be started: its working folder \/nonexistent\/dubnium does not exist/);
  });

  it('stops a command at its timeout and says so', async () => {
    const started = Date.now();
    await expect(run('sleep', ['30'], { cwd: '/', timeout: 300 })).rejects.toMatchObject({ code: null, message: 'sleep 30 timed out after 300 ms' });
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it('reports a command killed by a signal', async () => {
    await expect(run('sh', ['-c', 'kill -KILL $$'], { cwd: '/' })).rejects.toThrow(/killed by SIGKILL/);
    expect((await run('sh', ['-c', 'kill -KILL $$'], { cwd: '/', reject: false })).exitCode).toBe(-1);
  });

  it('stops its children when the tool exits, so none outlives it', async () => {
    const dir = await tempDir();
    const pidFile = path.join(dir, 'child.pid');
    const script = path.join(dir, 'exits.mjs');
    // The built module, as the CLI runs it.
    await writeFile(
      script,
      `import { run } from ${JSON.stringify(path.join(ROOT, 'dist/util/run.js'))};\n` +
        `run('sh', ['-c', 'echo $$ > "$0"; exec sleep 300', ${JSON.stringify(pidFile)}], { cwd: '/' }).catch(() => undefined);\n` +
        `const wait = () => { try { if (readFileSync(${JSON.stringify(pidFile)}, 'utf8').endsWith('\\n')) process.exit(0); } catch {} setTimeout(wait, 20); };\n` +
        `import { readFileSync } from 'node:fs';\nwait();\n`,
    );
    execFileSync(process.execPath, [script], { timeout: 30_000 });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(pid).toBeGreaterThan(0);
    // Gone, or a zombie waiting for a parent that is no longer there to reap it.
    const alive = () => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    for (let tries = 0; alive() && tries < 100; tries += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(alive()).toBe(false);
  });

  it('finds commands on PATH', async () => {
    expect(await hasCommand('sh')).toBe(true);
    const missing = 'dubnium-no-such-command';
    expect(await hasCommand(missing)).toBe(false);
  });
});
