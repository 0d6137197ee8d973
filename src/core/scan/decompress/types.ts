/**
 * One streaming decompressor interface for every compression the Nix world uses (gzip, zlib, xz,
 * zstd, bzip2, lz4, and the kernel's lzop and legacy lzma; lzip): every container format uses it,
 * none keeps a private path.
 */
export type Compression = 'gzip' | 'zlib' | 'xz' | 'lzma' | 'zstd' | 'bzip2' | 'lz4' | 'lz4-legacy' | 'lzo' | 'lzip';

export interface DecompressOptions {
  signal?: AbortSignal;
  /**
   * Stop at the end of the first complete stream (one gzip member, one zlib stream, one xz stream
   * without the padding after it, one zstd frame with any skippable frames before it, one bzip2
   * stream, one lz4 frame, or an lz4 legacy block run, which ends after a block shorter than 8 MiB or
   * before a size word no block can have) instead of going on with concatenated ones, and leave the
   * input after it unread: an initrd is compressed segments and raw cpio back to back, and the kernel
   * goes on reading after each. `consumed` then says exactly where it ended. Without `single`, bytes
   * after the last stream that are not another one (zero padding excepted) are a 'corrupt' error.
   */
  single?: boolean;
}

/** The decompressed bytes, in order. Errors are FormatError ('corrupt', 'truncated', 'unsupported'). */
export interface DecompressStream extends AsyncIterable<Buffer> {
  /** Input bytes used so far; after the iteration ends, the length of the compressed data read. */
  readonly consumed: number;
}
