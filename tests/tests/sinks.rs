//! Each alert sink against a receiver that records what arrives: the
//! HTTP sinks against the recording receiver, email against the testkit
//! SMTP server (STARTTLS with a test CA), and Alertmanager against a real
//! `prometheus-alertmanager` where the Debian package is installed.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use vantage_coordinator::alert::{Channel, http_client};
use vantage_coordinator::declared::ChannelDecl;
use vantage_coordinator::notification::{Event, Key, Message, Severity};
use vantage_tests::certs::{TestCa, Validity};
use vantage_tests::receiver::Receiver;
use vantage_tests::smtp::{SmtpScript, SmtpServer};

fn channel(kind: &str, settings: &str) -> Channel {
    let decl = ChannelDecl {
        name: kind.into(),
        kind: kind.into(),
        settings: toml::from_str(settings).unwrap(),
    };
    decl.channel().unwrap()
}

fn message(event: Event) -> Message {
    Message {
        key: match event {
            Event::Firing => Key::notice(7, Severity::Critical, "chat"),
            Event::Resolved => Key::Resolved {
                incident: 7,
                channel: "chat".into(),
            },
        },
        incident: 7,
        event,
        test: false,
        check: "mx1-smtp".into(),
        severity: Severity::Critical,
        verdict: "outage".into(),
        summary: "OUTAGE (down from eu, ru)".into(),
        labels: BTreeMap::from([
            ("check".to_owned(), "mx1-smtp".to_owned()),
            ("team".to_owned(), "mail".to_owned()),
        ]),
        started_ms: 1_790_000_000_000,
        ended_ms: (event == Event::Resolved).then_some(1_790_000_300_000),
        trace: None,
    }
}

fn secret(dir: &Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn slack_telegram_and_pagerduty_send_firing_and_resolved() {
    let r = Receiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = http_client().unwrap();
    let slack_url = secret(dir.path(), "slack", &r.url("services/T0/B0/XYZ"));
    let slack = channel("slack", &format!("webhook_url_file = \"{slack_url}\""));
    let token = secret(dir.path(), "tg", "123:ABC");
    let telegram = channel(
        "telegram",
        &format!(
            "bot_token_file = \"{token}\"\nchat_id = -1001\napi_url = \"{}\"",
            r.url("")
        ),
    );
    let key = secret(dir.path(), "pd", "R0UT1NG");
    let pd = channel(
        "pagerduty",
        &format!(
            "routing_key_file = \"{key}\"\nurl = \"{}\"",
            r.url("v2/enqueue")
        ),
    );
    for event in [Event::Firing, Event::Resolved] {
        for c in [&slack, &telegram, &pd] {
            c.send(&http, &message(event)).await.unwrap();
        }
    }
    let posts: Vec<_> = r
        .received("/services/T0/B0/XYZ")
        .iter()
        .map(|x| x.json())
        .collect();
    assert_eq!(posts.len(), 2);
    assert!(
        posts[0]["text"]
            .as_str()
            .unwrap()
            .contains("[FIRING critical] mx1-smtp: OUTAGE")
    );
    assert!(
        posts[1]["text"]
            .as_str()
            .unwrap()
            .contains("[RESOLVED] mx1-smtp")
    );
    let tg: Vec<_> = r
        .received("/bot123:ABC/sendMessage")
        .iter()
        .map(|x| x.json())
        .collect();
    assert_eq!(tg.len(), 2, "the token from its file, in the path");
    assert_eq!(tg[0]["chat_id"], "-1001");
    assert!(tg[1]["text"].as_str().unwrap().contains("resolved 2026"));
    let pd: Vec<_> = r.received("/v2/enqueue").iter().map(|x| x.json()).collect();
    assert_eq!(pd[0]["event_action"], "trigger");
    assert_eq!(pd[0]["routing_key"], "R0UT1NG");
    assert_eq!(pd[0]["payload"]["source"], "mx1-smtp");
    assert_eq!(pd[0]["payload"]["custom_details"]["team"], "mail");
    assert_eq!(pd[1]["event_action"], "resolve");
    assert_eq!(pd[0]["dedup_key"], pd[1]["dedup_key"]);

    // A missing secret is a clear error that never shows a value.
    std::fs::remove_file(dir.path().join("tg")).unwrap();
    let err = telegram
        .send(&http, &message(Event::Firing))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tg"), "{err}");
    // A refusing receiver: the status is in the error, the secret URL is not.
    r.set(
        "/services/T0/B0/XYZ",
        vantage_tests::receiver::Behaviour::FailTimes(1),
    );
    let err = slack
        .send(&http, &message(Event::Firing))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("500") && !err.to_string().contains("XYZ"),
        "{err}"
    );
}

