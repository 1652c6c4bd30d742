-- Settle, second half: markers of settled events are kept only a short
-- while (ARGV[1] ms), long enough to fence off a late step of an attempt
-- that was given up (see apply_deltas.lua), not for the whole window.
--
-- KEYS: the markers.
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
