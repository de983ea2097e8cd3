import { createHash } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';

function digest(file: string): string | undefined {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex');
  } catch {
    return undefined;
  }
}

/**
 * Calls `onChange` when the file's content changes. Polls (stat once a second) rather than
 * fs.watch, because editors and Kubernetes ConfigMaps replace files (rename, symlink swap),
 * which fs.watch loses track of. Returns the function that stops watching.
 */
export function watchConfigFile(file: string, onChange: () => void, intervalMs = 1000): () => void {
  let last = digest(file);
  const listener = () => {
    const now = digest(file);
    if (now === undefined || now === last) return;
    last = now;
    onChange();
  };
  watchFile(file, { interval: intervalMs, persistent: false }, listener);
  return () => unwatchFile(file, listener);
}
