-- Shared by every script (prepended by scripts.rs).
-- Redis < 5 needs effects replication for scripts that write after TIME;
-- on 5+ it is the default and this call is a no-op.
if redis.replicate_commands then redis.replicate_commands() end

-- A distinguishable error reply for a record someone else wrote badly:
-- "VMCPCORRUPT <kind> <detail>". Nothing has been written when it is returned.
local function corrupt(kind, detail)
  return redis.error_reply('VMCPCORRUPT ' .. kind .. ' ' .. string.sub(detail or '', 1, 64))
end

-- Server time in milliseconds: the only clock expiry uses.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A positive integer of at most 15 digits (exact in a Lua double).
local function is_count(s)
  return s and #s <= 15 and string.match(s, '^[1-9][0-9]*$') ~= nil
end

-- Reads the session hash at `key`. Returns nil when absent, or the checked
-- fields, or (nil, error reply) when the record is corrupt.
local function read(key, with_metadata)
  local ty = redis.call('TYPE', key)['ok']
  if ty == 'none' then return nil end
  if ty ~= 'hash' then return nil, corrupt('wrongtype', ty) end
  local f
  if with_metadata then
    f = redis.call('HMGET', key, 'v', 'c', 't', 'm')
  else
    f = redis.call('HMGET', key, 'v', 'c', 't')
  end
  local v, c, t = f[1], f[2], f[3]
  if not v then return nil, corrupt('missing', 'v') end
  if not is_count(v) then return nil, corrupt('version', v) end
  if not c or not (#c <= 15 and string.match(c, '^[0-9]+$')) then return nil, corrupt('missing', 'c') end
  if not is_count(t) then return nil, corrupt('missing', 't') end
  if with_metadata and not f[4] then return nil, corrupt('missing', 'm') end
  return { v = v, c = tonumber(c), t = tonumber(t), m = f[4] }
end

-- The absolute expiry (ms) after a slide at `now`: now + ttl, capped at
-- created + max_lifetime when a cap is set (max > 0).
local function deadline(now, created, ttl, max)
  local d = now + ttl
  if max > 0 and created + max < d then d = created + max end
  return string.format('%.0f', d)
end

