//! The web chat's store without a browser: `tests/browser/webchat_store.mjs` feeds
//! `web/chat/store.js` events under Node and checks the one state it keeps: an event seen again
//! after a resume is applied once, the customer's message goes sending → sent → read and never
//! back, a message that could not leave waits, an uploaded file stays one item, a declined
//! video call is told once, a phone call's progress, the end of the chat.

use std::path::Path;

#[test]
fn the_store_shows_everything_once_and_in_its_latest_state() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/webchat_store.mjs");
    let out = std::process::Command::new("node")
        .arg(&script)
        .output()
        .expect("node runs (scripts/test checks it is installed)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
