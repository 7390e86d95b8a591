//! The demo's story is asserted, not only printed: `vantage-demo` exits 0
//! only when a regional fault paged nobody, the outage paged once, the
//! leader's death changed nothing about that, and the incident resolved.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

#[tokio::test]
async fn the_demo_tells_its_story_and_exits_zero() {
    let run = tokio::process::Command::new(vantage_tests::built_bin("vantage-demo"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the demo finishes within 3 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "all green: 7 checks OK from ru, eu and us",
        "mx-smtp-25 is REGIONAL (down from ru): one notice to chat, no page",
        "the pager got exactly 1 page",
        "leads now",
        "still exactly 1 page across the leader change",
        "opened: REGIONAL (down from ru)",
        "delivered to pager",
        "resolved: OK from every voting region",
        "summary: regional fault → 1 notice, 0 pages; outage → 1 page;",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
}
