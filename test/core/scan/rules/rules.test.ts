/**
 * The grid search that decides whether a text can hold a base64-wrapped secret: it must agree with
 * the plain regular expression it stands in for, on any text.
 */
import { randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hasBase64Run } from '../../../../src/core/scan/rules/rules.js';

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const OTHER = ' \n"=-_.:;{}\u00e9';

function run(length: number): string {
  let out = '';
  for (let index = 0; index < length; index++) out += BASE64[randomInt(BASE64.length)];
  return out;
}

/** Runs of base64 of random lengths (most short, some near and over `min`) between other characters. */
function randomText(min: number): string {
  let out = '';
  const pieces = randomInt(1, 12);
  for (let piece = 0; piece < pieces; piece++) {
    const long = randomInt(4) === 0;
    out += run(long ? randomInt(min - 20, min + 20) : randomInt(0, min));
    out += OTHER[randomInt(OTHER.length)]!.repeat(randomInt(1, 3));
  }
  return out.slice(randomInt(0, 5));
}

describe('hasBase64Run', () => {
  it('agrees with /[A-Za-z0-9+/]{min}/ on random texts', () => {
    for (const min of [80, 40, 7, 5, 1]) {
      const reference = new RegExp(`[A-Za-z0-9+/]{${min}}`);
      for (let trial = 0; trial < 3000; trial++) {
        const text = randomText(min);
        expect(hasBase64Run(text, min), `min ${min}: ${JSON.stringify(text)}`).toBe(reference.test(text));
      }
    }
  });

  it('finds a run of exactly the minimum at the start and at the end, and not one character less', () => {
    expect(hasBase64Run(run(80))).toBe(true);
    expect(hasBase64Run(run(79))).toBe(false);
    expect(hasBase64Run(`x y ${run(80)}`)).toBe(true);
    expect(hasBase64Run(`${run(80)} x`)).toBe(true);
    expect(hasBase64Run(`${run(79)} ${run(79)} ${run(40)}.${run(40)}`)).toBe(false);
  });

  it('rules out the 64-digit hex digests Nix files are full of', () => {
    const hex = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    expect(hasBase64Run(`sha256 = "${hex}";\nother = "${hex}";`)).toBe(false);
    expect(hasBase64Run(`sha512 = "${hex}${hex}";`)).toBe(true);
  });
});
