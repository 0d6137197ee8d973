/**
 * What the read-ahead worker and the scanning thread agree on: how a small file is read, and the
 * layout of the shared memory between them. Imports nothing of ours.
 */
import { constants } from 'node:fs';

/** Bytes read from a file before its size is asked for: a file that fills them is read another way. */
export const SMALL_READ = 64 * 1024;

/**
 * O_NOFOLLOW and O_NONBLOCK: a file swapped for a symlink or a FIFO after the walk is neither
 * followed nor waited on.
 */
export const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** The ring the worker reads files into: room for many small files, never less than one read. */
export const RING_BYTES = 4 * 1024 * 1024;

/** A file's state word (one Int32 per file of the walk); changed only by compare-and-swap. */
export const FREE = 0;
/** Claimed by the worker, which is reading it. */
export const WORKER = 1;
/** Claimed by the scanning thread, which reads it itself. */
export const MAIN = 2;
/** In the ring: offset and length in the file's two meta words. */
export const READY = 3;
/** The worker opened it but leaves it to the scanning thread (empty, larger than a read, or an error). */
export const DEFERRED = 4;
/** Read and found quiet by the worker (quiet-text.ts): nothing held in the ring, its size in meta. */
export const QUIET = 5;

/** Int32 words per file in `meta`: ring offset, length held in the ring, bytes read. */
export const META_WORDS = 3;

/** Control words. */
export const CONSUMED = 0; // files at the front the scanning thread is done with (their ring bytes are free)
export const STOP = 1; // set by the scanning thread: the worker stops before its next file
export const WORKER_WAITING = 2; // the worker waits for ring space: notify on CONSUMED
export const MAIN_WAITING = 3; // the scanning thread waits for a file: notify on its state word
export const CONTROL_WORDS = 4;

/** Given to the worker when it starts. */
export interface ReadAheadInit {
  ring: SharedArrayBuffer;
  control: SharedArrayBuffer;
}

/** Posted to the worker once the walk is done. */
export interface ReadAheadJob {
  /** Full paths joined by NUL (one string crosses threads much faster than 20,000). */
  paths: string;
  /** One Int32 state word per file. */
  state: SharedArrayBuffer;
  /** META_WORDS Int32 per file: ring offset, length held in the ring, bytes read. */
  meta: SharedArrayBuffer;
  /** One byte per file: 1 when the worker may decide it quiet (no `.sops.yaml` governs it). */
  quietable: SharedArrayBuffer;
  /** The operator's exact values (quiet means none of them occurs). */
  operatorSecrets: string[];
}
