//! The `ringgate` command line.
fn main() {}
