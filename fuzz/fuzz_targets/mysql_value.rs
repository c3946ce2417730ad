//! The MySQL text-protocol value reader: the first byte is the column type.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&ty, raw)) = data.split_first() {
        reservoir::fuzzing::mysql_value(ty, raw);
    }
});
