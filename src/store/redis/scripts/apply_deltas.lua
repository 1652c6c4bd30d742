-- Steps 2 and 3: apply deltas to aggregate hashes (creator buckets and
-- platform shards: all of a batch in one call on a single server, one call
-- per hash slot on a cluster), once per event (markers): the new events'
-- deltas are summed per aggregate first (in doubles, like the embedded
-- store), then added with one increment per field, and the snapshot of
-- every aggregate touched is rebuilt.
--
-- KEYS: per group: its snapshot hash, its counter hash, then one marker
--       per item that has one.
-- ARGV: now_ms, window_ms, fence_from_ms, fence_ms, then per group: its
--       item count, then per item: has-marker (1/0), aggregate id, delta.
-- Returns one flag per item, in order: 1 applied now, 0 applied before.
--
-- The fence: an attempt whose batch started (Redis time, fence_from_ms)
-- more than fence_ms ago is refused, so that a step delayed in flight
-- cannot land after a resend has completed the batch and the settle step
-- has shortened the markers that would have stopped it (write.rs).
--
-- Counters are fields `<id>:t/f/m/e/<n>`; the snapshot field `<id>` holds
-- them as one comma-separated string (t,f,m,e,sum 0..22), so a read
-- parses two strings per creator instead of ~46. The last sum index in the
-- loop below is filled in when the script is loaded.
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local fence_from = tonumber(ARGV[3])
if fence_from > 0 then
  local time = redis.call('TIME')
  local redis_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  if redis_ms - fence_from > tonumber(ARGV[4]) then
    return redis.error_reply('FENCED attempt started ' .. (redis_ms - fence_from) .. ' ms ago')
  end
end

local function add_delta(a, text)
  local j = 0
  for token in string.gmatch(text, '[^|]+') do
    if j == 0 then
      local t = tonumber(token)
      if t > a.t then a.t = t end
    elseif j == 1 then
      a.f = a.f + tonumber(token)
    elseif j == 2 then
      a.m = a.m + tonumber(token)
    else
      local field, value = string.match(token, '^(%d+)=(.+)$')
      a.s[field] = (a.s[field] or 0) + tonumber(value)
    end
    j = j + 1
  end
  a.e = a.e + 1
end

local function write_back(snapshot, counters, id, a)
  local p = id .. ':'
  local old = redis.call('HGET', counters, p .. 't')
  if not old or a.t > tonumber(old) then
    redis.call('HSET', counters, p .. 't', string.format('%.0f', a.t))
  end
  if a.f ~= 0 then redis.call('HINCRBY', counters, p .. 'f', string.format('%.0f', a.f)) end
  if a.m ~= 0 then redis.call('HINCRBY', counters, p .. 'm', string.format('%.0f', a.m)) end
  redis.call('HINCRBY', counters, p .. 'e', string.format('%.0f', a.e))
  for field, value in pairs(a.s) do
    redis.call('HINCRBYFLOAT', counters, p .. field, string.format('%.17g', value))
  end
  local names = {p .. 't', p .. 'f', p .. 'm', p .. 'e'}
  for n = 0, LAST_SUM do names[#names + 1] = p .. n end
  local values = redis.call('HMGET', counters, unpack(names))
  for n = 1, #values do
    if not values[n] then values[n] = '' end
  end
  redis.call('HSET', snapshot, id, table.concat(values, ','))
end

local out = {}
local k = 1
local i = 5
while i <= #ARGV do
  local snapshot, counters = KEYS[k], KEYS[k + 1]
  k = k + 2
  local acc, order = {}, {}
  local last = i + 3 * tonumber(ARGV[i])
  for item = i + 1, last, 3 do
    local fresh = 1
    if ARGV[item] == '1' then
      local seen = redis.call('GET', KEYS[k])
      if seen and now - tonumber(seen) < window then
        fresh = 0
      else
        redis.call('SET', KEYS[k], ARGV[1], 'PX', ARGV[2])
      end
      k = k + 1
    end
    if fresh == 1 then
      local id = ARGV[item + 1]
      local a = acc[id]
      if not a then
        a = {t = 0, f = 0, m = 0, e = 0, s = {}}
        acc[id] = a
        order[#order + 1] = id
      end
      add_delta(a, ARGV[item + 2])
    end
    out[#out + 1] = fresh
  end
  for _, id in ipairs(order) do write_back(snapshot, counters, id, acc[id]) end
  i = last + 1
end
return out
