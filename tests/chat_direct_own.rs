//! `tests/chat_direct.rs` again, with the logic core on a thread of its own beside two
//! reactors (`--logic-thread own`; the default puts it on the one reactor's thread): a test
//! binary whose name ends in `_own` runs its servers that way (`logic_thread()` in
//! tests/chat_common/mod.rs).

#[path = "chat_direct.rs"]
mod suite;
