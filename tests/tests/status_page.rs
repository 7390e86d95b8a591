//! The status page in a real headless browser (Debian's `chromium`, which
//! `.ci/run` installs): the rendered page shows each check's verdict and
//! regions, and a screenshot is kept for a human to look at
//! (`status-page.png` in cargo's `CARGO_TARGET_TMPDIR`, wherever the build goes).
//! Skips, saying why, where no browser exists (fails under
//! `VANTAGE_REQUIRE_SERVERS`).

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use vantage_tests::cluster::{Cluster, Timers, wait_for};
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn browser() -> Option<&'static str> {
    vantage_tests::find_program(&[
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ])
}

async fn chromium(binary: &str, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(binary)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the browser finishes")
        .unwrap()
}

#[tokio::test]
async fn the_status_page_renders_in_a_real_browser() {
    let Some(binary) = browser() else {
        vantage_tests::missing("chromium");
        return;
    };
    let server = SmtpServer::start(SmtpScript::default()).await.unwrap();
    // A port nothing listens on: refused from everywhere.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cluster = Cluster::start(3, Timers::default()).await.unwrap();
    let check = |name: &str, port: u16| {
        format!(
            "[[check]]\nname = \"{name}\"\nkind = \"smtp\"\ntarget = \"127.0.0.1\"\ninterval = \"5s\"\nregions = [\"ru\", \"eu\", \"us\"]\nparams = {{ port = {port}, tls = \"none\" }}\n"
        )
    };
    let toml = format!(
        "{}{}",
        check("mx-up", server.addr.port()),
        check("mx-down", dead)
    );
    cluster.apply(&toml).await.unwrap();
    cluster.spawn_regions().await.unwrap();
    wait_for("one check OK, one OUTAGE", || async {
        let s = cluster.checks_status(1).await?;
        // In name order: mx-down, mx-up.
        let v: Vec<&str> = s.checks.iter().map(|c| c.verdict.as_str()).collect();
        (v == ["outage", "ok"]).then_some(())
    })
    .await
    .unwrap();
    let url = format!("http://{}/", cluster.nodes[&1].http.unwrap());

    let dom = chromium(binary, &["--dump-dom", &url]).await;
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<h1>vantage status</h1>"), "{dom}");
    // By default the problems are listed and the rest counted.
    assert!(dom.contains("<td class=\"v outage\">OUTAGE</td>"), "{dom}");
    assert!(dom.contains("ru: down"), "{dom}");
    assert!(!dom.contains("<td class=\"v ok\">OK</td>"), "{dom}");
    assert!(
        dom.contains("2 checks: 1 outage, 1 ok. Listed: 1 of 1 selected."),
        "{dom}"
    );
    // Asked for, the OK ones are listed too.
    let ok = chromium(binary, &["--dump-dom", &format!("{url}?verdict=ok")]).await;
    let ok = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.contains("<td class=\"v ok\">OK</td>"), "{ok}");
    assert!(ok.contains("eu: up") && !ok.contains("OUTAGE</td>"), "{ok}");

    // Cargo's scratch directory for integration tests, wherever the build goes.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let out = chromium(
        binary,
        &[
            "--window-size=1100,500",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    )
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());
}
