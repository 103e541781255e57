-- touch: slide the expiry by the record's ttl.
-- KEYS[1] session key
-- ARGV[1] max lifetime ms (0: none)
-- Returns 1 if live, 0 if absent.
local r, err = read(KEYS[1])
if err then return err end
if not r then return 0 end
slide(KEYS[1], r.c, r.t, tonumber(ARGV[1]))
return 1
