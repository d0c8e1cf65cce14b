//! `tests/chat_direct.rs` again, with the logic core on the one reactor's thread: a test binary
//! whose name ends in `_reactor` runs its servers that way (`logic_thread()` in
//! tests/chat_common/mod.rs).

#[path = "chat_direct.rs"]
mod suite;
