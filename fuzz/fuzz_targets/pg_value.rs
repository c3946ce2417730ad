//! Every PostgreSQL value reader: the first four bytes pick a type (from
//! the types a row can carry), the rest are the value's binary form.
#![no_main]
const OIDS: &[u32] = &[
    16, 17, 20, 21, 23, 25, 26, 114, 700, 701, 1082, 1083, 1114, 1184, 1700, 2950, 3802, // scalars
    1000, 1001, 1005, 1007, 1016, 1021, 1022, 1009, 1182, 1183, 1115, 1185, 1231, 2951, 3807, // arrays
];
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&pick, raw)) = data.split_first() {
        reservoir::fuzzing::pg_value(OIDS[pick as usize % OIDS.len()], raw);
    }
});
