//! `metadata`: the properties of `session_core::__fuzz::metadata` on libFuzzer's inputs
//! (seeds in `fuzz/corpus/metadata/`, replayed by session_core's unit tests).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_core::__fuzz::metadata(data));
