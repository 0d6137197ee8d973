/**
 * Unix ar archives: Debian packages (`.deb`: `debian-binary`, `control.tar.*`, `data.tar.*`) and
 * static libraries (`.a`). Members lie uncompressed in the archive, so each is offered in place; a
 * `data.tar.xz` is then opened by the walker like any compressed tar. GNU names (`name/`, `/N` into
 * the `//` table) and BSD names (`#1/N`, the name before the data) are read; symbol tables are not
 * members. A thin archive (`!<thin>`) holds no member bytes and is not one.
 *
 * A static library (its first member the symbol index, as `ar rcs`, `ranlib` and llvm-ar write it)
 * is not opened: its members are object files stored as they lie, which the scan of the library's
 * own bytes reads whole; opening it would read them again, file by file, at three times the cost (a
 * NixOS store holds hundreds of `.a` files).
 */
import { readExactly, sliceSource, sourceChunks } from './byte-source.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const MAGIC = '!<arch>\n';
const HEADER = 60;
/** A GNU long-name table larger than this is no real archive's. */
const MAX_NAME_TABLE = 16 * 1024 * 1024;

export const ar: FormatHandler = {
  name: 'ar',
  access: 'random',
  detect: (head) =>
    head.length >= MAGIC.length + HEADER &&
    head.toString('latin1', 0, MAGIC.length) === MAGIC &&
    head.toString('latin1', MAGIC.length + 58, MAGIC.length + 60) === '`\n' &&
    !isSymbolIndex(firstName(head)),
  members: (input, context) => arMembers(input as ByteSource, context),
};

/** The first member's name field, or (BSD `#1/N`) the name stored before its data. */
function firstName(head: Buffer): string {
  const field = head.toString('latin1', MAGIC.length, MAGIC.length + 16).trimEnd();
  const bsd = /^#1\/(\d+)$/.exec(field);
  return bsd ? head.toString('latin1', MAGIC.length + HEADER, MAGIC.length + HEADER + Number(bsd[1])).replace(/\0+$/, '') : field;
}

function isSymbolIndex(name: string): boolean {
  return name === '/' || name === '/SYM64/' || name === '__.SYMDEF' || name === '__.SYMDEF SORTED' || name === '__.SYMDEF_64' || name === '__.SYMDEF_64 SORTED';
}

async function* arMembers(source: ByteSource, context: FormatContext): AsyncGenerator<Member> {
  let longNames: Buffer | undefined;
  let offset = MAGIC.length;
  while (offset < source.size) {
    context.signal?.throwIfAborted();
    // A lone newline pads some archives at the end.
    if (source.size - offset < HEADER) {
      const rest = await source.read(offset, source.size - offset);
      if (rest.every((byte) => byte === 0x0a || byte === 0)) return;
      throw new FormatError('truncated', `ar: the archive ends inside a member header at byte ${offset}`);
    }
    const header = await readExactly(source, offset, HEADER, 'an ar member header');
    if (header.toString('latin1', 58, 60) !== '`\n') throw new FormatError('corrupt', `ar: no member header at byte ${offset}`);
    const field = header.toString('latin1', 0, 16).trimEnd();
    const sizeText = header.toString('latin1', 48, 58).trim();
    if (!/^\d+$/.test(sizeText)) throw new FormatError('corrupt', `ar: a bad member size "${sizeText}" at byte ${offset}`);
    let size = Number(sizeText);
    let dataStart = offset + HEADER;
    const next = dataStart + size + (size % 2);
    let name: string | undefined;
    if (field === '/' || field === '/SYM64/') {
      name = undefined; // the GNU symbol index: names of functions, no file
    } else if (field === '//') {
      if (size > MAX_NAME_TABLE) throw new FormatError('corrupt', `ar: a long-name table of ${size} bytes`);
      longNames = await readExactly(source, dataStart, size, 'the ar long-name table');
      name = undefined;
    } else if (/^\/\d+$/.test(field)) {
      const at = Number(field.slice(1));
      if (!longNames || at >= longNames.length) throw new FormatError('corrupt', `ar: member name ${field} points outside the long-name table`);
      const end = longNames.indexOf('/\n', at);
      name = longNames.toString('utf8', at, end < 0 ? longNames.length : end);
    } else if (/^#1\/\d+$/.test(field)) {
      const length = Number(field.slice(3));
      if (length > size) throw new FormatError('corrupt', `ar: a BSD name longer than its member at byte ${offset}`);
      name = (await readExactly(source, dataStart, length, 'an ar member name')).toString('utf8').replace(/\0+$/, '');
      dataStart += length;
      size -= length;
    } else {
      name = field.endsWith('/') ? field.slice(0, -1) : field;
    }
    if (name !== undefined && offset === MAGIC.length && isSymbolIndex(name)) name = undefined; // the BSD one
    if (name !== undefined) {
      if (dataStart + size > source.size) {
        context.unreadable(name, 'truncated', `ar: the member's ${size} bytes run past the end of the archive`);
        return;
      }
      const bytes = sliceSource(source, dataStart, size);
      yield { name: name.replace(/^\/+/, '') || '(unnamed)', size, source: bytes, stream: () => sourceChunks(bytes, context.signal) };
    }
    offset = next;
  }
}
