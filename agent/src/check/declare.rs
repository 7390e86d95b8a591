//! A check as operators write it — kind, target, interval, params — turned
//! into the probe spec. Shared by `checks.toml` (coordinator) and an
//! agent's own control checks, so both accept exactly the same thing.

use super::CheckSpec;

/// Which spec field the `target` of a kind fills.
fn target_field(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "smtp" | "tls" | "tcp" => "host",
        "dns" => "name",
        "mx" | "spf" | "dkim" | "dmarc" => "domain",
        "ptr" => "ip",
        "dnsbl" => "target",
        _ => return None,
    })
}

/// The probe for `kind` at `target` with kind-specific `params`, checked
/// by the spec types themselves (unknown params are errors).
pub fn spec_from_parts(
    kind: &str,
    target: &str,
    params: &toml::Table,
) -> Result<CheckSpec, String> {
    let field = target_field(kind).ok_or_else(|| {
        format!("unknown kind `{kind}` (smtp, tls, dns, mx, ptr, tcp, spf, dkim, dmarc, dnsbl)")
    })?;
    let mut table = params.clone();
    for reserved in ["kind", field] {
        if table.contains_key(reserved) {
            return Err(format!(
                "params may not set `{reserved}` (use the check's kind/target)"
            ));
        }
    }
    table.insert("kind".into(), kind.into());
    table.insert(field.into(), target.into());
    toml::Value::Table(table)
        .try_into::<CheckSpec>()
        .map_err(|e| format!("params: {}", e.message().trim()))
}

/// Seconds in `60s`, `5m`, `1h`, `1d`, or a bare number of seconds.
pub fn parse_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 's') => (&s[..i], 1),
        (i, 'm') => (&s[..i], 60),
        (i, 'h') => (&s[..i], 3600),
        (i, 'd') => (&s[..i], 86_400),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}
