/** `dubnium-seed scan PATH...`: leak-scan folders, files and archives. */
import path from 'node:path';
import { scanPaths, toSarif, formatScanReport, type ScanReport } from '../core/scan/index.js';
import { UsageError } from '../errors.js';
import { TOOL_VERSION } from '../version.js';
import type { CommandContext } from './context.js';

export interface ScanFlags {
  json?: boolean;
  sarif?: boolean;
  profile?: string;
  operatorSecrets?: boolean;
}

/**
 * Scans `paths` (relative to the context's cwd) and prints one report: human text, one JSON document
 * (`--json`, CONTRACT.md "Machine-readable output") or a SARIF 2.1.0 log (`--sarif`). Returns exit 4
 * when any finding is not allowlisted (an `unscanned` one too: what could not be read fails), 0 when clean.
 */
export async function runScan(paths: string[], flags: ScanFlags, context: CommandContext): Promise<number> {
  if (flags.json && flags.sarif) throw new UsageError('Pass only one of --json and --sarif.');
  // The profile loader (zod, yaml) is only loaded when a profile is named: scan starts fast.
  const profile = flags.profile !== undefined ? await (await import('../profile.js')).loadProfile(flags.profile, context.cwd) : undefined;
  const report = await scanPaths(
    paths.map((item) => path.resolve(context.cwd, item)),
    {
      allowlist: profile?.data.scan?.allow ?? [],
      // Commander gives a lone `--no-x` flag the default true, so only false says the flag was passed.
      operatorSecrets: flags.operatorSecrets === false ? false : (profile?.data.scan?.operatorSecrets ?? true),
      ...(profile?.data.scan?.limits ? { limits: profile.data.scan.limits } : {}),
      signal: context.signal,
    },
  );
  if (flags.sarif) process.stdout.write(`${JSON.stringify(toSarif(report, TOOL_VERSION), null, 2)}\n`);
  else context.output.result(scanJson(paths, report), () => formatScanReport(report));
  return report.findings.length > 0 ? 4 : 0;
}

/** The `scan --json` document: the report plus the roots as given, so relative paths can be placed. */
export function scanJson(paths: string[], report: ScanReport) {
  return { command: 'scan', ok: report.findings.length === 0, roots: paths, ...report };
}