#[tokio::test]
async fn teams_discord_ntfy_and_sms_send_firing_and_resolved() {
    let r = Receiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = http_client().unwrap();
    let status = "status_url = \"https://status.example.org\"";
    let teams_url = secret(dir.path(), "teams", &r.url("workflows/T34M5S1GN4TUR3"));
    let teams = channel(
        "teams",
        &format!("webhook_url_file = \"{teams_url}\"\n{status}"),
    );
    let discord_url = secret(dir.path(), "discord", &r.url("api/webhooks/1/D1SC0RDT0K3N"));
    let discord = channel(
        "discord",
        &format!("webhook_url_file = \"{discord_url}\"\n{status}"),
    );
    let ntfy_token = secret(dir.path(), "ntfy", "tk_N7FYS3CR3TT0K3N");
    let ntfy = channel(
        "ntfy",
        &format!(
            "url = \"{}\"\ntoken_file = \"{ntfy_token}\"\n{status}",
            r.url("ntfy/mail-alerts")
        ),
    );
    let sms_token = secret(dir.path(), "sms", "TW1L10AUTHT0K3N");
    let sms = channel(
        "sms",
        &format!(
            "account_sid = \"AC42\"\nauth_token_file = \"{sms_token}\"\nfrom = \"+15005550006\"\nto = [\"+4915112345678\", \"+4915187654321\"]\napi_url = \"{}\"",
            r.url("twilio")
        ),
    );
    for event in [Event::Firing, Event::Resolved] {
        for c in [&teams, &discord, &ntfy, &sms] {
            c.send(&http, &message(event)).await.unwrap();
        }
    }

    // Teams: an Adaptive Card, red while firing, green when resolved,
    // with the verdict, the regions and a link to the check.
    let cards: Vec<_> = r
        .received("/workflows/T34M5S1GN4TUR3")
        .iter()
        .map(|x| x.json())
        .collect();
    assert_eq!(cards.len(), 2);
    let attachment = &cards[0]["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    let heading = &card["body"][0]["items"][0];
    assert_eq!(heading["color"], "Attention");
    assert!(
        heading["text"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING critical] mx1-smtp: OUTAGE"),
        "{card}"
    );
    let facts = card["body"][1]["facts"].to_string();
    assert!(
        facts.contains("\"OUTAGE\"") && facts.contains("down from eu, ru") && facts.contains("#7"),
        "{facts}"
    );
    assert_eq!(
        card["actions"][0]["url"],
        "https://status.example.org/check/mx1-smtp"
    );
    assert_eq!(
        cards[1]["attachments"][0]["content"]["body"][0]["items"][0]["color"],
        "Good"
    );

    // Discord: an embed, no mentions.
    let posts: Vec<_> = r
        .received("/api/webhooks/1/D1SC0RDT0K3N")
        .iter()
        .map(|x| x.json())
        .collect();
    assert_eq!(posts.len(), 2);
    let embed = &posts[0]["embeds"][0];
    assert_eq!(embed["color"], 0xE01E5A);
    assert!(
        embed["title"]
            .as_str()
            .unwrap()
            .contains("[FIRING critical] mx1-smtp")
    );
    assert_eq!(embed["url"], "https://status.example.org/check/mx1-smtp");
    assert_eq!(posts[0]["allowed_mentions"]["parse"], serde_json::json!([]));
    assert_eq!(posts[1]["embeds"][0]["color"], 0x2EB67D);
    assert!(
        posts[1]["embeds"][0]["title"]
            .as_str()
            .unwrap()
            .contains("[RESOLVED]")
    );

    // ntfy: JSON to the server, the topic in the body, the token as a
    // bearer, urgent while firing.
    let pushes = r.received("/ntfy/");
    assert_eq!(pushes.len(), 2);
    assert_eq!(
        pushes[0].headers.get("authorization").map(String::as_str),
        Some("Bearer tk_N7FYS3CR3TT0K3N")
    );
    let push = pushes[0].json();
    assert_eq!(push["topic"], "mail-alerts");
    assert_eq!(push["priority"], 5);
    assert_eq!(push["click"], "https://status.example.org/check/mx1-smtp");
    assert!(push["message"].as_str().unwrap().contains("incident #7"));
    assert_eq!(pushes[1].json()["priority"], 3);

    // SMS: one form per recipient and event, basic auth, one short text.
    let texts = r.received("/twilio/2010-04-01/Accounts/AC42/Messages.json");
    assert_eq!(texts.len(), 4);
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("AC42:TW1L10AUTHT0K3N");
    let form = |i: usize| -> BTreeMap<String, String> { url_pairs(&texts[i].body) };
    assert_eq!(
        texts[0].headers.get("authorization"),
        Some(&format!("Basic {basic}"))
    );
    assert_eq!(form(0)["To"], "+4915112345678");
    assert_eq!(form(1)["To"], "+4915187654321");
    assert_eq!(form(0)["From"], "+15005550006");
    assert_eq!(
        form(0)["Body"],
        "FIRING critical mx1-smtp: OUTAGE (down from eu, ru) #7"
    );
    assert_eq!(
        form(2)["Body"],
        "RESOLVED mx1-smtp: OUTAGE (down from eu, ru) #7"
    );
    // A long summary is cut to one message, the incident kept.
    let mut long = message(Event::Firing);
    long.verdict = "changed".into();
    long.summary = format!(
        "SPF example.org: -all → ~all; {}",
        "removed ip4:192.0.2.1 ".repeat(20)
    );
    let text = vantage_coordinator::alert::sms::text(&long);
    assert!(
        text.chars().count() <= 160 && text.ends_with("... #7"),
        "{text}"
    );
    assert!(
        text.starts_with("CHANGED critical mx1-smtp: SPF example.org: -all -> ~all"),
        "{text}"
    );

    // Refused: the status and the receiver's reason, never a secret; the
    // next attempt goes through (the sender retries like any channel's).
    for (c, path, secret) in [
        (&teams, "/workflows/T34M5S1GN4TUR3", "T34M5S1GN4TUR3"),
        (&discord, "/api/webhooks/1/D1SC0RDT0K3N", "D1SC0RDT0K3N"),
        (&ntfy, "/ntfy/", "N7FYS3CR3TT0K3N"),
        (
            &sms,
            "/twilio/2010-04-01/Accounts/AC42/Messages.json",
            "TW1L10AUTHT0K3N",
        ),
    ] {
        r.set(path, vantage_tests::receiver::Behaviour::FailTimes(1));
        let err = c
            .send(&http, &message(Event::Firing))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("500") && !err.contains(secret), "{err}");
        c.send(&http, &message(Event::Firing)).await.unwrap();
    }
    // Refused after the first recipient has it: the retry goes to the
    // others only, so nobody gets the page twice.
    let twilio = "/twilio/2010-04-01/Accounts/AC42/Messages.json";
    let before = r.received(twilio).len();
    r.set(twilio, vantage_tests::receiver::Behaviour::FailAfter(1));
    let mut reached = Vec::new();
    let err = sms
        .send_remaining(&http, &message(Event::Firing), &mut reached)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("to +4915187654321"), "{err}");
    assert_eq!(reached, ["+4915112345678"]);
    sms.send_remaining(&http, &message(Event::Firing), &mut reached)
        .await
        .unwrap();
    assert_eq!(reached, ["+4915112345678", "+4915187654321"]);
    let sent: Vec<String> = r.received(twilio)[before..]
        .iter()
        .map(|x| url_pairs(&x.body)["To"].clone())
        .collect();
    assert_eq!(sent, ["+4915112345678", "+4915187654321", "+4915187654321"]);
    // A missing secret names its reference, not a value.
    std::fs::remove_file(dir.path().join("sms")).unwrap();
    let err = sms.send(&http, &message(Event::Firing)).await.unwrap_err();
    assert!(err.to_string().contains("sms"), "{err}");
}

