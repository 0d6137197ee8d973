/**
 * The shipped JSON Schema for profiles: generated from the zod schema (never stale), named by the
 * shipped profiles, and checking what the tool itself checks, as an editor's YAML language server
 * would with it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { profileSchema } from '../src/profile.js';
import { renderProfileJsonSchema } from '../src/profile-schema.js';
import { renderProfile } from '../src/ui/wizard/steps.js';

const profiles = fileURLToPath(new URL('../profiles/', import.meta.url));
const schemaText = readFileSync(path.join(profiles, 'profile.schema.json'), 'utf8');
const validate = new Ajv2020({ allErrors: true, strict: false }).compile(JSON.parse(schemaText) as object);

describe('profiles/profile.schema.json', () => {
  it('is what the zod schema generates (run `npm run schema` after changing src/profile.ts)', () => {
    expect(schemaText).toBe(renderProfileJsonSchema());
  });

  for (const name of ['demo.yaml', 'workstation.yaml']) {
    it(`is named by profiles/${name} and accepts it`, () => {
      const text = readFileSync(path.join(profiles, name), 'utf8');
      expect(text.split('\n')[0]).toBe('# yaml-language-server: $schema=./profile.schema.json');
      expect(validate(parseYaml(text)), JSON.stringify(validate.errors)).toBe(true);
    });
  }

  it('rejects what the tool rejects, and accepts what it accepts', () => {
    const samples: unknown[] = [
      { source: { repo: '~/src/dubnium' }, target: { filesystem: 'ext4', label: 'DUBNIUM-SEED' } },
      { source: { repo: '~/src/dubnium', submodules: 'maybe' } },
      { target: { filesystem: 'ntfs' } },
      { unknownKey: true },
      { target: { label: 'A-LABEL-LONGER-THAN-16' } },
      { scan: { allow: [{ fingerprint: 'github-token:0123456789abcdef', reason: 'revoked test token' }] } },
      { scan: { allow: [{ fingerprint: 'short', reason: 'x' }] } },
      { models: [{ path: 'a', name: '.hidden' }] },
    ];
    for (const sample of samples) {
      expect(validate(sample), JSON.stringify(sample)).toBe(profileSchema.safeParse(sample).success);
    }
  });

  it('is named by the profiles the wizard saves', () => {
    const text = renderProfile({ source: { repo: '/src/dubnium' } });
    const first = text.split('\n')[0]!;
    expect(first).toMatch(/^# yaml-language-server: \$schema=\/.+\/profiles\/profile\.schema\.json$/);
  });
});
