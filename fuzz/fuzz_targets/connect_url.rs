//! `connect_url`: the properties of `session_manager::__fuzz::connect_url` on libFuzzer's inputs
//! (seeds in `fuzz/corpus/connect_url/`, replayed by session_manager's unit tests).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_manager::__fuzz::connect_url(data));
