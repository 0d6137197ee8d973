/**
 * Drives the wizard's injected prompts with @inquirer/testing: every prompt the code under test
 * opens is rendered with `render` (real prompt, virtual terminal), and the test takes them in order.
 */
import { checkbox, confirm, input, select } from '@inquirer/prompts';
import { render } from '@inquirer/testing';
import type { WizardPrompts } from '../../../src/ui/wizard/prompts.js';

export type Rendered = Awaited<ReturnType<typeof render>> & { kind: keyof WizardPrompts };

export interface PromptDriver {
  prompts: WizardPrompts;
  /** The next prompt the code opens (waits for it); fails after `timeoutMs`. */
  next(kind?: keyof WizardPrompts, timeoutMs?: number): Promise<Rendered>;
  /** How many prompts were opened so far. */
  count(): number;
}

export function promptDriver(): PromptDriver {
  const queue: Rendered[] = [];
  const waiters: ((rendered: Rendered) => void)[] = [];
  let opened = 0;
  const wrap = (kind: keyof WizardPrompts, prompt: unknown) =>
    (async (config: unknown) => {
      opened += 1;
      const rendered = (await render(prompt as Parameters<typeof render>[0], config as never)) as Rendered;
      rendered.kind = kind;
      const waiter = waiters.shift();
      if (waiter) waiter(rendered);
      else queue.push(rendered);
      return rendered.answer;
    }) as never;
  return {
    prompts: { select: wrap('select', select), checkbox: wrap('checkbox', checkbox), confirm: wrap('confirm', confirm), input: wrap('input', input) },
    async next(kind, timeoutMs = 20_000) {
      const rendered =
        queue.shift() ??
        (await new Promise<Rendered>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no prompt opened within ${timeoutMs} ms`)), timeoutMs);
          waiters.push((value) => {
            clearTimeout(timer);
            resolve(value);
          });
        }));
      if (kind && rendered.kind !== kind) throw new Error(`expected a ${kind} prompt, got ${rendered.kind}: ${rendered.getScreen()}`);
      return rendered;
    },
    count: () => opened,
  };
}

/** Presses `down` until the highlighted line contains `text` (select and checkbox), at most `limit` times. */
export async function moveTo(rendered: Rendered, text: string, limit = 20): Promise<void> {
  for (let step = 0; step <= limit; step += 1) {
    const active = rendered.getScreen().split('\n').find((line) => line.startsWith('❯'));
    if (active?.includes(text)) return;
    rendered.events.keypress('down');
  }
  throw new Error(`no choice containing ${JSON.stringify(text)}:\n${rendered.getScreen()}`);
}

/** Waits (render by render) until the screen contains `text`; async validation renders more than once. */
export async function waitForScreen(rendered: Rendered, text: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const screen = rendered.getScreen();
    if (screen.includes(text)) return screen;
    if (Date.now() > deadline) throw new Error(`screen never showed ${JSON.stringify(text)}:\n${screen}`);
    await Promise.race([rendered.nextRender(), new Promise((resolve) => setTimeout(resolve, 50))]);
  }
}
