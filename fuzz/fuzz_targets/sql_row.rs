//! `sql_row`: the properties of `session_storage_sql::__fuzz::sql_row` on libFuzzer's inputs
//! (seeds in `fuzz/corpus/sql_row/`, replayed by session_storage_sql's unit tests).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_storage_sql::__fuzz::sql_row(data));
