import { BUCKETS_PER_WINDOW } from './sliding-window';

// The rate limiter's Lua scripts, one named constant each. They run with runScript (redis/client.ts):
// as EVALSHA, with the source sent only on NOSCRIPT.

/**
 * The start and end of the calendar period (UTC) holding `now`, in days since 1970-01-01, for a
 * quota step. Month: Howard Hinnant's civil-from-days. Week: ISO, from Monday (1970-01-01 was a
 * Thursday). Mirrored by ratelimit/calendar.ts.
 */
const CALENDAR_LUA = `
local function calendar_period(now, period)
  local day = math.floor(now / 86400000)
  if period == 'day' then return day, day + 1 end
  if period == 'week' then
    local start = day - (day + 3) % 7
    return start, start + 7
  end
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local year = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local mday = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  if month <= 2 then year = year + 1 end
  local lengths = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
  local length = lengths[month]
  if month == 2 and year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0) then length = 29 end
  local start = day - (mday - 1)
  return start, start + length
end
`;

/**
 * Every limit of a request at once, so one round trip decides it atomically: the sliding-window check
 * of ratelimit/sliding-window.ts for each window, then optional steps (the calendar quota). All KEYS
 * share one hash tag (one Cluster slot): the API key's id, or its account's.
 * KEYS[i]: hash of bucket index → units for window i; then one key per step.
 * ARGV[1]: cost; ARGV[2]: now in Unix ms, or "" to use Redis TIME (replicas with skewed clocks agree;
 * an explicit time exists for tests that replay exact timings); then per window: limit (negative: a
 * shadow window, which counts but never refuses), window ms; then the steps, each a kind word and its
 * arguments:
 *   "quota", limit (negative: shadow), day|week|month. Its key is a base name: the counter is
 *   KEYS[j] .. ":" .. the period's first day (same hash tag, so the same slot), expiring an hour
 *   after its end (by the script's clock).
 *   "slot", limit (negative: shadow), lease ms, token: a concurrency slot. Its key is a sorted set of
 *   leases (member: the request's token, score: the lease's expiry by the script's clock); expired
 *   leases (a dead replica's) are dropped, the rest counted. An admitted request adds its lease; the
 *   gateway removes it when the answer ends (ZREM) and renews it while the answer lasts (SLOT_RENEW).
 *   Its reset is now + 1 s (when to try again).
 * Every step has at least three arguments for its one key, so only a request without steps has
 * exactly 2 + 2 × #KEYS arguments. A request without steps sends the arguments and keys it always did; the script does
 * for it what it did before, plus two comparisons and one per window (the shadow sign). Each step
 * kind is checked in the steps loop and written in the second, one key of its own.
 * Returns { allowed (0|1), now ms, then per window and then per step: used, blocking (0|1), reset ms }.
 * Rejected requests write nothing but the removal of expired buckets; a cost of 0 is a read-only peek.
 * Shadow windows and steps only report: they never make allowed 0, and admitted requests are counted
 * in them even past their limit.
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

local window_count = #KEYS
if #ARGV ~= 2 + 2 * window_count then
  -- steps follow the windows: the windows end where the first kind word is
  window_count = 0
  while tonumber(ARGV[3 + 2 * window_count]) do window_count = window_count + 1 end
end

local allowed = 1
local windows = {}
for i = 1, window_count do
  local limit = tonumber(ARGV[1 + i * 2])
  local shadow = limit < 0
  if shadow then limit = -limit end
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
  if blocking and not shadow then allowed = 0 end
  windows[i] = { used = used, blocking = blocking, reset = reset, current = current, window = window, width = width }
end

-- Steps exist only when there are more keys than windows: a plain request skips all of this.
local steps
if window_count < #KEYS then
  ${CALENDAR_LUA}
  steps = {}
  local a = 3 + 2 * window_count
  while a <= #ARGV do
    local kind = ARGV[a]
    local key = KEYS[window_count + #steps + 1]
    if kind == 'quota' then
      local limit = tonumber(ARGV[a + 1])
      local shadow = limit < 0
      if shadow then limit = -limit end
      local first_day, next_day = calendar_period(now, ARGV[a + 2])
      local counter = key .. ':' .. string.format('%.0f', first_day)
      local used = tonumber(redis.call('GET', counter) or '0')
      local blocking = used + cost > limit
      if blocking and not shadow then allowed = 0 end
      steps[#steps + 1] = { kind = kind, key = counter, used = used, blocking = blocking, reset = next_day * 86400000 }
      a = a + 3
    elseif kind == 'slot' then
      local limit = tonumber(ARGV[a + 1])
      local shadow = limit < 0
      if shadow then limit = -limit end
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      local used = redis.call('ZCARD', key)
      local blocking = used + 1 > limit
      if blocking and not shadow then allowed = 0 end
      steps[#steps + 1] = { kind = kind, key = key, used = used, blocking = blocking, reset = now + 1000, lease = tonumber(ARGV[a + 2]), token = ARGV[a + 3] }
      a = a + 4
    else
      return redis.error_reply('unknown limit step ' .. tostring(kind))
    end
  end
end

local result = { allowed, now }
-- Each window and step reports used, blocking (0|1) and reset, in order.
local function report(used, blocking, reset)
  result[#result + 1] = used
  result[#result + 1] = blocking and 1 or 0
  result[#result + 1] = reset
end
local counting = allowed == 1 and cost > 0
for i = 1, window_count do
  local w = windows[i]
  local used = w.used
  if counting then
    redis.call('HINCRBY', KEYS[i], string.format('%.0f', w.current), cost)
    redis.call('PEXPIRE', KEYS[i], w.window + w.width)
    used = used + cost
  end
  report(used, w.blocking, w.reset)
end
if steps then
  for _, step in ipairs(steps) do
    local used = step.used
    if counting and step.kind == 'quota' then
      redis.call('INCRBY', step.key, cost)
      -- relative to the script's clock (a test's "now" may be past), plus a margin: a new period is a
      -- new key anyway, and a failed-over node whose clock runs a little behind must not drop it early
      redis.call('PEXPIRE', step.key, step.reset - now + 3600000)
      used = used + cost
    elseif counting and step.kind == 'slot' then
      redis.call('ZADD', step.key, now + step.lease, step.token)
      redis.call('PEXPIRE', step.key, step.lease * 2)
      used = used + 1
    end
    report(used, step.blocking, step.reset)
  end
end
return result
`;

/**
 * Renews one concurrency lease, if it is still held (XX: a slot given back is not taken again), to
 * the script's clock + ARGV[1] ms. KEYS[1]: the slots sorted set; ARGV[2]: the request's token.
 * One key each, so a replica's renewals of many leases go together, one write per node.
 */
export const SLOT_RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
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
