//! The status page in a real headless browser (Debian's `chromium`, which
//! `.ci/run` installs): the rendered page of a live mesh shows each check's
//! verdict and regions and links its page; the pages of a scripted month
//! (an outage, a regional fault, a recovery, a warning, a new check) show
//! the 30-day bars, the hourly ones, the latency sparklines and the
//! incidents with their timelines, without a channel's name. Screenshots
//! are kept for a human to look at (`status-page.png`, `history.png` and
//! `history-check.png` in cargo's `CARGO_TARGET_TMPDIR`, wherever the build
//! goes).
//! Skips, saying why, where no browser exists (fails under
//! `VANTAGE_REQUIRE_SERVERS`).

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use vantage_common::{FailureClass, Status};
use vantage_coordinator::declared::Declared;
use vantage_coordinator::raft::state_machine::Applied;
use vantage_coordinator::state::results::StoredResult;
use vantage_coordinator::state::{Command, IncomingResult, State};
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
    // By default the problems come first, then the OK checks.
    let outage = dom.find("<td class=\"v outage\">OUTAGE</td>");
    let ok = dom.find("<td class=\"v ok\">OK</td>");
    assert!(outage.is_some() && ok.is_some() && outage < ok, "{dom}");
    assert!(dom.contains("ru: down"), "{dom}");
    assert!(
        dom.contains("2 checks: 1 outage, 1 ok. Listed: 1 of 1 problems and 1 OK."),
        "{dom}"
    );
    // Each row has its 30-day bar and links the check's page.
    assert_eq!(dom.matches("<span class=\"bar days\">").count(), 2, "{dom}");
    assert!(
        dom.contains("<a href=\"/check/mx-down\">mx-down</a>"),
        "{dom}"
    );
    // Asked for, only the OK ones.
    let ok = chromium(binary, &["--dump-dom", &format!("{url}?verdict=ok")]).await;
    let ok = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.contains("<td class=\"v ok\">OK</td>"), "{ok}");
    assert!(ok.contains("eu: up") && !ok.contains("OUTAGE</td>"), "{ok}");
    assert!(ok.contains("Listed: 1 of 1 selected."), "{ok}");
    // A page at a time, with a link to the next keeping the filters.
    let first = chromium(
        binary,
        &["--dump-dom", &format!("{url}?check=mx-*&limit=1")],
    )
    .await;
    let first = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.contains("Listed: 1 of 2 selected (<a href=\"?check=mx-*&amp;limit=1&amp;after=mx-down\">next page</a>)."),
        "{first}"
    );
    // The check's page: its regions, each down, and its open incident.
    let page = chromium(binary, &["--dump-dom", &format!("{url}check/mx-down")]).await;
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains("<h1>mx-down</h1>"), "{page}");
    assert_eq!(
        page.matches("<span class=\"r down\">down</span>").count(),
        3,
        "{page}"
    );
    assert!(page.contains("opened: "), "{page}");
    // No such check: 404.
    let missing = reqwest_get(&format!("{url}check/nope")).await;
    assert_eq!(missing, 404);

    screenshot(binary, &url, "status-page.png", "1100,500").await;
}

