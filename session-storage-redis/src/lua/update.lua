-- update: compare-and-set. Never creates.
-- KEYS[1] session key
-- ARGV[1] expected version, ARGV[2] metadata JSON, ARGV[3] store ttl ms,
-- ARGV[4] max lifetime ms (0: none), ARGV[5] change channel, ARGV[6] session id
-- Returns {0, ''} missing (or past its capped deadline: then deleted and the
-- delete published), {1, new version} applied, {2, current version}
-- conflict, {3, current version} at the maximum version (nothing written).
-- The metadata is not read: a CAS naming the right version replaces
-- metadata that does not decode (the repair path).
local r, err = read(KEYS[1])
if err then return err end
if not r then return { 0, '' } end
if r.v ~= ARGV[1] then return { 2, r.v } end
if r.v == MAX_VERSION then return { 3, r.v } end
local cmd, at = slide_to(r.c, ARGV[3], tonumber(ARGV[4]))
if not cmd then
  expire(KEYS[1], ARGV[5], ARGV[6])
  return { 0, '' }
end
local v = string.format('%.0f', tonumber(r.v) + 1)
redis.call('HSET', KEYS[1], 'v', v, 'm', ARGV[2], 't', ARGV[3])
redis.call(cmd, KEYS[1], at)
redis.call('PUBLISH', ARGV[5], 'w:' .. v .. ':' .. ARGV[6])
return { 1, v }
