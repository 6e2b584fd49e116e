//! Executor tests with a scripted caller (real sockets are in tests/compose.rs).
