/** What every command receives from the entry point: the interactivity decision, output, cancellation. */
import type { Output } from '../ui/output.js';

export interface CommandContext {
  /** Decided once at the entry point: terminals on stdin and stdout, no CI, no --yes, no --json. */
  interactive: boolean;
  output: Output;
  signal: AbortSignal;
  cwd: string;
}
