/**
 * Legacy .lzma ("LZMA alone"): not supported yet; reported as unsupported so the leak gate lists the
 * file as unscanned instead of passing it.
 */
import { FormatError } from '../formats/types.js';

export function lzmaDecodeAll(_input: Buffer, _maxOutput: number): Buffer {
  throw new FormatError('unsupported', 'legacy .lzma (LZMA alone) data is not supported; recompress with xz');
}
