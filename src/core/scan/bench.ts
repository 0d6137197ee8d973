/** Measures the hot path: sha256 alone vs sha256 + the leak gate, on random and bf16-like bytes. */
import { createHash, randomBytes } from 'node:crypto';
import { FileScanner } from './file-scanner.js';

export interface ThroughputResult {
  kind: 'random' | 'bf16';
  megabytes: number;
  hashMBps: number;
  scanMBps: number;
  hashAndScanMBps: number;
  /** Extra time of hash+scan over hash alone, in percent. */
  overheadPercent: number;
}

function bf16Like(size: number): Buffer {
  const out = Buffer.alloc(size);
  const float = new Float32Array(1);
  const bytes = new Uint8Array(float.buffer);
  for (let index = 0; index + 1 < size; index += 2) {
    float[0] = (Math.random() - 0.5) * 0.08;
    out[index] = bytes[2]!;
    out[index + 1] = bytes[3]!;
  }
  return out;
}

function time(run: () => void): number {
  const start = performance.now();
  run();
  return performance.now() - start;
}

/**
 * Feeds `megabytes` of data in `chunkMiB` chunks through sha256 and the gate's scanner, as the build
 * does. Each figure is the best of `rounds` runs.
 */
export async function measureScanThroughput(options: { megabytes?: number; chunkMiB?: number; rounds?: number } = {}): Promise<ThroughputResult[]> {
  const chunkSize = (options.chunkMiB ?? 4) * 1024 * 1024;
  const count = Math.max(1, Math.round(((options.megabytes ?? 256) * 1e6) / chunkSize));
  const rounds = options.rounds ?? 3;
  const results: ThroughputResult[] = [];
  for (const kind of ['random', 'bf16'] as const) {
    const pool = Array.from({ length: 4 }, () => (kind === 'random' ? randomBytes(chunkSize) : bf16Like(chunkSize)));
    const environment = { operatorSecrets: [], allow: new Map<string, string>() };
    const hashOnly = () => {
      const hash = createHash('sha256');
      for (let index = 0; index < count; index++) hash.update(pool[index % 4]!);
      hash.digest();
    };
    const scanOnly = () => {
      const scanner = new FileScanner(environment, { path: 'bench', size: count * chunkSize });
      for (let index = 0; index < count; index++) scanner.update(pool[index % 4]!);
      void scanner.finish();
    };
    const both = () => {
      const hash = createHash('sha256');
      const scanner = new FileScanner(environment, { path: 'bench', size: count * chunkSize });
      for (let index = 0; index < count; index++) {
        hash.update(pool[index % 4]!);
        scanner.update(pool[index % 4]!);
      }
      hash.digest();
      void scanner.finish();
    };
    let hashMs = Infinity;
    let scanMs = Infinity;
    let bothMs = Infinity;
    for (let round = 0; round < rounds; round++) {
      hashMs = Math.min(hashMs, time(hashOnly));
      scanMs = Math.min(scanMs, time(scanOnly));
      bothMs = Math.min(bothMs, time(both));
    }
    const bytes = count * chunkSize;
    results.push({
      kind,
      megabytes: bytes / 1e6,
      hashMBps: bytes / 1e3 / hashMs,
      scanMBps: bytes / 1e3 / scanMs,
      hashAndScanMBps: bytes / 1e3 / bothMs,
      overheadPercent: ((bothMs - hashMs) / hashMs) * 100,
    });
  }
  return results;
}
