/**
 * Signing keys made fresh by ssh-keygen at test time, and a real ssh-agent on its own socket
 * (started per test, killed in cleanup), for the signed-seed tests.
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach } from 'vitest';

export interface TestKey {
  /** Private key file (mode 600). */
  file: string;
  pub: string;
  fingerprint: string;
}

/** A new key in `dir` named `name` (`ssh-keygen -t ed25519`), optionally passphrase-protected. */
export function makeKey(dir: string, name: string, options: { passphrase?: string; type?: 'ed25519' | 'ecdsa' | 'rsa' } = {}): TestKey {
  const file = path.join(dir, name);
  const type = options.type ?? 'ed25519';
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', options.passphrase ?? '', '-C', `${name}@example.invalid`, '-f', file], { stdio: 'ignore' });
  return { file, pub: `${file}.pub`, fingerprint: fingerprintOfFile(`${file}.pub`) };
}

/** The `SHA256:` fingerprint ssh-keygen prints for a public key file. */
export function fingerprintOfFile(pub: string): string {
  return execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', pub], { encoding: 'utf8' }).split(' ')[1]!;
}

const agents: ChildProcess[] = [];
afterEach(() => {
  while (agents.length > 0) {
    const agent = agents.pop()!;
    if (agent.exitCode === null) agent.kill('SIGTERM');
  }
});

/** A real ssh-agent in the foreground on `dir/agent.sock`; killed after the test. */
export async function startAgent(dir: string): Promise<{ socket: string; env: NodeJS.ProcessEnv; add(key: TestKey): void }> {
  const socket = path.join(dir, 'agent.sock');
  const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
  agents.push(agent);
  const env = { SSH_AUTH_SOCK: socket };
  // The socket file exists from bind(), a moment before the agent listens: wait until `ssh-add -l`
  // reaches it (exit 0, or 1 for "no identities"; 2 is "could not connect").
  const answers = () => existsSync(socket) && spawnSync('ssh-add', ['-l'], { env: { ...process.env, ...env }, stdio: 'ignore' }).status !== 2;
  for (let waited = 0; !answers(); waited += 20) {
    if (waited > 10_000 || agent.exitCode !== null) throw new Error('ssh-agent did not start');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    socket,
    env,
    add(key: TestKey) {
      execFileSync('ssh-add', ['-q', key.file], { env: { ...process.env, ...env }, stdio: 'ignore' });
    },
  };
}
