-- update: compare-and-set. Never creates.
-- KEYS[1] session key
-- ARGV[1] expected version, ARGV[2] the version after it (computed by the
-- client: no arithmetic on versions here), ARGV[3] metadata JSON,
-- ARGV[4] store ttl ms, ARGV[5] max lifetime ms ('0': none),
-- ARGV[6] change channel, ARGV[7] session id, ARGV[8] this write's entry
-- for the write list ('<write id>:<ARGV[2] as 16 digits>', 39 bytes),
-- ARGV[9] the writing client's lower bound of the server's clock now, ms
-- ('0': none; then TIME is read)
-- Returns 0 missing (or past its capped deadline: then deleted and the
-- delete published), 1 applied (the record is at ARGV[2]), {2, current
-- version} conflict, 3 at the maximum version (nothing written), {4,
-- version as 16 digits} this write was applied before (a retry: nothing
-- written).
-- The metadata is not read: a CAS naming the right version replaces
-- metadata that does not decode (the repair path). A legacy hash record is
-- rewritten as a string (the SET replaces it).
-- The write list (see record.rs) is the line after an s2 header: newest
-- first, fixed-width entries 40 bytes apart. The applied write prepends
-- its entry and keeps the newest 4 (159 bytes); only a version mismatch
-- searches it.
-- The record is written as s3 (see record.rs) whatever layout it had.
-- Without max_lifetime and with ARGV[9]: `SET .. PX ttl` (no TIME), header
-- deadline ARGV[9] + ttl: the script runs after the client read its lower
-- bound, so the key's real expiry (the server's now + ttl) is never
-- earlier. Otherwise (a cap, or no estimate): TIME, and the header
-- deadline is exactly the `at` given to PXAT.
-- Calls on the hot path: GETRANGE, SET, PUBLISH (and TIME with a cap).
local key = KEYS[1]
local absent = 0
local f, v, c, t, m, p, x
--@header
-- The write list: `n` bytes from `p` (none in s1 or a legacy hash).
local n = 0
if f == '3' or f == '2' then
  local e = string.find(h, '\n', p, true)
  if not e or e - p > 159 then return redis.error_reply('VMCPCORRUPT missing w') end
  n = e - p
end
if v ~= ARGV[1] then
  -- Was it this write? Only an entry-aligned '<id>:' and 16 digits count.
  if n > 0 then
    local w = string.sub(h, p, p + n - 1)
    local needle = string.sub(ARGV[8], 1, 23)
    local i = string.find(w, needle, 1, true)
    while i do
      if (i - 1) % 40 == 0 then
        local d = string.sub(w, i + 23, i + 38)
        if #d == 16 and not string.find(d, '%D') then return { 4, d } end
      end
      i = string.find(w, needle, i + 1, true)
    end
  end
  return { 2, v }
end
if v == '9007199254740991' then return 3 end
-- This write's entry, then the newest three of the old list.
local keep = ''
if n > 0 then
  if n > 119 then n = 119 end
  keep = ' ' .. string.sub(h, p, p + n - 1)
end
if ARGV[5] == '0' and ARGV[9] ~= '0' then
  redis.call('SET', key, 's3 ' .. string.format('%013d', ARGV[9] + ARGV[4]) .. ' ' .. ARGV[2] .. ' ' .. c
    .. ' ' .. ARGV[4] .. '\n' .. ARGV[8] .. keep .. '\n' .. ARGV[3], 'PX', ARGV[4])
  redis.call('PUBLISH', ARGV[6], 'w:' .. ARGV[2] .. ':' .. ARGV[7])
  return 1
end
-- now + ttl on the server's clock, capped at created + max_lifetime; a
-- deadline already past (max_lifetime lowered since creation) expires the
-- record.
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local at = now + ARGV[4]
if ARGV[5] ~= '0' then
  local cap = c + ARGV[5]
  if cap < at then at = cap end
  if at <= now then
    redis.call('DEL', key)
    redis.call('PUBLISH', ARGV[6], 'd:' .. ARGV[7])
    return 0
  end
end
redis.call('SET', key, 's3 ' .. string.format('%013d', at) .. ' ' .. ARGV[2] .. ' ' .. c .. ' ' .. ARGV[4]
  .. '\n' .. ARGV[8] .. keep .. '\n' .. ARGV[3], 'PXAT', at)
redis.call('PUBLISH', ARGV[6], 'w:' .. ARGV[2] .. ':' .. ARGV[7])
return 1
