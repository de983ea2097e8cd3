import { BUCKETS_PER_WINDOW } from './sliding-window';

// The rate limiter's Lua scripts, one named constant each. They are registered with ioredis'
// defineCommand, so they go as EVALSHA and are re-sent only on NOSCRIPT.


/**
 * Commands whose key count varies per call (their first argument is the count, not a key). ioredis'
 * Cluster auto-pipelining picks a node from the first argument, so these must bypass it there
 * (redis/ioredis#2109); each is one round trip of its own anyway.
 */
export const VARIABLE_KEY_COMMANDS = ['sluiceSlidingWindow'];

/**
 * The sliding-window check of ratelimit/sliding-window.ts, for every window of a request at once, so one
 * round trip decides it atomically. All KEYS share the API key's hash tag (one Cluster slot).
 * KEYS[i]: hash of bucket index → units for window i.
 * ARGV[1]: cost; ARGV[2]: now in Unix ms, or "" to use Redis TIME (replicas with skewed clocks agree;
 * an explicit time exists for tests that replay exact timings); then per window: limit, window ms.
 * Returns { allowed (0|1), now ms, then per window: used, blocking (0|1), reset ms }.
 * Rejected requests write nothing but the removal of expired buckets; a cost of 0 is a read-only peek.
 */
export const SLIDING_WINDOW = `
local buckets_per_window = ${BUCKETS_PER_WINDOW}
local cost = tonumber(ARGV[1])
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[2])
end

local allowed = 1
local windows = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + i * 2])
  local window = tonumber(ARGV[2 + i * 2])
  local width = math.ceil(window / buckets_per_window)
  local current = math.floor(now / width)
  local oldest = math.floor((now - window) / width)
  local fields = redis.call('HGETALL', KEYS[i])
  local used = 0
  local live = {}
  local stale = {}
  for j = 1, #fields, 2 do
    local index = tonumber(fields[j])
    if index < oldest then
      stale[#stale + 1] = fields[j]
    else
      local units = tonumber(fields[j + 1])
      used = used + units
      live[#live + 1] = { index, units }
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
  table.sort(live, function(a, b) return a[1] < b[1] end)

  local blocking = used + cost > limit
  local reset
  if not blocking then
    local first = current
    if #live > 0 then first = live[1][1] end
    reset = (first + 1) * width + window
  elseif cost > limit then
    reset = now + window
  else
    reset = now
    local freed = 0
    for _, bucket in ipairs(live) do
      freed = freed + bucket[2]
      if used - freed + cost <= limit then
        reset = (bucket[1] + 1) * width + window
        break
      end
    end
  end
  if blocking then allowed = 0 end
  windows[i] = { used = used, blocking = blocking, reset = reset, current = current, window = window, width = width }
end

local result = { allowed, now }
for i = 1, #KEYS do
  local w = windows[i]
  local used = w.used
  if allowed == 1 and cost > 0 then
    redis.call('HINCRBY', KEYS[i], string.format('%.0f', w.current), cost)
    redis.call('PEXPIRE', KEYS[i], w.window + w.width)
    used = used + cost
  end
  local blocking = 0
  if w.blocking then blocking = 1 end
  result[#result + 1] = used
  result[#result + 1] = blocking
  result[#result + 1] = w.reset
end
return result
`;

/**
 * A replica's heartbeat: records it as alive (by Redis TIME), forgets replicas silent for longer than
 * ARGV[2] ms, and returns how many are alive, so each knows its share of a limit if Redis goes away.
 * KEYS[1]: sorted set replica id → last seen ms. ARGV[1]: this replica's id; ARGV[2]: liveness ms.
 */
export const REPLICA_HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
`;
