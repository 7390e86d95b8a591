//! A real Prometheus (the Debian package) for one test: its own
//! configuration and storage in a temporary directory, listening on a
//! loopback port chosen at start, scraping the given targets every second,
//! with the remote-write receiver switched on; and its HTTP query API.
//! [`Prometheus::binary`] is `None` where the package is missing (see
//! [`crate::missing`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster::wait_for;

/// A running Prometheus, killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
    http: reqwest::Client,
}

/// One sample of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Labels, `__name__` included.
    pub labels: BTreeMap<String, String>,
    /// Its timestamp (ms since the epoch).
    pub at_ms: i64,
    /// Its value.
    pub value: f64,
}

impl Prometheus {
    /// The installed `prometheus`, if any.
    pub fn binary() -> Option<&'static str> {
        crate::find_program(&["/usr/bin/prometheus"])
    }

    /// Starts one scraping `jobs` (job name → `host:port` targets) every
    /// second, and waits until it is ready.
    pub async fn start(jobs: &[(&str, Vec<String>)]) -> Result<Self> {
        let binary = Self::binary().context("prometheus is not installed")?;
        let dir = tempfile::tempdir()?;
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for (job, targets) in jobs {
            let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            let _ = write!(
                config,
                "  - job_name: '{job}'\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            );
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let prometheus = Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            dir,
            _child: child,
            http: vantage_coordinator::alert::http_client()?,
        };
        let ready = wait_for("prometheus ready", || async {
            let r = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        if let Err(e) = ready {
            bail!("{e}: {}", prometheus.log());
        }
        Ok(prometheus)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    /// Its remote-write endpoint.
    pub fn remote_write_url(&self) -> String {
        format!("{}/api/v1/write", self.base)
    }

    /// `GET /api/v1/PATH` with `query` parameters: the `data` of a
    /// successful answer.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.base), query)?;
        let r = self.http.get(url).send().await?;
        let v: Value = r.json().await?;
        if v["status"] != "success" {
            bail!("{path} {query:?}: {v}");
        }
        Ok(v["data"].clone())
    }

    /// An instant query's samples.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        let data = self.api("query", &[("query", promql)]).await?;
        let samples = data["result"]
            .as_array()
            .with_context(|| format!("{promql}: not a vector: {data}"))?
            .iter()
            .filter_map(|s| sample(&s["metric"], &s["value"]))
            .collect();
        Ok(samples)
    }

    /// Every sample of the series `selector` selects over the last
    /// `range` (`5m`), oldest first per series.
    pub async fn query_range(&self, selector: &str, range: &str) -> Result<Vec<Sample>> {
        let promql = format!("{selector}[{range}]");
        let data = self.api("query", &[("query", &promql)]).await?;
        let mut samples = Vec::new();
        for series in data["result"]
            .as_array()
            .with_context(|| format!("{promql}: not a matrix: {data}"))?
        {
            for value in series["values"].as_array().into_iter().flatten() {
                samples.extend(sample(&series["metric"], value));
            }
        }
        Ok(samples)
    }
}

/// A sample from the API's `metric` object and `[seconds, "value"]` pair.
fn sample(metric: &Value, value: &Value) -> Option<Sample> {
    let labels = metric
        .as_object()?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    let at_ms = (value.get(0)?.as_f64()? * 1000.0).round() as i64;
    let value = value.get(1)?.as_str()?.parse().ok()?;
    Some(Sample {
        labels,
        at_ms,
        value,
    })
}
