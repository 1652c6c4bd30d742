-- Step 1: write a viewer record if unchanged and no event is a duplicate.
--
-- KEYS: the viewer hash, then the dedupe entries of the events with ids.
-- ARGV: expected version, now_ms, window_ms, record, then one delta per entry.
-- Returns {0} written, {1} version changed, {2, {pos, delta, ...}} duplicates.
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local dups = {}
for i = 2, #KEYS do
  local seen = redis.call('GET', KEYS[i])
  if seen then
    local at, delta = string.match(seen, '^(%-?%d+);(.*)$')
    if at and now - tonumber(at) < window then
      dups[#dups + 1] = i - 1
      dups[#dups + 1] = delta
    end
  end
end
if #dups > 0 then return {2, dups} end
local version = redis.call('HGET', KEYS[1], 'n') or '0'
if version ~= ARGV[1] then return {1} end
redis.call('HSET', KEYS[1], 'r', ARGV[4], 'n', tostring(tonumber(version) + 1))
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2] .. ';' .. ARGV[3 + i], 'PX', ARGV[3])
end
return {0}
