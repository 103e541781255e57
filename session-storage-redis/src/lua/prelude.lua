-- Shared by every script (prepended by scripts.rs).
--
-- Every redis.call costs several microseconds of server time, far more than
-- the Lua around it, so the scripts keep to as few calls as they can.

-- Redis < 5 needs effects replication for scripts that write after TIME;
-- from 5 on it is the default (REDIS_VERSION_NUM exists from 7 on).
if not redis.REDIS_VERSION_NUM and redis.replicate_commands then redis.replicate_commands() end

-- A distinguishable error reply for a record someone else wrote badly:
-- "VMCPCORRUPT <kind> <detail>". Nothing has been written when it is returned.
-- `detail` is always a fixed word or hex: stored bytes are never echoed into
-- an error line (a client cannot parse one that is not UTF-8, and would drop
-- the connection every other caller shares).
local function corrupt(kind, detail)
  return redis.error_reply('VMCPCORRUPT ' .. kind .. ' ' .. (detail or ''))
end

-- Lowercase hex of the first 32 bytes of `s`.
local function hex(s)
  return (string.gsub(string.sub(s, 1, 32), '.', function(ch)
    return string.format('%02x', string.byte(ch))
  end))
end

-- The highest version: 2^53 - 1, exact in a Lua double (Version::MAX).
local MAX_VERSION = '9007199254740991'

-- A positive integer of at most 15 digits (exact in a Lua double).
local function is_count(s)
  return s and #s <= 15 and string.match(s, '^[1-9][0-9]*$') ~= nil
end

-- A stored version: 1..=2^53-1 in decimal digits, no sign, no leading zero
-- (the rule of Version::from_stored_text).
local function is_version(s)
  return s and #s <= 16 and string.match(s, '^[1-9][0-9]*$') ~= nil
    and (#s < 16 or s <= MAX_VERSION)
end

-- Reads the session hash at `key` with one HMGET. Returns nil when absent,
-- or the checked fields, or (nil, error reply) when the record is corrupt.
-- (`load` does not run a script: store.rs applies the same checks.)
local function read(key)
  local f = redis.pcall('HMGET', key, 'v', 'c', 't')
  if f.err then
    if string.find(f.err, 'WRONGTYPE', 1, true) then
      return nil, corrupt('wrongtype', redis.call('TYPE', key)['ok'])
    end
    return nil, f
  end
  local v, c, t = f[1], f[2], f[3]
  if not v and not c and not t then
    -- No field of ours: absent, unless a foreign hash sits at the key.
    if redis.call('EXISTS', key) == 0 then return nil end
  end
  if not v then return nil, corrupt('missing', 'v') end
  if not is_version(v) then return nil, corrupt('version', hex(v)) end
  if not c or not (#c <= 15 and string.match(c, '^[0-9]+$')) then return nil, corrupt('missing', 'c') end
  if not is_count(t) then return nil, corrupt('missing', 't') end
  return { v = v, c = c, t = t }
end

-- Server time in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The expiry a slide sets, as a command and its argument: now + ttl (ms, a
-- decimal string) on the server's clock, capped at created + max when a cap
-- is set (max > 0). nil when that capped deadline is already past
-- (max_lifetime lowered since creation, or a server clock ahead): the
-- record has expired, and the caller calls `expire`.
local function slide_to(created, ttl, max)
  if max > 0 then
    local now = now_ms()
    local d = now + tonumber(ttl)
    local cap = tonumber(created) + max
    if cap < d then d = cap end
    if d <= now then return nil end
    return 'PEXPIREAT', string.format('%.0f', d)
  end
  return 'PEXPIRE', ttl
end

-- Removes a record found past its capped deadline and publishes the delete.
local function expire(key, channel, id)
  redis.call('DEL', key)
  redis.call('PUBLISH', channel, 'd:' .. id)
end

