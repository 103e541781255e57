-- touch: slide the expiry by the record's ttl.
-- KEYS[1] session key
-- ARGV[1] max lifetime ms (0: none), ARGV[2] change channel, ARGV[3] session id
-- Returns 1 if live and slid, 0 if absent or past its capped deadline (then
-- deleted, and the delete published).
local r, err = read(KEYS[1])
if err then return err end
if not r then return 0 end
local cmd, at = slide_to(r.c, r.t, tonumber(ARGV[1]))
if not cmd then
  expire(KEYS[1], ARGV[2], ARGV[3])
  return 0
end
redis.call(cmd, KEYS[1], at)
return 1
