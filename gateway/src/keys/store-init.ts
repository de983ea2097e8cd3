import type { Logger } from 'pino';
import type { Config } from '../config/schema';
import { StoreUnavailableError } from '../redis/errors';
import { KeyExistsError, type KeyStore } from './types';

// Who may mark a key store as holding its data (the way `kong migrations bootstrap` does it): only
// `sluice store init` (a store declared new, on purpose) and `sluice keys import` (a restored backup).
// Serving, reloading and seed keys never do: a replica that finds an emptied Redis must not decide on
// its own that every key it cannot find is invalid (a flood of false 401s).

/** The two ways out of an unmarked store, named in every refusal. */
export const WAYS_OUT =
  'Restore a backup with `sluice keys import FILE --config F`, or, if this store is new on purpose, declare it so with `sluice store init --config F`.';

/** A key change refused because the store holds no marker: writing now would hide that it lost its data. */
export class StoreNotInitialisedError extends StoreUnavailableError {
  constructor() {
    super(`The key store holds no marker: it lost its data or was never initialised, so keys cannot be changed. ${WAYS_OUT}`);
    this.name = 'StoreNotInitialisedError';
  }
}

/** Throws StoreNotInitialisedError unless the store holds its marker (before any key change). */
export async function assertInitialised(store: KeyStore): Promise<void> {
  if (!(await store.hasMarker())) throw new StoreNotInitialisedError();
}

/**
 * Creates the keys listed under `keys:` in the config; a key that exists already is skipped (every
 * replica tries). Only on an initialised store: on an unmarked one they would pass for its data.
 * Returns how many were created.
 */
export async function seedKeys(config: Config, store: KeyStore, log?: Logger): Promise<number> {
  let created = 0;
  for (const seed of config.keys) {
    try {
      await store.create(seed);
      created++;
      log?.info({ name: seed.name, tier: seed.tier }, 'seeded API key from config');
    } catch (err) {
      if (!(err instanceof KeyExistsError)) throw err;
    }
  }
  return created;
}

export type InitOutcome = { initialised: false } | { initialised: true; seeded: number };

/**
 * `sluice store init`: on an unmarked store, creates the config's seed keys, then writes the marker
 * (in that order, so no replica becomes ready before its seed keys exist). On a marked store it
 * changes nothing: `initialised: false`.
 */
export async function initialiseStore(store: KeyStore, config: Config): Promise<InitOutcome> {
  if (await store.hasMarker()) return { initialised: false };
  const seeded = await seedKeys(config, store);
  // Another `store init` may have won the race: then it, not this one, initialised the store.
  if (!(await store.writeMarker())) return { initialised: false };
  return { initialised: true, seeded };
}
