/**
 * Unified kernel images (UKI, `boot.uki`, systemd-stub and `ukify`, or `objcopy --add-section` onto
 * linuxx64.efi.stub): an EFI PE executable that carries the kernel (`.linux`), the initrd
 * (`.initrd`, usually compressed) and the microcode (`.ucode`) as sections. Read flat, a key inside
 * the compressed initrd would pass unseen; so a PE file with a `.linux` or `.initrd` section yields
 * its UKI sections as members (`nixos.efi › .initrd › /etc/ssh/ssh_host_ed25519_key`), each in place.
 * Other PE files (a bootloader, a Windows program) are read as their own bytes.
 */
import { readExactly, sliceSource, sourceChunks } from './byte-source.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

/** The sections systemd-stub reads (see the UKI specification). */
const UKI_SECTIONS = new Set(['.linux', '.initrd', '.ucode', '.cmdline', '.osrel', '.uname', '.dtb', '.splash', '.pcrsig', '.pcrpkey', '.sbat', '.profile', '.efifw', '.hwids', '.dtbauto']);
const SECTION = 40;
const MAX_SECTIONS = 96;

interface Section {
  name: string;
  offset: number;
  size: number;
}

/** The section table of a PE image whose headers are in `head`, or undefined when it is none. */
function sections(head: Buffer): Section[] | undefined {
  if (head.length < 0x40 || head[0] !== 0x4d || head[1] !== 0x5a) return undefined;
  const pe = head.readUInt32LE(0x3c);
  if (pe + 24 > head.length || head.readUInt32BE(pe) !== 0x50450000) return undefined;
  const count = head.readUInt16LE(pe + 6);
  const table = pe + 24 + head.readUInt16LE(pe + 20);
  if (count > MAX_SECTIONS || table + count * SECTION > head.length) return undefined;
  const result: Section[] = [];
  for (let index = 0; index < count; index++) {
    const at = table + index * SECTION;
    const name = head.toString('latin1', at, at + 8).replace(/\0+$/, '');
    const virtualSize = head.readUInt32LE(at + 8);
    const rawSize = head.readUInt32LE(at + 16);
    // The raw data is padded to the file alignment; the virtual size is what the section holds (0: the raw size).
    result.push({ name, offset: head.readUInt32LE(at + 20), size: virtualSize > 0 ? Math.min(virtualSize, rawSize) : rawSize });
  }
  return result;
}

export const uki: FormatHandler = {
  name: 'uki',
  access: 'random',
  detect: (head) => sections(head)?.some((section) => section.name === '.linux' || section.name === '.initrd') ?? false,
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const source = input as ByteSource;
    const table = sections(await readExactly(source, 0, Math.min(source.size, 64 * 1024), 'the PE headers'));
    if (!table) throw new FormatError('corrupt', 'uki: no PE section table');
    for (const section of table) {
      if (!UKI_SECTIONS.has(section.name) || section.size === 0) continue;
      context.signal?.throwIfAborted();
      if (section.offset + section.size > source.size) {
        context.unreadable(section.name, 'truncated', `uki: the ${section.name} section runs past the end of the file`);
        continue;
      }
      const bytes = sliceSource(source, section.offset, section.size);
      yield { name: section.name, size: section.size, source: bytes, stream: () => sourceChunks(bytes, context.signal) };
    }
  },
};
