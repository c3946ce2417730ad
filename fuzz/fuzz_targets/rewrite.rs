//! The placeholder scanner, in every dialect's style, on any SQL text.
#![no_main]
libfuzzer_sys::fuzz_target!(|sql: &str| reservoir::fuzzing::rewrite(sql));
