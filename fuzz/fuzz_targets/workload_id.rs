//! `workload_id`: the properties of `session_core::__fuzz::workload_id` on libFuzzer's inputs
//! (seeds in `fuzz/corpus/workload_id/`, replayed by session_core's unit tests).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_core::__fuzz::workload_id(data));
