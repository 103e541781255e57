-- Reads and checks the record header at `key` (inlined into update.lua and
-- touch.lua by scripts.rs in place of their marker line; no function is defined
-- on this path, so a call builds no closure). Leaves `v`, `c`, `t` (strings)
-- set, `p` (where the line after the header starts in `h`) and `f` ('3'
-- for an s3 record, then `x` is its 13-digit deadline; '2' for s2; in both
-- the write list line starts at `p`; '1' for s1), and
-- `m` when the record was found in the legacy hash layout (the caller then
-- rewrites it as a string: migrate on touch), or returns:
-- `absent` when there is no key; an error reply ("VMCPCORRUPT <kind>
-- <detail>") for a record someone else wrote badly, before anything is
-- written. `detail` is a fixed word or hex: stored bytes are never echoed
-- into an error line (a client cannot parse one that is not UTF-8).
-- 256 bytes: the header line (at most 80) and a write list (at most 159)
-- with its end.
local h = redis.pcall('GETRANGE', key, 0, 255)
if type(h) == 'string' then
  -- The fast path: one match of the whole header, then the lengths
  -- (versions up to 2^53 - 1, the others exact in a Lua double); s2 and
  -- s1 (earlier releases) only when that fails.
  x, v, c, t, p = string.match(h, '^s3 (%d%d%d%d%d%d%d%d%d%d%d%d%d) ([1-9]%d*) (%d+) ([1-9]%d*)\n()')
  if v then
    f = '3'
  else
    f, v, c, t, p = string.match(h, '^s([12]) ([1-9]%d*) (%d+) ([1-9]%d*)\n()')
  end
  if not v or #v > 16 or #c > 15 or #t > 15 or (#v == 16 and v > '9007199254740991') then
    if h == '' then
      if redis.call('EXISTS', key) == 0 then return absent end
      return redis.error_reply('VMCPCORRUPT wrongtype empty')
    end
    local tag = string.sub(h, 1, 3)
    if tag ~= 's3 ' and tag ~= 's2 ' and tag ~= 's1 ' then
      return redis.error_reply('VMCPCORRUPT wrongtype string')
    end
    local e = string.find(h, '\n', 4, true)
    if not e or e > 80 then return redis.error_reply('VMCPCORRUPT wrongtype header') end
    local from = 4
    if tag == 's3 ' then
      if e <= 17 or not string.match(string.sub(h, 4, 17), '^%d%d%d%d%d%d%d%d%d%d%d%d%d $') then
        return redis.error_reply('VMCPCORRUPT missing e')
      end
      from = 18
    end
    v, c, t = string.match(string.sub(h, from, e - 1), '^([^ ]*) ?([^ ]*) ?(.*)$')
    if v == '' then return redis.error_reply('VMCPCORRUPT missing v') end
    if not (#v <= 16 and string.match(v, '^[1-9]%d*$') and (#v < 16 or v <= '9007199254740991')) then
      return redis.error_reply('VMCPCORRUPT version ' .. string.gsub(string.sub(v, 1, 32), '.',
        function(ch) return string.format('%02x', string.byte(ch)) end))
    end
    if not (#c >= 1 and #c <= 15 and string.match(c, '^%d+$')) then
      return redis.error_reply('VMCPCORRUPT missing c')
    end
    return redis.error_reply('VMCPCORRUPT missing t')
  end
else
  -- An error reply: WRONGTYPE for a legacy hash (or another type).
  if not string.find(h.err, 'WRONGTYPE', 1, true) then return h end
  local f = redis.pcall('HMGET', key, 'v', 'c', 't', 'm')
  if f.err then
    return redis.error_reply('VMCPCORRUPT wrongtype ' .. redis.call('TYPE', key)['ok'])
  end
  v, c, t, m = f[1], f[2], f[3], f[4]
  -- A hash without any of our fields (a foreign hash) reports `v` missing.
  if not v then return redis.error_reply('VMCPCORRUPT missing v') end
  if not (#v <= 16 and string.match(v, '^[1-9]%d*$') and (#v < 16 or v <= '9007199254740991')) then
    return redis.error_reply('VMCPCORRUPT version ' .. string.gsub(string.sub(v, 1, 32), '.',
      function(ch) return string.format('%02x', string.byte(ch)) end))
  end
  if not (c and #c >= 1 and #c <= 15 and string.match(c, '^%d+$')) then
    return redis.error_reply('VMCPCORRUPT missing c')
  end
  if not (t and #t <= 15 and string.match(t, '^[1-9]%d*$')) then
    return redis.error_reply('VMCPCORRUPT missing t')
  end
  if not m then m = false end
  f = 'h'
end