/// A form-encoded body's pairs.
fn url_pairs(body: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(body);
    let url = reqwest::Url::parse(&format!("http://x/?{text}")).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn email_goes_out_over_starttls_with_the_password_from_a_file() {
    let ca = TestCa::new("sink CA").unwrap();
    let tls = ca
        .issue(&["localhost"], Validity::GOOD)
        .unwrap()
        .server_config()
        .unwrap();
    let server = SmtpServer::start(SmtpScript::with_starttls(tls))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path()).unwrap();
    let password = secret(dir.path(), "smtp", "hunter2");
    let email = channel(
        "email",
        &format!(
            "smtp_host = \"localhost\"\nsmtp_port = {}\nfrom = \"vantage@example.org\"\nto = [\"oncall@example.org\", \"boss@example.org\"]\nusername = \"vantage\"\npassword_file = \"{password}\"\nca_file = \"{}\"",
            server.addr.port(),
            ca_file.display()
        ),
    );
    email
        .send(&http_client().unwrap(), &message(Event::Firing))
        .await
        .unwrap();
    email
        .send(&http_client().unwrap(), &message(Event::Resolved))
        .await
        .unwrap();
    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    let (first, under_tls) = &messages[0];
    assert!(under_tls, "sent after STARTTLS");
    assert!(
        first.contains("Subject: [FIRING critical] mx1-smtp: OUTAGE"),
        "{first}"
    );
    assert!(
        first.contains("Message-ID: <7.critical.chat@vantage>"),
        "{first}"
    );
    assert!(
        first.contains("To: oncall@example.org, boss@example.org"),
        "{first}"
    );
    assert!(messages[1].0.contains("Subject: [RESOLVED] mx1-smtp"));
    let commands = server.commands();
    assert!(
        commands.iter().any(|c| c.starts_with("AUTH")),
        "{commands:?}"
    );
    assert_eq!(commands.iter().filter(|c| c.starts_with("RCPT")).count(), 4);

    // A server whose certificate nothing trusts is refused: no plaintext fallback.
    let untrusted = SmtpServer::start(SmtpScript::with_starttls(
        vantage_tests::certs::server_tls(&["localhost"]).unwrap(),
    ))
    .await
    .unwrap();
    let email = channel(
        "email",
        &format!(
            "smtp_host = \"localhost\"\nsmtp_port = {}\nfrom = \"vantage@example.org\"\nto = [\"oncall@example.org\"]",
            untrusted.addr.port()
        ),
    );
    assert!(
        email
            .send(&http_client().unwrap(), &message(Event::Firing))
            .await
            .is_err()
    );
    assert!(untrusted.messages().is_empty());
}

