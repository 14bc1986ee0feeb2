/** The one sha256 helper: hex digest of a string (as UTF-8) or bytes. */
import { createHash } from 'node:crypto';

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
