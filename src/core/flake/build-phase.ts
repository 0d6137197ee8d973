/**
 * The glue between the build and carried flake inputs: resolving the build's options into a plan,
 * and the manifest's `flake` record. The packing phase itself is `carryFlakeInputs` in build-seed.ts.
 */
import type { ManifestFlakeInput, Manifest } from '../manifest.js';
import type { SourcePlan } from '../source-archive.js';
import { planFlakeInputs, INPUTS_DIR, type CarriedInput, type FlakeInputOptions, type FlakeInputsPlan } from './carry.js';

/** The build's flake-input options: what to carry, clones, the store to look in, and the host to install. */
export interface FlakeBuildOptions extends FlakeInputOptions {
  /** The `nixosConfigurations` attribute seed-install.sh names in its `nixos-install --flake` line. */
  host?: string;
  /** Folder that relative clone paths are resolved against (the profile's folder). */
  base?: string;
}

export const NO_FLAKE_OPTIONS: FlakeBuildOptions = { carry: [], clones: {}, nixStore: '/' };

/** Plans the flake inputs of the archived tree (nothing when it has no archived flake.lock). */
export function planFlakeInputsFor(source: SourcePlan, options: FlakeBuildOptions = NO_FLAKE_OPTIONS): Promise<FlakeInputsPlan> {
  const archived = source.entries.some((entry) => entry.path === 'flake.lock' && entry.type === 'file');
  return planFlakeInputs(source.root, archived, options, options.base ?? source.root);
}

/** One carried input packed in the build's temp folder, ready to be copied to the seed. */
export interface CarriedFile {
  carried: CarriedInput;
  relPath: string;
  localPath: string;
  size: number;
  sha256: string;
}

/** The manifest's `flake` key: every locked input, and for carried ones their file and store path. */
export function flakeManifest(plan: FlakeInputsPlan, files: readonly CarriedFile[], options: FlakeBuildOptions = NO_FLAKE_OPTIONS): Pick<Manifest, 'flake'> {
  if (plan.lockFile === null) return {};
  const byNode = new Map(files.map((file) => [file.carried.input.node, file]));
  const inputs: ManifestFlakeInput[] = plan.inputs.map((input) => {
    const file = byNode.get(input.node);
    return {
      name: input.paths[0] ?? input.node,
      node: input.node,
      paths: input.paths,
      type: input.type,
      url: input.url,
      class: input.class,
      reason: input.reason,
      ...(input.rev ? { rev: input.rev } : {}),
      ...(input.narHash ? { narHash: input.narHash } : {}),
      ...(file
        ? { storePath: file.carried.storePath, file: `${INPUTS_DIR}/${file.carried.fileName}`, sha256: file.sha256, size: file.size, from: file.carried.source.kind }
        : {}),
    };
  });
  return { flake: { lock: plan.lockFile, lockVersion: plan.lockVersion ?? 7, host: options.host ?? null, inputs } };
}
