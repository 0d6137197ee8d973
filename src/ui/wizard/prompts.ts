/**
 * The prompts the wizard uses, behind one injectable object: the real @inquirer/prompts in a
 * terminal, and the same prompts rendered by @inquirer/testing in tests.
 */
import { checkbox, confirm, input, select } from '@inquirer/prompts';
import { CancelledError } from '../../errors.js';

/** The four prompts the wizard asks with; same signatures as @inquirer/prompts. */
export interface WizardPrompts {
  select: typeof select;
  checkbox: typeof checkbox;
  confirm: typeof confirm;
  input: typeof input;
}

export const inquirerPrompts: WizardPrompts = { select, checkbox, confirm, input };

/** @inquirer's error names for Ctrl-C (exit), an aborted signal, and a cancelled prompt. */
const CANCEL_ERRORS = new Set(['ExitPromptError', 'AbortPromptError', 'CancelPromptError']);

/** True when `error` is how @inquirer reports Ctrl-C or an aborted prompt. */
export function isPromptCancel(error: unknown): boolean {
  return error instanceof Error && CANCEL_ERRORS.has(error.name);
}

/**
 * Wraps prompts so Ctrl-C (ExitPromptError) becomes CancelledError (exit 130). Nothing has been
 * written while prompts run, so the message says so.
 */
export function cancellablePrompts(prompts: WizardPrompts): WizardPrompts {
  const wrap =
    <F extends (...args: never[]) => Promise<unknown>>(prompt: F): F =>
    (async (...args: Parameters<F>) => {
      try {
        return await prompt(...args);
      } catch (error) {
        if (isPromptCancel(error)) throw new CancelledError('Cancelled at a prompt: nothing was written.');
        throw error;
      }
    }) as F;
  return { select: wrap(prompts.select), checkbox: wrap(prompts.checkbox), confirm: wrap(prompts.confirm), input: wrap(prompts.input) };
}
