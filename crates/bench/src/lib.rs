//! What the comparison harness (`main.rs`) and the counting examples
//! (`examples/`) share.

pub mod noop;
