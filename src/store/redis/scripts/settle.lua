-- Settle, first half: drop the pending lines of events whose steps 2 and 3
-- are done (their deltas are no longer needed by a resend).
--
-- KEYS: the viewer hashes.
-- ARGV: per viewer, the event hashes to drop, space-separated.
-- Returns the number of lines dropped.
local dropped = 0
for i = 1, #KEYS do
  local p = redis.call('HGET', KEYS[i], 'p')
  if p then
    local drop = {}
    for hash in string.gmatch(ARGV[i], '%S+') do drop[hash] = true end
    local kept = {}
    for line in string.gmatch(p, '[^\n]+') do
      if drop[string.match(line, '^[^;]*')] then
        dropped = dropped + 1
      else
        kept[#kept + 1] = line .. '\n'
      end
    end
    if #kept == 0 then
      redis.call('HDEL', KEYS[i], 'p')
    else
      redis.call('HSET', KEYS[i], 'p', table.concat(kept))
    end
  end
end
return dropped
