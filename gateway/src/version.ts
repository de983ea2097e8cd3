// The package's version, read at run time from its package.json: the same file whether sluice runs
// from dist/ in the repository, from an npm install, or from the image (/app/package.json).
import { readFileSync } from 'node:fs';
import path from 'node:path';

export function packageVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    try {
      const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (manifest.name === 'sluice' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // no package.json here: look one level up
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}
