-- delete: remove the key and publish the deletion.
-- KEYS[1] session key
-- ARGV[1] change channel, ARGV[2] session id
-- Returns 1 if a key was removed, 0 if absent.
local n = redis.call('DEL', KEYS[1])
if n == 1 then redis.call('PUBLISH', ARGV[1], 'd:' .. ARGV[2]) end
return n
