-- update: compare-and-set. Never creates.
-- KEYS[1] session key
-- ARGV[1] expected version, ARGV[2] metadata JSON, ARGV[3] store ttl ms,
-- ARGV[4] max lifetime ms (0: none), ARGV[5] change channel, ARGV[6] session id
-- Returns {0, ''} missing, {1, new version} applied, {2, current version} conflict.
local r, err = read(KEYS[1])
if err then return err end
if not r then return { 0, '' } end
if r.v ~= ARGV[1] then return { 2, r.v } end
local v = string.format('%.0f', tonumber(r.v) + 1)
redis.call('HSET', KEYS[1], 'v', v, 'm', ARGV[2], 't', ARGV[3])
slide(KEYS[1], r.c, ARGV[3], tonumber(ARGV[4]))
redis.call('PUBLISH', ARGV[5], 'w:' .. v .. ':' .. ARGV[6])
return { 1, v }
