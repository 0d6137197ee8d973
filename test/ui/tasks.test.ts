import { access, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { planBuild, type BuildOptions } from '../../src/core/build-seed.js';
import { verifySeed } from '../../src/core/verify-seed.js';
import { CancelledError } from '../../src/errors.js';
import { resolveBuild } from '../../src/options.js';
import { formatProgressLine, runBuildTasks } from '../../src/ui/tasks.js';
import { gitRepo, tempDir } from '../helpers/tmp.js';

const tinyDemo = fileURLToPath(new URL('../../fixtures/models/tiny-demo', import.meta.url));

async function options(target: string): Promise<BuildOptions> {
  const repo = await gitRepo({ 'flake.nix': '{ outputs = { self }: { }; }\n', 'hosts/workstation/configuration.nix': '{ ... }: { }\n' });
  const resolved = resolveBuild({ repo, model: [tinyDemo], target, operatorSecrets: false }, undefined, repo);
  return { ...resolved.options, target };
}

describe('runBuildTasks', () => {
  it('builds a real seed under the silent renderer, and the seed verifies', async () => {
    const target = path.join(await tempDir(), 'seed');
    const buildOptions = await options(target);
    const plan = await planBuild(buildOptions);
    const steps: string[] = [];
    const result = await runBuildTasks({ ...buildOptions, onStep: (step, state) => steps.push(`${step}:${state}`) }, plan, {
      renderer: 'silent',
      signal: new AbortController().signal,
    });
    expect(result.target).toBe(target);
    expect(result.verify?.ok).toBe(true);
    expect(steps).toEqual(['plan:start', 'plan:done', 'archive:start', 'archive:done', 'copy:start', 'copy:done', 'finalize:start', 'finalize:done', 'verify:start', 'verify:done']);
    expect(result.manifest.bundles.map((bundle) => bundle.name)).toEqual(['tiny-demo']);
    const report = await verifySeed({ root: target, scan: { allowlist: [], operatorSecrets: false } });
    expect(report.ok).toBe(true);
  });

  it('shows each step with its result under the test renderer', async () => {
    const target = path.join(await tempDir(), 'seed');
    const buildOptions = { ...(await options(target)), verify: false };
    const plan = await planBuild(buildOptions);
    const written: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      await runBuildTasks(buildOptions, plan, { renderer: 'test', signal: new AbortController().signal, progressIntervalMs: 0 });
    } finally {
      spy.mockRestore();
    }
    const text = written.join('');
    expect(text).toContain('Pack and scan the source archive');
    expect(text).toMatch(/Copy, hash and scan model bundles and the installer: \d+ written, 0 kept/);
    expect(text).toContain('Write SHA256SUMS and the manifest');
    expect(text).not.toContain('Read the seed back');
    // Progress reaches the task output as bytes of total with a rate and an ETA.
    expect(text).toMatch(/KiB of [\d.]+ KiB \(\d+%\), .*\/s, ETA/);
  });

  it('an aborted signal stops the build with CancelledError and leaves no manifest', async () => {
    const target = path.join(await tempDir(), 'seed');
    const buildOptions = await options(target);
    const plan = await planBuild(buildOptions);
    const controller = new AbortController();
    controller.abort(new CancelledError());
    const error = await runBuildTasks(buildOptions, plan, { renderer: 'silent', signal: controller.signal }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CancelledError);
    expect((error as CancelledError).exitCode).toBe(130);
    await expect(access(path.join(target, 'dubnium-seed.json'))).rejects.toThrow();
    const left = await readdir(target).catch(() => [] as string[]);
    expect(left).not.toContain('SHA256SUMS');
  });
});

describe('formatProgressLine', () => {
  it('gives bytes, percent, rate, ETA and the file', () => {
    expect(formatProgressLine({ phase: 'copy', bytes: 512 * 1024 * 1024, total: 2048 * 1024 * 1024, path: 'models/m/model.safetensors' }, 4000)).toBe(
      '512 MiB of 2.0 GiB (25%), 128 MiB/s, ETA 12.0 s  models/m/model.safetensors',
    );
  });

  it("counts the read-back verify still to come, so the copy's ETA is the whole run's", () => {
    // 1.5 GiB left to copy and 2 GiB to read back at 128 MiB/s: 28 s, not 12 s.
    expect(formatProgressLine({ phase: 'copy', bytes: 512 * 1024 * 1024, total: 2048 * 1024 * 1024, following: 2048 * 1024 * 1024 }, 4000)).toBe('512 MiB of 2.0 GiB (25%), 128 MiB/s, ETA 28.0 s');
    // The read-back at its last byte: nothing is left.
    expect(formatProgressLine({ phase: 'verify', bytes: 2048 * 1024 * 1024, total: 2048 * 1024 * 1024 }, 16000)).toMatch(/ETA -$/);
  });
});
