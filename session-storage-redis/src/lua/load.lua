-- load: read version and metadata, slide the expiry by the record's ttl.
-- KEYS[1] session key
-- ARGV[1] max lifetime ms (0: none)
-- Returns nil if absent, else { version, metadata JSON }.
local r, err = read(KEYS[1], true)
if err then return err end
if not r then return false end
slide(KEYS[1], r.c, r.t, tonumber(ARGV[1]))
return { r.v, r.m }
