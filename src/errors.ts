/**
 * The typed errors of dubnium-seed and the exit codes they map to (see CONTRACT.md).
 * Core code throws these; exactly one catch, in src/cli.ts, turns them into an exit code.
 */

export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  verification: 3,
  secrets: 4,
  cancelled: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Base class: `message` is the one-line, human sentence; `details` are extra lines (digests, offsets). */
export abstract class SeedError extends Error {
  abstract readonly exitCode: ExitCode;
  readonly details: string[];
  constructor(message: string, details: string[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.details = details;
  }
}

/** Bad flag, bad profile, missing repo, invalid bundle, no space, device refused: exit 2. */
export class UsageError extends SeedError {
  readonly exitCode = ExitCode.usage;
}

/** Media failed verification: exit 3. `problems` are the individual findings. */
export class VerificationError extends SeedError {
  readonly exitCode = ExitCode.verification;
}

/** Credentials found: exit 4. */
export class SecretsFoundError extends SeedError {
  readonly exitCode = ExitCode.secrets;
}

/** The user cancelled (Ctrl-C at a prompt or during a build): exit 130. */
export class CancelledError extends SeedError {
  readonly exitCode = ExitCode.cancelled;
  constructor(message = 'Cancelled.') {
    super(message);
  }
}

/** A subprocess failed. Usually wrapped into a UsageError or surfaced as internal. */
export class CommandError extends SeedError {
  readonly exitCode = ExitCode.internal;
  constructor(
    readonly command: string,
    readonly code: number | null,
    readonly stderrTail: string,
    message?: string,
  ) {
    super(message ?? `${command} failed${code === null ? '' : ` with exit code ${code}`}${stderrTail ? `: ${stderrTail}` : ''}`);
  }
}

export function isSeedError(error: unknown): error is SeedError {
  return error instanceof SeedError;
}

/** The more serious exit code wins (4 over 3 over 2 over 0). Internal (1) and cancel (130) are not ranked here. */
export function worstExitCode(codes: readonly ExitCode[]): ExitCode {
  const rank: Record<number, number> = { 0: 0, 2: 1, 3: 2, 4: 3, 1: 4, 130: 5 };
  return codes.reduce<ExitCode>((worst, code) => ((rank[code] ?? 0) > (rank[worst] ?? 0) ? code : worst), ExitCode.ok);
}