fn alertmanager_binary() -> Option<&'static str> {
    vantage_tests::find_program(&["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"])
}

#[tokio::test]
async fn a_real_alertmanager_takes_the_alert_and_its_resolution() {
    let Some(binary) = alertmanager_binary() else {
        vantage_tests::missing("prometheus-alertmanager");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("am.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut am = tokio::process::Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(
            std::fs::File::create(dir.path().join("am.log")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = http_client().unwrap();
    let get_alerts = || async {
        let r = http
            .get(format!("{base}/api/v2/alerts"))
            .send()
            .await
            .ok()?;
        r.json::<serde_json::Value>().await.ok()
    };
    vantage_tests::cluster::wait_for("alertmanager ready", || async {
        let r = http.get(format!("{base}/-/ready")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(dir.path().join("am.log")).unwrap_or_default()
        )
    });
    let sink = channel("alertmanager", &format!("url = \"{base}\""));
    sink.send(&http, &message(Event::Firing)).await.unwrap();
    let alerts = get_alerts().await.unwrap();
    let ours: Vec<&serde_json::Value> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["check"] == "mx1-smtp")
        .collect();
    assert_eq!(ours.len(), 1, "the firing one only: {alerts}");
    let a = ours[0];
    assert_eq!(a["labels"]["alertname"], "VantageIncident");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["incident"], "7");
    assert_eq!(a["labels"]["team"], "mail");
    assert_eq!(a["status"]["state"], "active");
    assert!(
        a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("OUTAGE")
    );

    sink.send(&http, &message(Event::Resolved)).await.unwrap();
    vantage_tests::cluster::wait_for("the alert resolved", || async {
        let alerts = get_alerts().await?;
        let active = alerts
            .as_array()?
            .iter()
            .any(|a| a["labels"]["check"] == "mx1-smtp");
        (!active).then_some(())
    })
    .await
    .unwrap();
    let _ = am.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), am.wait()).await;
}
