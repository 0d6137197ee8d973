/**
 * A git bundle (`git bundle create`): header lines (`# v2 git bundle` or `# v3 git bundle`, v3
 * capabilities `@...`, prerequisites `-<oid>`, refs `<oid> <ref>`), a blank line, then a packfile.
 * The pack is the one member, `(pack)`, a slice of the bundle read in place by the git-pack handler,
 * so history a bundle carries (a token committed then removed) is read object by object.
 */
import { sliceSource, sourceChunks } from './byte-source.js';
import { SourceCursor } from './source-cursor.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const SIGNATURES = ['# v2 git bundle\n', '# v3 git bundle\n'].map((text) => Buffer.from(text, 'latin1'));
/** Longer than any ref name git accepts (4096) plus an object id. */
const MAX_LINE = 8192;

export const gitBundle: FormatHandler = {
  name: 'git-bundle',
  access: 'random',
  detect(head) {
    return head.length >= 16 && head[0] === 0x23 && SIGNATURES.some((signature) => head.compare(signature, 0, 16, 0, 16) === 0);
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const source = input as ByteSource;
    if (typeof source.read !== 'function') throw new FormatError('unsupported', 'git bundle: needs random access');
    const cursor = new SourceCursor(source, 'git bundle', context.signal);
    const first = await cursor.line(MAX_LINE);
    if (first !== '# v2 git bundle' && first !== '# v3 git bundle') throw new FormatError('corrupt', 'git bundle: no bundle signature');
    for (let count = 0; ; count++) {
      if (count % 4096 === 0) context.signal?.throwIfAborted();
      const line = await cursor.line(MAX_LINE);
      if (line === undefined) throw new FormatError('truncated', 'git bundle: the header ends before its blank line; no pack follows');
      if (line === '') break;
      if (!/^(?:@\S|-[0-9a-f]{40,64}(?: |$)|[0-9a-f]{40,64} \S)/.test(line)) throw new FormatError('corrupt', `git bundle: unexpected header line at offset ${cursor.position - line.length - 1}`);
    }
    const start = cursor.position;
    // A bundle of refs that need nothing new (all prerequisites) may still end here: no pack, nothing to read.
    if (start === source.size) return;
    const pack = sliceSource(source, start, source.size - start);
    const signature = await pack.read(0, 4);
    if (signature.toString('latin1') !== 'PACK') throw new FormatError('corrupt', `git bundle: no packfile after the header (offset ${start})`);
    yield { name: '(pack)', size: pack.size, source: pack, stream: () => sourceChunks(pack, context.signal) };
  },
};
