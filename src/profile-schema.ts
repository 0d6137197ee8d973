/**
 * The profile's JSON Schema, generated from the zod schema that validates profiles, so that an editor
 * with a YAML language server checks a profile (completion, errors) before the tool runs. Shipped as
 * `profiles/profile.schema.json` and named on each shipped profile's first line; `npm run schema`
 * writes it again after the zod schema changes (a test fails while the two disagree).
 */
import { z } from 'zod';
import { profileSchema } from './profile.js';

export function profileJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(profileSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    ...generated,
    $id: 'https://dubnium-seed.invalid/profile.schema.json',
    title: 'dubnium-seed profile',
    description: 'A dubnium-seed build profile (profiles/NAME.yaml). Relative paths are relative to the profile file; ~ is the home folder.',
  };
}

/** The schema file's text: stable key order, two-space indent, trailing newline. */
export function renderProfileJsonSchema(): string {
  return `${JSON.stringify(profileJsonSchema(), null, 2)}\n`;
}
