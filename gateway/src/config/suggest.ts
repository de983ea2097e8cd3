// "Did you mean": the known name closest to a misspelt one, by edit distance.

/** Optimal string alignment distance: Levenshtein plus swaps of two neighbours (`hots` → `host` is 1). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** Case, `_` and `-` do not count: `Timeout-MS` is `timeout_ms`. */
const normalise = (name: string) => name.toLowerCase().replace(/[_-]/g, '');

/** The candidate closest to `word`, if it is close enough to be what was meant (about one edit in three characters). */
export function closestName(word: string, candidates: readonly string[]): string | undefined {
  const wanted = normalise(word);
  let best: { name: string; distance: number } | undefined;
  for (const name of candidates) {
    const distance = editDistance(wanted, normalise(name));
    if (distance <= Math.max(1, Math.floor(Math.min(wanted.length, normalise(name).length) / 3)) && (!best || distance < best.distance)) {
      best = { name, distance };
    }
  }
  return best?.name;
}
