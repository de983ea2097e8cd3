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
function watchConfigFile(file: string, onChange: () => void, intervalMs = 1000): () => void {
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

/**
 * Calls `onChange` when any of `files()` changes: the config file and the TLS files it names, so a
 * renewed certificate is picked up without a SIGHUP. A burst of changes (a certificate, then its
 * key) makes one call, `settleMs` after the last of them, rather than a reload of a certificate
 * with the old key. `files()` is asked again after each call: a reload may name other files.
 */
export function watchFiles(files: () => string[], onChange: () => void, intervalMs = 1000, settleMs = 300): () => void {
  const watching = new Map<string, () => void>();
  let pending: NodeJS.Timeout | undefined;
  const sync = () => {
    const wanted = new Set(files());
    for (const [file, stop] of watching) {
      if (wanted.has(file)) continue;
      stop();
      watching.delete(file);
    }
    for (const file of wanted) if (!watching.has(file)) watching.set(file, watchConfigFile(file, changed, intervalMs));
  };
  const changed = () => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      onChange();
      sync();
    }, settleMs);
  };
  sync();
  return () => {
    clearTimeout(pending);
    for (const stop of watching.values()) stop();
    watching.clear();
  };
}
