-- Step 1 for several viewers (one call per batch on a single server, one
-- per viewer on a cluster): each record is written only if its version is
-- unchanged since it was read (else that viewer is redone). The dedupe
-- entries `d` were checked and pruned by the caller against the same
-- version, so they change only here, with the version.
--
-- KEYS: the viewer hashes.
-- ARGV: now_ms, window_ms, then per viewer: expected version, record,
--       dedupe entries, pending lines to append (may be empty), and 1 if
--       it had no pending lines when read (then they are set, not appended).
-- Returns one flag per viewer: 0 written, 1 version changed (nothing written).
--
-- Pending lines (`<event hash>;<accepted ms>;<delta>\n`) are appended, not
-- replaced: the settle step removes lines without a version change, and a
-- line older than the window is dropped here (a resend after the window
-- counts as a new event anyway).
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local a = 3 + (i - 1) * 5
  local version = redis.call('HGET', KEYS[i], 'n') or '0'
  local next_version = tostring(tonumber(version) + 1)
  if version ~= ARGV[a] then
    out[i] = 1
  elseif ARGV[a + 4] == '1' and ARGV[a + 3] ~= '' then
    redis.call('HSET', KEYS[i], 'r', ARGV[a + 1], 'n', next_version, 'd', ARGV[a + 2], 'p', ARGV[a + 3])
    out[i] = 0
  else
    redis.call('HSET', KEYS[i], 'r', ARGV[a + 1], 'n', next_version, 'd', ARGV[a + 2])
    if ARGV[a + 3] ~= '' then
      local kept = {}
      for line in string.gmatch(redis.call('HGET', KEYS[i], 'p') or '', '[^\n]+') do
        local at = tonumber(string.match(line, '^[^;]*;(%-?%d+);'))
        if at and now - at < window then kept[#kept + 1] = line .. '\n' end
      end
      kept[#kept + 1] = ARGV[a + 3]
      redis.call('HSET', KEYS[i], 'p', table.concat(kept))
    end
    out[i] = 0
  end
end
return out