/// Screenshots `url` at `size` (`W,H`) into `name` in cargo's scratch
/// directory for integration tests (wherever the build goes).
async fn screenshot(binary: &str, url: &str, name: &str, size: &str) {
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let out = chromium(
        binary,
        &[
            &format!("--window-size={size}"),
            &format!("--screenshot={}", shot.display()),
            url,
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

async fn reqwest_get(url: &str) -> u16 {
    // With the ring provider installed (reqwest here has none of its own).
    let client = vantage_coordinator::alert::http_client().unwrap();
    client.get(url).send().await.unwrap().status().as_u16()
}

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const REGIONS: [&str; 3] = ["ru", "eu", "us"];

fn checks_toml(names: &[&str]) -> String {
    let mut toml = String::from(
        "[[channel]]\nname = \"secret-pager\"\nkind = \"webhook\"\nsettings = { url = \"http://127.0.0.1:9/secret-hook\" }\n\n[[route]]\nname = \"oncall\"\nmatch = { team = \"mail\" }\nchannels = [\"secret-pager\"]\n\n",
    );
    for name in names {
        toml.push_str(&format!(
            "[[check]]\nname = \"{name}\"\nkind = \"smtp\"\ntarget = \"{name}.example.test\"\ninterval = \"10m\"\nregions = [\"ru\", \"eu\", \"us\"]\nfail_after = 1\nrecover_after = 1\nlabels = {{ team = \"mail\" }}\nparams = {{ port = 25, tls = \"none\" }}\n\n"
        ));
    }
    toml
}

/// What check `name` gives from `region` at `t` in the scripted month
/// (`today`: the start of today, UTC): `mx-main` is down everywhere on
/// day -20 from 10:00 to 12:00 and from `ru` only on day -12 from 03:00
/// to 08:00; `mx-backup` is down everywhere for the last two hours;
/// `tls-warn` warns for the last three days; latency differs by region.
fn scripted(name: &str, region: &str, t: i64, today: i64, now: i64) -> (Status, u64) {
    let within = |day: i64, from_h: i64, to_h: i64| {
        let d = today + day * DAY;
        (d + from_h * HOUR..d + to_h * HOUR).contains(&t)
    };
    let status = match name {
        "mx-main" if within(-20, 10, 12) => Status::Fail,
        "mx-main" if region == "ru" && within(-12, 3, 8) => Status::Fail,
        "mx-backup" if t >= now - 2 * HOUR => Status::Fail,
        "tls-warn" if t >= now - 3 * DAY => Status::Warn,
        _ => Status::Pass,
    };
    let base = match region {
        "ru" => 80,
        "eu" => 20,
        _ => 120,
    };
    (status, base + (t / HOUR % 6) as u64 * 5)
}

/// A month of the commands a cluster applies, from the first day of the
/// 30 to `now`: the declaration (and a fourth check three days ago),
/// three agents, a result of each check from each region every 10 minutes
/// as the scripted history says, the agents seen and a tick each time.
fn scripted_month(now: i64) -> State {
    let today = now - now.rem_euclid(DAY);
    let start = today - 29 * DAY;
    let declare = |names: &[&str], at_ms: i64| Command::ApplyConfig {
        declared: Box::new(Declared::parse(Path::new("checks.toml"), &checks_toml(names)).unwrap()),
        at_ms,
    };
    let mut state = State::default();
    let mut names = vec!["mx-main", "mx-backup", "tls-warn"];
    state.apply(&declare(&names, start));
    for (k, region) in REGIONS.iter().enumerate() {
        state.apply(&Command::AgentHello {
            name: format!("agent-{region}"),
            region: (*region).to_owned(),
            version: "test".into(),
            address: format!("127.0.0.{}:1", k + 1),
            spool_id: 1,
            at_ms: start,
        });
    }
    let mut seq = 0;
    let mut t = start;
    while t < now {
        if names.len() == 3 && t >= today - 3 * DAY {
            names.push("new-mx");
            state.apply(&declare(&names, t));
        }
        for region in REGIONS {
            let results = names
                .iter()
                .map(|name| {
                    let (status, duration_ms) = scripted(name, region, t, today, now);
                    seq += 1;
                    IncomingResult {
                        seq,
                        check: (*name).to_owned(),
                        result: StoredResult {
                            region: region.to_owned(),
                            agent: format!("agent-{region}"),
                            started_at_ms: t,
                            status,
                            class: (status == Status::Fail).then_some(FailureClass::Refused),
                            message: match status {
                                Status::Fail => "connection refused".into(),
                                Status::Warn => "certificate expires in 9 days".into(),
                                _ => "250 mx ready".into(),
                            },
                            duration_ms,
                            details_json: "{}".into(),
                            cert_not_after: None,
                            phases: Vec::new(),
                        },
                        trace: None,
                    }
                })
                .collect();
            state.apply(&Command::Results {
                agent: format!("agent-{region}"),
                spool_id: 1,
                at_ms: t,
                results,
            });
        }
        state.apply(&Command::AgentsSeen {
            names: REGIONS.iter().map(|r| format!("agent-{r}")).collect(),
            at_ms: t,
        });
        state.apply(&Command::Tick { at_ms: t });
        t += 10 * MIN;
    }
    state
}

/// The cells of the bar of class `class` (`days`, `hours`) that follows
/// `from` in `dom`: (colour, title).
fn bar_cells(dom: &str, from: &str, class: &str) -> Vec<(String, String)> {
    let at = dom
        .find(from)
        .unwrap_or_else(|| panic!("no {from:?} in {dom}"));
    let rest = &dom[at..];
    let open = format!("<span class=\"bar {class}\">");
    let start = rest
        .find(&open)
        .unwrap_or_else(|| panic!("no {class} bar after {from:?}"))
        + open.len();
    let bar = &rest[start..];
    let mut cells = Vec::new();
    let mut s = bar;
    while let Some(cell) = s.strip_prefix("<span class=\"c ") {
        let (colour, after) = cell.split_once("\" title=\"").unwrap();
        let (title, after) = after.split_once("\"></span>").unwrap();
        cells.push((colour.to_owned(), title.to_owned()));
        s = after;
    }
    cells
}

#[tokio::test]
async fn a_scripted_month_shows_bars_sparklines_and_incidents() {
    let Some(binary) = browser() else {
        vantage_tests::missing("chromium");
        return;
    };
    let now = vantage_common::clock::now_ms();
    let state = scripted_month(now);
    let applied = Applied {
        state,
        ..Applied::default()
    };
    let replica = std::sync::Arc::new(tokio::sync::RwLock::new(applied));
    let router = vantage_coordinator::web::routes(replica, || Some(1));
    let addr = vantage_common::metrics::serve("127.0.0.1:0".parse().unwrap(), router)
        .await
        .unwrap();
    let url = format!("http://{addr}/");

    let dom = chromium(binary, &["--dump-dom", &url]).await;
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    // Problems first, worst first, then the OK checks by name.
    let order: Vec<usize> = ["mx-backup", "tls-warn", "mx-main", "new-mx"]
        .iter()
        .map(|c| {
            dom.find(&format!("\">{c}</a></td>"))
                .unwrap_or_else(|| panic!("{c}: {dom}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(
        dom.contains("4 checks: 1 outage, 1 warning, 2 ok. Listed: 2 of 2 problems and 2 OK."),
        "{dom}"
    );
    // mx-main: 30 days, the outage on day -20 red, the regional fault on
    // day -12 amber, the rest green.
    let main = bar_cells(&dom, "\">mx-main</a></td>", "days");
    assert_eq!(main.len(), 30, "{main:?}");
    for (i, (colour, title)) in main.iter().enumerate() {
        let (want, says) = match i {
            9 => ("down", "outage 2h00m"),
            17 => ("noted", "regional 5h00m"),
            _ => ("ok", "100.00 % up"),
        };
        assert_eq!(colour, want, "day {i}: {title}");
        assert!(title.contains(says), "day {i}: {title}");
    }
    assert!(main[9].1.contains("91.67 % up"), "{}", main[9].1);
    // mx-backup: down today, and in its last hours.
    let backup = bar_cells(&dom, "\">mx-backup</a></td>", "days");
    assert_eq!(backup[29].0, "down", "{backup:?}");
    let backup_hours = bar_cells(&dom, "\">mx-backup</a></td>", "hours");
    assert_eq!(backup_hours.len(), 24);
    assert_eq!(backup_hours[23].0, "down", "{backup_hours:?}");
    assert_eq!(backup_hours[20].0, "ok", "{backup_hours:?}");
    // tls-warn: amber for its last days of warnings.
    let warn = bar_cells(&dom, "\">tls-warn</a></td>", "days");
    assert_eq!(&warn[28].0, "noted", "{warn:?}");
    assert!(warn[28].1.contains("warning 24h00m"), "{warn:?}");
    assert_eq!(&warn[20].0, "ok", "{warn:?}");
    // new-mx: grey before it was declared, three days ago.
    let new = bar_cells(&dom, "\">new-mx</a></td>", "days");
    assert!(
        new[..26]
            .iter()
            .all(|(c, t)| c == "none" && t.ends_with("no data")),
        "{new:?}"
    );
    assert_eq!(new[29].0, "ok", "{new:?}");
    // Uptime over 30 days: mx-main was down 2 hours of ~29.5 days.
    let main_row = &dom[dom.find("\">mx-main</a></td>").unwrap()..];
    let main_row = &main_row[..main_row.find("</tr>").unwrap()];
    assert!(main_row.contains("<span class=\"up30\">99.7"), "{main_row}");
    // A sparkline per region, each latency where the script put it.
    assert_eq!(
        main_row.matches("<svg class=\"sl\"").count(),
        3,
        "{main_row}"
    );
    assert!(main_row.matches("<polyline").count() >= 3, "{main_row}");
    for (region, low) in [("ru", 80), ("eu", 20), ("us", 120)] {
        let label = format!("<title>{region}: ");
        let at = main_row
            .find(&label)
            .unwrap_or_else(|| panic!("{region}: {main_row}"));
        let ms: u64 = main_row[at + label.len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{region}: {main_row}"));
        assert!((low..=low + 25).contains(&ms), "{region}: {ms} ms");
    }
    // Incidents of the 30 days, newest first, with durations and worst
    // verdicts; nothing names the channel.
    for (check, says) in [
        (
            "mx-main",
            "worst <span class=\"v outage\">OUTAGE</span>, lasted 2h00m",
        ),
        (
            "mx-main",
            "worst <span class=\"v regional\">REGIONAL</span>, lasted 5h00m",
        ),
        (
            "mx-backup",
            "worst <span class=\"v outage\">OUTAGE</span>, open for 1h5",
        ),
        (
            "tls-warn",
            "worst <span class=\"v warning\">WARNING</span>, open for",
        ),
    ] {
        assert!(
            dom.lines()
                .any(|l| l.contains(&format!(">{check}</a> — ")) && l.contains(says)),
            "{check}: {says}: {dom}"
        );
    }
    assert!(
        !dom.contains("secret-pager") && !dom.contains("secret-hook"),
        "{dom}"
    );

    // The check's page: 24 hours by the hour, 30 days by the day, the
    // region table and the incidents with their timelines.
    let check_url = format!("{url}check/mx-main");
    let page = chromium(binary, &["--dump-dom", &check_url]).await;
    let page = String::from_utf8_lossy(&page.stdout).into_owned();
    let hours = bar_cells(&page, "<h2>last 24 hours</h2>", "hours");
    assert_eq!(hours.len(), 24);
    assert!(hours.iter().all(|(c, _)| c == "ok"), "{hours:?}");
    assert_eq!(bar_cells(&page, "<h2>last 30 days</h2>", "days"), main);
    for (region, fails) in [("ru", 42), ("eu", 12), ("us", 12)] {
        let row = page
            .lines()
            .find(|l| l.starts_with(&format!("<tr><td>{region}</td>")))
            .unwrap_or_else(|| panic!("{region}: {page}"));
        assert!(row.contains(&format!(", {fails} fail, 0 error")), "{row}");
        assert!(row.contains("<span class=\"r up\">up</span>"), "{row}");
        assert!(row.contains("pass 250 mx ready"), "{row}");
    }
    assert!(page.contains("opened: REGIONAL (down from ru)"), "{page}");
    assert!(page.contains("verdict OUTAGE (down from eu, ru)"), "{page}");
    assert!(
        page.contains("resolved: OK from every voting region"),
        "{page}"
    );
    assert!(page.contains("eu: up -&gt; down"), "{page}");
    assert!(
        !page.contains("notification") && !page.contains("secret-pager"),
        "{page}"
    );
    assert!(
        !page.contains(">mx-backup</a>"),
        "only its own incidents: {page}"
    );

    screenshot(binary, &url, "history.png", "1300,700").await;
    screenshot(binary, &check_url, "history-check.png", "1300,1100").await;
}
