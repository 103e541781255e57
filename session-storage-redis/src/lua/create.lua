-- create: write version 1 only if the key is absent.
-- KEYS[1] session key
-- ARGV[1] metadata JSON, ARGV[2] ttl ms, ARGV[3] max lifetime ms (0: none),
-- ARGV[4] change channel, ARGV[5] session id
-- Returns 1 if created, 0 if the key exists (whatever it holds).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local created = string.format('%.0f', now_ms())
-- max_lifetime >= ttl >= 1 ms (checked by StoreConfig): never past here.
local cmd, at = slide_to(created, ARGV[2], tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'v', '1', 'm', ARGV[1], 'c', created, 't', ARGV[2])
redis.call(cmd, KEYS[1], at)
redis.call('PUBLISH', ARGV[4], 'w:1:' .. ARGV[5])
return 1
