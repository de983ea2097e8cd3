// Every Lua script sluice runs, one named constant each. They are registered with ioredis'
// defineCommand, so they go as EVALSHA and are re-sent only on NOSCRIPT.

/** Sets a field of a key record only if the record exists: a revoke must not create a husk. KEYS[1] record; ARGV field, value. */
export const SET_FIELD_IF_EXISTS = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
`;
