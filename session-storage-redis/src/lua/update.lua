-- update: compare-and-set. Never creates.
-- KEYS[1] session key
-- ARGV[1] expected version, ARGV[2] the version after it (computed by the
-- client: no arithmetic on versions here), ARGV[3] metadata JSON,
-- ARGV[4] store ttl ms, ARGV[5] max lifetime ms ('0': none),
-- ARGV[6] change channel, ARGV[7] session id
-- Returns 0 missing (or past its capped deadline: then deleted and the
-- delete published), 1 applied (the record is at ARGV[2]), {2, current
-- version} conflict, 3 at the maximum version (nothing written).
-- The metadata is not read: a CAS naming the right version replaces
-- metadata that does not decode (the repair path). A legacy hash record is
-- rewritten as a string (the SET replaces it).
-- Calls on the hot path: GETRANGE, SET, PUBLISH (and TIME with a cap).
local key = KEYS[1]
local absent = 0
local v, c, t, m
--@header
if v ~= ARGV[1] then return { 2, v } end
if v == '9007199254740991' then return 3 end
local value = 's1 ' .. ARGV[2] .. ' ' .. c .. ' ' .. ARGV[4] .. '\n' .. ARGV[3]
if ARGV[5] == '0' then
  redis.call('SET', key, value, 'PX', ARGV[4])
else
  -- now + ttl on the server's clock, capped at created + max_lifetime;
  -- a deadline already past (max_lifetime lowered since creation) expires
  -- the record.
  local now = redis.call('TIME')
  now = now[1] * 1000 + math.floor(now[2] / 1000)
  local at = now + ARGV[4]
  local cap = c + ARGV[5]
  if cap < at then at = cap end
  if at <= now then
    redis.call('DEL', key)
    redis.call('PUBLISH', ARGV[6], 'd:' .. ARGV[7])
    return 0
  end
  redis.call('SET', key, value, 'PXAT', at)
end
redis.call('PUBLISH', ARGV[6], 'w:' .. ARGV[2] .. ':' .. ARGV[7])
return 1
