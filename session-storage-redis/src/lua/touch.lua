-- touch: slide the expiry by the record's own ttl.
-- KEYS[1] session key
-- ARGV[1] max lifetime ms ('0': none), ARGV[2] change channel,
-- ARGV[3] session id
-- Returns 1 if live and slid, 0 if absent or past its capped deadline (then
-- deleted, and the delete published). A legacy hash record is rewritten as
-- a string (s2, with an empty write list) with the same version,
-- metadata, creation time and ttl.
-- Calls on the hot path: GETRANGE, PEXPIRE (TIME and PEXPIREAT with a cap).
local key = KEYS[1]
local absent = 0
local f, v, c, t, m, p
--@header
if m == false then return redis.error_reply('VMCPCORRUPT missing m') end
if ARGV[1] == '0' then
  if m then
    redis.call('SET', key, 's2 ' .. v .. ' ' .. c .. ' ' .. t .. '\n\n' .. m, 'PX', t)
  else
    redis.call('PEXPIRE', key, t)
  end
  return 1
end
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local at = now + t
local cap = c + ARGV[1]
if cap < at then at = cap end
if at <= now then
  redis.call('DEL', key)
  redis.call('PUBLISH', ARGV[2], 'd:' .. ARGV[3])
  return 0
end
if m then
  redis.call('SET', key, 's2 ' .. v .. ' ' .. c .. ' ' .. t .. '\n\n' .. m, 'PXAT', at)
else
  redis.call('PEXPIREAT', key, at)
end
return 1
