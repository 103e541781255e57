//! `redis_record`: the properties of `session_storage_redis::__fuzz::redis_record` on libFuzzer's inputs
//! (seeds in `fuzz/corpus/redis_record/`, replayed by session_storage_redis's unit tests).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_storage_redis::__fuzz::redis_record(data));
