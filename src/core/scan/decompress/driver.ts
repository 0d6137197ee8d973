/**
 * Runs a synchronous, bounded-step decoder over a ByteReader: each step decodes one input piece of at
 * most PIECE bytes into at most one bounded output chunk, so no call holds the event loop for long and
 * memory stays flat. Concatenated members (streams, frames) are handled by `runConcatenated`.
 */
import { FormatError } from '../formats/types.js';
import { ByteReader, PIECE } from './input.js';

export interface StepResult {
  /** Input bytes of the piece the decoder used. */
  used: number;
  /** Decoded bytes (a copy the caller may keep). */
  output?: Buffer | undefined;
  /** The member (stream, frame) ended; the rest of the piece is not part of it. */
  done?: boolean;
  /** Bytes the decoder took in an earlier step but did not use: they go back before the rest of the piece. */
  unused?: Buffer | undefined;
  /** The decoder made progress inside (used input it held from an earlier step) though `used` is 0. */
  busy?: boolean;
  /** The decoder needs at least this many input bytes in one piece to go on (a whole LZ4 block, a header). */
  need?: number;
}

/** One member's decoder. `step` is given an empty piece and `eof` at the end of the input. */
export interface StepDecoder {
  step(input: Buffer, eof: boolean): StepResult;
  dispose(): void;
}

export interface MemberCodec {
  /** Name used in messages: 'xz', 'zstd', ... */
  readonly label: string;
  /** A decoder for the member starting at the reader's position. */
  open(): StepDecoder | Promise<StepDecoder>;
  /** At the end of a member (not in single mode): skips what lies between members and says whether another follows. */
  another(reader: ByteReader): Promise<boolean>;
}

const EMPTY = Buffer.alloc(0);

/** Decodes one member, leaving the input after it unread. */
export async function* runMember(reader: ByteReader, decoder: StepDecoder, label: string): AsyncGenerator<Buffer> {
  let piece: Buffer = EMPTY;
  let eof = false;
  for (;;) {
    if (piece.length === 0 && !eof) {
      const next = await reader.take(PIECE);
      if (next) piece = next;
      else eof = true;
    }
    const result = decoder.step(piece, eof);
    piece = piece.subarray(result.used);
    if (result.output && result.output.length > 0) yield result.output;
    if (result.done) {
      reader.unread(piece);
      if (result.unused) reader.unread(result.unused);
      return;
    }
    if (result.used === 0 && !result.busy && !(result.output && result.output.length > 0)) {
      // No progress: the decoder wants more bytes in one piece than this one has.
      if (eof) throw new FormatError('truncated', `${label} data ends before the end of its stream`);
      const want = Math.max(result.need ?? 0, piece.length + 1);
      const more = await reader.read(Math.max(want - piece.length, 1));
      if (more.length === 0) eof = true;
      else piece = piece.length === 0 ? more : Buffer.concat([piece, more]);
    }
    await reader.checkpoint();
  }
}

/**
 * Decodes members back to back until the input ends (or, with `single`, after the first). Bytes after
 * the last member that are not another member make the stream corrupt (all-zero padding excepted):
 * what follows could be anything, and the leak gate fails closed.
 */
export async function* runConcatenated(reader: ByteReader, codec: MemberCodec, single: boolean): AsyncGenerator<Buffer> {
  for (let first = true; ; first = false) {
    if (!first) {
      if (single) return;
      if (!(await codec.another(reader))) {
        await rejectTrailing(reader, codec.label);
        return;
      }
    }
    const decoder = await codec.open();
    try {
      yield* runMember(reader, decoder, codec.label);
    } finally {
      decoder.dispose();
    }
  }
}

/** Reads what is left: zero bytes are padding, anything else is corrupt. */
export async function rejectTrailing(reader: ByteReader, label: string): Promise<void> {
  const start = reader.consumed;
  for (;;) {
    const piece = await reader.take(PIECE);
    if (!piece) return;
    for (let i = 0; i < piece.length; i++) {
      if (piece[i] !== 0) {
        throw new FormatError('corrupt', `${label} data is followed by ${start === reader.consumed - piece.length + i ? '' : 'padding and '}bytes that are not ${label} (at input offset ${reader.consumed - piece.length + i})`);
      }
    }
    await reader.checkpoint();
  }
}
