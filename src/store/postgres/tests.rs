//! The location as logs show it. The engine itself is tested against a real PostgreSQL in
//! `src/store/tests/` (both engines) and `src/store/tests/postgres.rs` (this one only).

use super::redacted;

#[test]
fn a_logged_location_never_shows_the_password() {
    let shown = redacted("postgres://sb:hunter2@db.internal:5433/chat");
    assert_eq!(shown, "postgres://sb@db.internal:5433/chat");
    let shown = redacted("host=10.0.0.5 user=sb password=hunter2 dbname=chat");
    assert_eq!(shown, "postgres://sb@10.0.0.5:5432/chat");
    assert!(!redacted("postgres://h:port/db").contains("port/db"));
}
