-- (After snapshot.lua: `layout`, `add`.)
--
-- Steps 2 and 3: apply deltas to aggregate hashes (creator buckets and
-- platform shards: all of a batch in one call on a single server, one call
-- per hash slot on a cluster), once per event (markers): the new events'
-- deltas are summed per aggregate first (in doubles, like the embedded
-- store), then added with one increment per field, and the snapshot of
-- every aggregate touched is rebuilt.
--
-- KEYS: per group: its snapshot hash, then its markers.
-- ARGV: now_ms, window_ms, fence_from_ms, fence_ms, then per group: its
--       marker count, its aggregate count, then per aggregate: its id and
--       its events' deltas summed (packed like a snapshot, evidence = the
--       number of events).
-- Returns {group, marker} pairs (1-based) of markers found set: such a
-- group is not applied (its markers set by this call are removed again);
-- the caller sums it again without those events and resends it.
--
-- The fence: an attempt whose batch started (Redis time, fence_from_ms)
-- more than fence_ms ago is refused, so that a step delayed in flight
-- cannot land after a resend has completed the batch and the settle step
-- has shortened the markers that would have stopped it (aggregates.rs).
--
-- An aggregate is one field of its snapshot hash: SNAPSHOT_FIELDS
-- big-endian doubles (updated_at, followers, members, evidence, the sums;
-- exact as integers up to 2^53), read, added to and written back: two
-- commands per aggregate, and a read parses one binary string per creator.
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

-- Sets the group's markers if absent; answers the positions found set.
local function claim(first, count)
  local found, set = {}, {}
  for m = 1, count do
    local key = KEYS[first + m - 1]
    local seen = redis.call('SET', key, ARGV[1], 'PX', ARGV[2], 'NX', 'GET')
    if not seen then
      set[#set + 1] = key
    elseif now - tonumber(seen) < window then
      found[#found + 1] = m
    else
      redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
      set[#set + 1] = key
    end
  end
  if #found > 0 then
    for _, key in ipairs(set) do redis.call('DEL', key) end
  end
  return found
end

local out = {}
local k = 1
local i = 5
local group = 0
while i <= #ARGV do
  group = group + 1
  local snapshot, markers, aggregates = KEYS[k], tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local found = claim(k + 1, markers)
  if #found == 0 then
    for a = i + 2, i + 2 * aggregates, 2 do add(snapshot, ARGV[a], {struct.unpack(layout, ARGV[a + 1])}) end
  end
  for _, m in ipairs(found) do
    out[#out + 1] = group
    out[#out + 1] = m
  end
  k = k + 1 + markers
  i = i + 2 + 2 * aggregates
end
return out
