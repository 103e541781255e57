-- create: write version 1 only if the key is absent (whatever it holds).
-- KEYS[1] session key
-- ARGV[1] metadata JSON, ARGV[2] ttl ms, ARGV[3] change channel,
-- ARGV[4] session id, ARGV[5] this write's entry for the write list
-- ('<write id>:0000000000000001')
-- Returns 1 if created, 0 if the key exists, 2 if it exists because this
-- very create was applied before (its entry is in the record's write
-- list: a retry after a lost reply; nothing written).
-- max_lifetime >= ttl (checked by StoreConfig): now + ttl never passes the cap.
-- Record layout: see record.rs
-- ("s3 <deadline> <v> <created> <ttl>\n<writes>\n<metadata>"); the
-- deadline in the header is the `at` given to PXAT.
local now = redis.call('TIME')
now = now[1] * 1000 + math.floor(now[2] / 1000)
local at = now + ARGV[2]
local value = 's3 ' .. string.format('%013d', at) .. ' 1 ' .. string.format('%d', now)
  .. ' ' .. ARGV[2] .. '\n' .. ARGV[5] .. '\n' .. ARGV[1]
if redis.call('SET', KEYS[1], value, 'NX', 'PXAT', at) then
  redis.call('PUBLISH', ARGV[3], 'w:1:' .. ARGV[4])
  return 1
end
-- Taken: only now look for this write in the record's list.
local h = redis.pcall('GETRANGE', KEYS[1], 0, 255)
if type(h) ~= 'string' then return 0 end
local tag = string.sub(h, 1, 3)
if tag ~= 's3 ' and tag ~= 's2 ' then return 0 end
local p = string.find(h, '\n', 4, true)
if not p then return 0 end
local e = string.find(h, '\n', p + 1, true)
if not e then return 0 end
local w = string.sub(h, p + 1, e - 1)
local i = string.find(w, ARGV[5], 1, true)
while i do
  if (i - 1) % 40 == 0 then return 2 end
  i = string.find(w, ARGV[5], i + 1, true)
end
return 0
