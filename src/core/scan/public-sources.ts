/**
 * Findings in a copy of the nixpkgs sources that an installer image carries. Every NixOS installer
 * built from `installation-cd-*.nix` imports `channel.nix` (`system.installer.channel.enable`, on
 * by default), which puts the whole cleaned nixpkgs tree into the store as
 * `/nix/store/<hash>-nixos-<version>/nixos`; a flake's nixpkgs input in `nix.nixPath` or
 * `nix.registry` puts it there as `/nix/store/<hash>-source`. nixpkgs' own tests hold snakeoil SSH,
 * WireGuard and TLS keys and test passwords: public, but key material all the same. They stay
 * findings (the gate fails closed; nothing here allows them); this only says where they come
 * from and what to change, so an operator is not left to allowlist dozens of fingerprints.
 */
import type { Finding } from '../types.js';

/** An inner path in the channel copy (any of it), or in the test folders of a nixpkgs `-source` tree. */
const NIXPKGS_COPY = /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-(?:nixos-[^/]+\/nixos\/|source\/(?:nixos\/tests|nixos\/modules\/.*\/tests?|pkgs\/test|lib\/tests)\/)/;

/** Whether a finding lies in a copy of the nixpkgs sources (see the module comment). */
export function inNixpkgsCopy(finding: Pick<Finding, 'inner' | 'chain'>): boolean {
  const chain = finding.chain ?? (finding.inner ? [finding.inner] : []);
  return chain.some((element) => NIXPKGS_COPY.test(element));
}

/** One line on the findings in nixpkgs copies, when there are any: where they come from and what to change. */
export function nixpkgsCopyHint(findings: readonly Pick<Finding, 'inner' | 'chain'>[]): string | undefined {
  const count = findings.filter(inNixpkgsCopy).length;
  if (count === 0) return undefined;
  return (
    `${count} of the findings lie in a copy of the nixpkgs sources in the image (the installer's channel, \`system.installer.channel.enable\`, on by default, or a flake's nixpkgs input in nix.nixPath or nix.registry): ` +
    "nixpkgs' own test keys and passwords, public but key material. Build the image with `system.installer.channel.enable = false;` (an install from a flake does not need the channel), or allowlist their fingerprints with a reason."
  );
}
