//! Secrets named by reference: a setting `<name>_env = "VAR"` or
//! `<name>_file = "/path"` says where the process that needs the value
//! (a coordinator sending an alert, an agent logging in to a mail server)
//! reads it, at the moment it needs it. Declarations, the replicated state
//! and every listing hold the reference only; neither [`Secret`] nor
//! [`SecretError`] ever prints a value.

use std::path::PathBuf;

/// Where a secret is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// An environment variable of the reading process.
    Env(String),
    /// A file (its content, surrounding whitespace removed).
    File(PathBuf),
}

/// Why a secret reference is unusable or its value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Both `<name>_env` and `<name>_file` are set.
    #[error("set {0}_env or {0}_file, not both")]
    Both(String),
    /// `<name>_env` names no variable.
    #[error("{0}_env is empty")]
    EmptyName(String),
    /// Neither is set where one is needed.
    #[error("{0}_env or {0}_file is required")]
    Missing(String),
    /// The variable is not set (or not UTF-8).
    #[error("environment variable {0} is not set")]
    Unset(String),
    /// The file cannot be read.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The value is empty once trimmed (the reference is named).
    #[error("{0} is empty")]
    Empty(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The reference only: a secret's value is never printed.
        match self {
            Secret::Env(v) => write!(f, "env {v}"),
            Secret::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

impl Secret {
    /// From a `<name>_env` / `<name>_file` pair; `required` fails when
    /// neither is set.
    pub fn pick(
        name: &str,
        env: &Option<String>,
        file: &Option<PathBuf>,
        required: bool,
    ) -> Result<Option<Secret>, SecretError> {
        match (env, file) {
            (Some(_), Some(_)) => Err(SecretError::Both(name.to_owned())),
            (Some(v), None) if v.is_empty() => Err(SecretError::EmptyName(name.to_owned())),
            (Some(v), None) => Ok(Some(Secret::Env(v.clone()))),
            (None, Some(p)) => Ok(Some(Secret::File(p.clone()))),
            (None, None) if required => Err(SecretError::Missing(name.to_owned())),
            (None, None) => Ok(None),
        }
    }

    /// Reads the value now.
    pub fn read(&self) -> Result<String, SecretError> {
        let value = match self {
            Secret::Env(v) => std::env::var(v).map_err(|_| SecretError::Unset(v.clone()))?,
            Secret::File(p) => std::fs::read_to_string(p).map_err(|e| SecretError::Unreadable {
                path: p.display().to_string(),
                reason: e.to_string(),
            })?,
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(SecretError::Empty(format!("{self:?}")));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_late_and_never_printed() {
        let path = std::env::temp_dir().join(format!("vantage-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cr3t-value\n").unwrap_or_default();
        let s = Secret::File(path.clone());
        assert_eq!(s.read().ok().as_deref(), Some("s3cr3t-value"));
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let _ = std::fs::remove_file(&path);
        assert!(matches!(s.read(), Err(SecretError::Unreadable { .. })));
        let missing = Secret::Env("VANTAGE_TEST_SURELY_UNSET".into());
        assert_eq!(
            missing.read().err(),
            Some(SecretError::Unset("VANTAGE_TEST_SURELY_UNSET".into()))
        );
    }

    #[test]
    fn a_reference_is_one_of_env_or_file() {
        let env = Some("VAR".to_owned());
        let file = Some(PathBuf::from("/etc/x"));
        assert_eq!(
            Secret::pick("password", &env, &file, false),
            Err(SecretError::Both("password".into()))
        );
        assert_eq!(
            Secret::pick("password", &None, &None, true)
                .err()
                .map(|e| e.to_string()),
            Some("password_env or password_file is required".into())
        );
        assert_eq!(Secret::pick("password", &None, &None, false), Ok(None));
        assert_eq!(
            Secret::pick("password", &Some(String::new()), &None, false),
            Err(SecretError::EmptyName("password".into()))
        );
        assert_eq!(
            Secret::pick("password", &None, &file, true),
            Ok(Some(Secret::File("/etc/x".into())))
        );
    }
}
