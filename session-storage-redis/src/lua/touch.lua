-- touch: slide the expiry by the record's own ttl.
-- KEYS[1] session key
-- ARGV[1] max lifetime ms ('0': none), ARGV[2] change channel,
-- ARGV[3] session id, ARGV[4] the calling client's lower bound of the
-- server's clock now, ms ('0': none; then TIME is read)
-- Returns 1 if live and slid, 0 if absent or past its capped deadline (then
-- deleted, and the delete published).
-- An s3 record without max lifetime and with ARGV[4]: PEXPIRE key t (no
-- TIME) and ARGV[4] + t to the header (SETRANGE of its 13 digits at offset
-- 3; see record.rs): never later than the key's real expiry, since the
-- script runs after the client read its lower bound. Otherwise the new
-- deadline `at` (TIME + t, capped at c + max lifetime) goes to the key
-- (PEXPIREAT) and to the header exactly. A record in an earlier layout
-- (s2, s1, or a legacy hash) is rewritten whole as s3 with the same
-- version, creation time, ttl, write list (s2) and metadata: migrate on
-- touch.
-- A key without an expiry (PERSIST by hand): an s3 record whose header
-- deadline has not passed is repaired by the slide itself (PEXPIRE or
-- PEXPIREAT); one whose deadline has passed (a key with its expiry
-- outlives it by a few ms at most: a deadline written from a client's
-- lower bound), and an s2/s1 record being migrated, are checked with PTTL
-- and refused if it has none (nothing written). Without TIME, "passed"
-- is judged by ARGV[4].
-- Calls on the hot path: GETRANGE, SETRANGE, PEXPIRE (TIME and PEXPIREAT
-- instead with a cap).
local key = KEYS[1]
local absent = 0
local f, v, c, t, m, p, x
--@header
if m == false then return redis.error_reply('VMCPCORRUPT missing m') end
if f == '3' and ARGV[1] == '0' and ARGV[4] ~= '0' then
  if tonumber(x) < tonumber(ARGV[4]) and redis.call('PTTL', key) == -1 then
    return redis.error_reply('VMCPCORRUPT wrongtype noexpiry')
  end
  redis.call('SETRANGE', key, 3, string.format('%013d', ARGV[4] + t))
  redis.call('PEXPIRE', key, t)
  return 1
end
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local at = now + t
if ARGV[1] ~= '0' then
  local cap = c + ARGV[1]
  if cap < at then at = cap end
  if at <= now then
    redis.call('DEL', key)
    redis.call('PUBLISH', ARGV[2], 'd:' .. ARGV[3])
    return 0
  end
end
local e = string.format('%013d', at)
if f == '3' then
  if tonumber(x) < now and redis.call('PTTL', key) == -1 then
    return redis.error_reply('VMCPCORRUPT wrongtype noexpiry')
  end
  redis.call('SETRANGE', key, 3, e)
  redis.call('PEXPIREAT', key, at)
  return 1
end
local tail
if m then
  tail = '\n' .. m
else
  if redis.call('PTTL', key) == -1 then return redis.error_reply('VMCPCORRUPT wrongtype noexpiry') end
  tail = string.sub(redis.call('GET', key), p)
  if f == '1' then tail = '\n' .. tail end
end
redis.call('SET', key, 's3 ' .. e .. ' ' .. v .. ' ' .. c .. ' ' .. t .. '\n' .. tail, 'PXAT', at)
return 1
