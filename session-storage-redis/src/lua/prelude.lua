-- Shared by every script (prepended by scripts.rs).
--
-- Every redis.call costs several microseconds of server time, far more than
-- the Lua around it, so the scripts keep to as few calls as they can.

-- Redis < 5 needs effects replication for scripts that write after TIME;
-- from 5 on it is the default (REDIS_VERSION_NUM exists from 7 on).
if not redis.REDIS_VERSION_NUM and redis.replicate_commands then redis.replicate_commands() end

-- A distinguishable error reply for a record someone else wrote badly:
-- "VMCPCORRUPT <kind> <detail>". Nothing has been written when it is returned.
local function corrupt(kind, detail)
  return redis.error_reply('VMCPCORRUPT ' .. kind .. ' ' .. string.sub(detail or '', 1, 64))
end

-- A positive integer of at most 15 digits (exact in a Lua double).
local function is_count(s)
  return s and #s <= 15 and string.match(s, '^[1-9][0-9]*$') ~= nil
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
  if not is_count(v) then return nil, corrupt('version', v) end
  if not c or not (#c <= 15 and string.match(c, '^[0-9]+$')) then return nil, corrupt('missing', 'c') end
  if not is_count(t) then return nil, corrupt('missing', 't') end
  return { v = v, c = c, t = t }
end

-- Server time in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Slides the expiry of `key` to now + ttl (ms, a decimal string) on the
-- server's clock, capped at created + max when a cap is set (max > 0).
local function slide(key, created, ttl, max)
  if max > 0 then
    local d = now_ms() + tonumber(ttl)
    local cap = tonumber(created) + max
    if cap < d then d = cap end
    redis.call('PEXPIREAT', key, string.format('%.0f', d))
  else
    redis.call('PEXPIRE', key, ttl)
  end
end

