-- Shared by the aggregate scripts (scripts.rs puts it in front of them):
-- an aggregate is one field of its snapshot hash, SNAPSHOT_FIELDS
-- big-endian doubles (updated_at, followers, members, evidence, the sums;
-- counts exact as integers up to 2^53).
local layout = '>' .. string.rep('d', SNAPSHOT_FIELDS)
-- A snapshot written before buyers and refunds were counted is shorter:
-- it reads with the later sums zero.
local before_trust = '>' .. string.rep('d', SNAPSHOT_FIELDS_BEFORE_TRUST)

-- Adds the values d (unpacked) to the aggregate `id` of `snapshot`: the
-- latest time, the sum of the rest. Two commands per aggregate.
local function add(snapshot, id, d)
  local old = redis.call('HGET', snapshot, id)
  local v = d
  if old then
    if #old == 8 * SNAPSHOT_FIELDS then
      v = {struct.unpack(layout, old)}
    else
      v = {struct.unpack(before_trust, old)}
      for n = SNAPSHOT_FIELDS_BEFORE_TRUST + 1, SNAPSHOT_FIELDS do v[n] = 0 end
    end
    if d[1] > v[1] then v[1] = d[1] end
    for n = 2, SNAPSHOT_FIELDS do v[n] = v[n] + d[n] end
  end
  redis.call('HSET', snapshot, id, struct.pack(layout, unpack(v, 1, SNAPSHOT_FIELDS)))
end

