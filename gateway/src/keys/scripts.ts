// The key store's Lua script. It runs with runScript (redis/client.ts): as EVALSHA, with the source
// sent only on NOSCRIPT.

/**
 * Replaces a key record (a hash) and bumps its `rev` field, so read-modify-write stays atomic without
 * spanning slots. KEYS[1]: the record. ARGV[1]: the rev the caller read, or "" to write whatever is
 * there (create, restore). ARGV[2..]: field, value pairs.
 * Returns 1 written, 0 no such record (with a rev), -1 someone else wrote first (read again).
 */
export const REPLACE_RECORD = `
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if ARGV[1] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  if tonumber(ARGV[1]) ~= rev then return -1 end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'rev', rev + 1, unpack(ARGV, 2))
return 1
`;
