-- Versions are 1..=2^53-1 (session_core::Version::MAX) in every store.
-- NOT VALID: enforced for every row written from now on, without checking
-- (or failing on) rows already stored; the store reports such a row as
-- corrupt and never rewrites it.
ALTER TABLE {{table}} ADD CONSTRAINT version_in_range
    CHECK (version > 0 AND version <= 9007199254740991) NOT VALID;
