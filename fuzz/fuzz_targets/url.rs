//! The URL parser and its error messages, on any text.
#![no_main]
libfuzzer_sys::fuzz_target!(|input: &str| reservoir::fuzzing::url(input));
