-- Steps 2 and 3: apply deltas to one aggregate hash, once per event
-- (markers): the new events' deltas are summed per aggregate first (in
-- doubles, like the embedded store), then added with one increment per
-- field, and the snapshot of every aggregate touched is rebuilt.
--
-- KEYS: the snapshot hash, the counter hash, then one marker per event that has one.
-- ARGV: now_ms, window_ms, then per event: has-marker (1/0), aggregate id, delta.
-- Returns one flag per event: 1 applied now, 0 applied before (marker found).
--
-- Counters are fields `<id>:t/f/m/e/<n>`; the snapshot field `<id>` holds
-- them as one comma-separated string (t,f,m,e,sum 0..22), so a read
-- parses two strings per creator instead of ~46. The last sum index in the
-- loop below is filled in when the script is loaded.
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local out = {}
local acc = {}
local order = {}
local k = 3
for i = 3, #ARGV, 3 do
  local fresh = 1
  if ARGV[i] == '1' then
    local seen = redis.call('GET', KEYS[k])
    if seen and now - tonumber(seen) < window then
      fresh = 0
    else
      redis.call('SET', KEYS[k], ARGV[1], 'PX', ARGV[2])
    end
    k = k + 1
  end
  if fresh == 1 then
    local id = ARGV[i + 1]
    local a = acc[id]
    if not a then
      a = {t = 0, f = 0, m = 0, e = 0, s = {}}
      acc[id] = a
      order[#order + 1] = id
    end
    local j = 0
    for token in string.gmatch(ARGV[i + 2], '[^|]+') do
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
  out[#out + 1] = fresh
end
for _, id in ipairs(order) do
  local a = acc[id]
  local p = id .. ':'
  local old = redis.call('HGET', KEYS[2], p .. 't')
  if not old or a.t > tonumber(old) then
    redis.call('HSET', KEYS[2], p .. 't', string.format('%.0f', a.t))
  end
  if a.f ~= 0 then redis.call('HINCRBY', KEYS[2], p .. 'f', string.format('%.0f', a.f)) end
  if a.m ~= 0 then redis.call('HINCRBY', KEYS[2], p .. 'm', string.format('%.0f', a.m)) end
  redis.call('HINCRBY', KEYS[2], p .. 'e', string.format('%.0f', a.e))
  for field, value in pairs(a.s) do
    redis.call('HINCRBYFLOAT', KEYS[2], p .. field, string.format('%.17g', value))
  end
  local names = {p .. 't', p .. 'f', p .. 'm', p .. 'e'}
  for n = 0, LAST_SUM do names[#names + 1] = p .. n end
  local values = redis.call('HMGET', KEYS[2], unpack(names))
  for n = 1, #values do
    if not values[n] then values[n] = '' end
  end
  redis.call('HSET', KEYS[1], id, table.concat(values, ','))
end
return out
