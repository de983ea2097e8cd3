// The shapes of what operators write in the config and send to the key API, in one place: both
// validate against these.

/** A scope like `users:read`, or `*` for all. */
export const SCOPE_PATTERN = /^(\*|[A-Za-z0-9_.:-]+)$/;

/** A plaintext API key we accept for import or seeding (ours are `sk_live_` + 32 base64url characters). */
export const IMPORTED_KEY_PATTERN = /^[A-Za-z0-9_-]{16,256}$/;
export const IMPORTED_KEY_REQUIREMENT = '16 to 256 characters of A-Z, a-z, 0-9, _ and -';
