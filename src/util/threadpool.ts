/**
 * Imported first by the entry point: libuv's thread pool (file reads, writes, flushes, hashing
 * work queued by Node) reads its size once, at its first use. A build keeps three reads, two
 * O_DIRECT writes and a flush or two of the previous files in flight, and verify four reads per
 * hashing thread: with the default four threads, a flush that waits for a slow stick would hold
 * up the next read. An operator's own setting wins.
 */
process.env.UV_THREADPOOL_SIZE ??= '12';

export {};
