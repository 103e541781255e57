-- create: write version 1 only if the key is absent (whatever it holds).
-- KEYS[1] session key
-- ARGV[1] metadata JSON, ARGV[2] ttl ms, ARGV[3] change channel,
-- ARGV[4] session id
-- Returns 1 if created, 0 if the key exists.
-- max_lifetime >= ttl (checked by StoreConfig): PX ttl never passes the cap.
-- Record layout: see record.rs ("s1 <v> <created> <ttl>\n<metadata>").
local now = redis.call('TIME')
local value = 's1 1 ' .. string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000))
  .. ' ' .. ARGV[2] .. '\n' .. ARGV[1]
if not redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('PUBLISH', ARGV[3], 'w:1:' .. ARGV[4])
return 1
