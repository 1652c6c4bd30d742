-- (After snapshot.lua: `layout`, `add`.)
--
-- One atomic step for part of a batch on a single server (one_step.rs): its
-- viewers' records and dedupe entries, the markers of its anonymous events,
-- and every aggregate their new events touch, written together. Nothing can
-- see or interrupt half of it, so no pending deltas, markers of viewer
-- events or settle step are needed.
--
-- KEYS: the units' keys (viewer hashes, markers), then the snapshot hashes.
-- ARGV: unit count, now_ms, window_ms; then per unit its kind, its key
--       number (1-based in KEYS; 0 for none), its deltas
--       (`<row>:<delta text>`, space-separated), and for a viewer its
--       expected version, record and dedupe entries; then per row its
--       snapshot key number, its aggregate id, and the sum of every unit's
--       deltas to it (packed like a snapshot, evidence = the number of
--       events).
-- Kinds: 'v' a viewer, applied if its version is unchanged since it was
--       read (the caller redoes it otherwise); 'm' an anonymous event's
--       part, applied if its marker is not set (then it is set for the
--       window); 'a' an anonymous event without an id, always applied.
-- Returns the numbers of the units not applied; their deltas are taken
-- out of the row sums first (counts stay exact; other sums may differ from
-- a sum without them in the last bits, as any other order of additions).
local units = tonumber(ARGV[1])
local now, window = tonumber(ARGV[2]), tonumber(ARGV[3])

-- Checks first (reads only), then the sums, then the writes: a script
-- that stops with an error has written nothing.
local failed, applied, at = {}, {}, {}
local a = 4
for u = 1, units do
  local kind, key = ARGV[a], KEYS[tonumber(ARGV[a + 1])]
  at[u] = a
  if kind == 'v' then
    local version = redis.call('HGET', key, 'n') or '0'
    if version == ARGV[a + 3] then
      applied[u] = tostring(tonumber(version) + 1)
    else
      failed[#failed + 1] = u
    end
    a = a + 6
  elseif kind == 'm' then
    local seen = redis.call('GET', key)
    if seen and now - tonumber(seen) < window then
      failed[#failed + 1] = u
    else
      applied[u] = true
    end
    a = a + 3
  else
    applied[u] = true
    a = a + 3
  end
end

-- `timestamp|followers|members|index=value...` taken out of v: what
-- add_delta_text (codec.rs) added, except the latest time, which stays (a
-- unit not applied is a viewer redone by the caller at once, or events
-- someone else applied: either way their times are the aggregate's too).
local function subtract_text(v, text)
  local time, followers, members, rest = string.match(text, '^(%-?%d+)|(%-?%d+)|(%-?%d+)(.*)$')
  if not time then
    error('CORRUPT delta ' .. text)
  end
  v[2] = v[2] - tonumber(followers)
  v[3] = v[3] - tonumber(members)
  v[4] = v[4] - 1
  for index, value in string.gmatch(rest, '|(%d+)=([^|]+)') do
    local n = 5 + tonumber(index)
    v[n] = v[n] - tonumber(value)
  end
end

-- Per row, what to add: the caller's sum, less the deltas of the units not
-- applied; a row left with no event (evidence 0) is not touched.
local first_row = a
local sums = {}
local row = 0
for r = first_row, #ARGV, 3 do
  row = row + 1
  sums[row] = {struct.unpack(layout, ARGV[r + 2])}
end
for _, u in ipairs(failed) do
  for row, text in string.gmatch(ARGV[at[u] + 2], '(%d+):(%S+)') do
    subtract_text(sums[tonumber(row)], text)
  end
end

for u = 1, units do
  local b = at[u]
  local key = KEYS[tonumber(ARGV[b + 1])]
  if applied[u] and ARGV[b] == 'v' then
    redis.call('HSET', key, 'r', ARGV[b + 4], 'n', applied[u], 'd', ARGV[b + 5])
  elseif applied[u] and ARGV[b] == 'm' then
    redis.call('SET', key, ARGV[2], 'PX', ARGV[3])
  end
end

row = 0
for r = first_row, #ARGV, 3 do
  row = row + 1
  if sums[row][4] > 0 then
    add(KEYS[tonumber(ARGV[r])], ARGV[r + 1], sums[row])
  end
end
return failed
