//! The one TOML config loader: unknown fields are errors, and every error
//! names the file, the line and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The offending field, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Reads and parses `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        line: None,
        field: None,
        message: e.to_string(),
    })?;
    let value = parse(path, &text)?;
    Ok((value, text))
}

/// Parses `text` (read from `path`).
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let message = e.message().trim().to_owned();
        let field = field_in(&message).or_else(|| value_path(text, e.span()?.start));
        ConfigError {
            path: path.to_owned(),
            line,
            field,
            message,
        }
    })
}

/// The dotted path of the value at byte `at` that a type or value error
/// points at: the table it is in (`[[route]]` → `route`), the key at the
/// start of its line, and the key of the inline table entry it is in
/// (`escalate = [{ after = "soon" }]` → `route.escalate.after`).
fn value_path(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split('=').next()?.trim();
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let mut path: Vec<&str> = Vec::new();
    let header = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim())
    });
    path.extend(header);
    path.push(key);
    // Inside an inline table: the nearest `name =` before the value.
    let before = text[line_start..at].trim_end().strip_suffix('=');
    if let Some(before) = before {
        let inner = before
            .trim_end()
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .next()
            .unwrap_or("");
        if !inner.is_empty() && inner != key {
            path.push(inner);
        }
    }
    Some(path.join("."))
}

/// The field a serde message names (`unknown field \`x\``, `missing field \`y\``).
fn field_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    let is_field_error =
        message.starts_with("unknown field") || message.starts_with("missing field");
    is_field_error.then(|| message[start..end].to_owned())
}

/// An error about `field` found after parsing (a value out of range, say):
/// the line is where the field is set, if it is set in the file.
pub fn invalid(path: &Path, text: &str, field: &str, message: impl Into<String>) -> ConfigError {
    let key = field.rsplit('.').next().unwrap_or(field);
    let line = text.lines().position(|l| {
        let l = l.trim_start();
        l.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    ConfigError {
        path: path.to_owned(),
        line: line.map(|l| l + 1),
        field: Some(field.to_owned()),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        port: u16,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        depth: u32,
    }

    fn err(text: &str) -> ConfigError {
        parse::<Sample>(Path::new("x.toml"), text).unwrap_err()
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let cases = [
            ("name = \"a\"\nport = 1\nprot = 2\n", 3, "prot"),
            ("name = \"a\"\nport = 70000\n", 2, "port"),
            ("name = \"a\"\nport = 1\n[inner]\ndepht = 1\n", 4, "depht"),
            ("name = \"a\"\nport = \"x\"\n", 2, "port"),
            (
                "name = \"a\"\nport = 1\n[inner]\ndepth = \"deep\"\n",
                4,
                "inner.depth",
            ),
            (
                "name = \"a\"\nport = 1\nlist = [{ depth = -1 }]\n",
                3,
                "list.depth",
            ),
        ];
        for (text, line, field) in cases {
            let e = err(text);
            assert_eq!(
                (e.line, e.field.as_deref()),
                (Some(line), Some(field)),
                "{text:?}: {e}"
            );
            assert!(
                e.to_string()
                    .starts_with(&format!("x.toml:{line}: field `{field}`")),
                "{e}"
            );
        }
        let e = err("name = \"a\"\n");
        assert_eq!(e.field.as_deref(), Some("port"), "{e}");
        let e = err("name = \n");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn invalid_points_at_the_field_line() {
        let e = invalid(
            Path::new("x.toml"),
            "a = 1\n  port = 3\n",
            "raft.port",
            "too small",
        );
        assert_eq!(e.to_string(), "x.toml:2: field `raft.port`: too small");
    }
}
