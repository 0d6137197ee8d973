/**
 * Where output goes: with --json, stdout carries exactly one JSON document and nothing else;
 * human reports go to stdout otherwise; progress and logs always go to stderr.
 */
export interface Output {
  json: boolean;
  /** The final result: a JSON document, or human text. */
  result(value: unknown, human: () => string): void;
  /** Log lines and plain progress (stderr). */
  log(line: string): void;
}

export function createOutput(json: boolean, stdout: NodeJS.WritableStream = process.stdout, stderr: NodeJS.WritableStream = process.stderr): Output {
  return {
    json,
    result(value, human) {
      stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
    },
    log(line) {
      stderr.write(`${line}\n`);
    },
  };
}
