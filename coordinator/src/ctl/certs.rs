//! `vantagectl certs`: the deployment CA and role certificates, as files.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use vantage_common::identity::{Identity, valid_label};
use vantage_common::pki::{self, CA_DAYS, Ca, LEAF_DAYS};

use super::Format;

/// Certificate commands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the deployment CA (ca.pem, ca.key) in DIR.
    Init {
        /// Directory for the CA files.
        #[arg(long)]
        dir: PathBuf,
        /// CA lifetime in days.
        #[arg(long, default_value_t = CA_DAYS)]
        days: u32,
    },
    /// Issue a certificate signed by the CA in DIR.
    Issue {
        /// Role and names.
        #[command(subcommand)]
        role: IssueRole,
        /// Directory holding ca.pem and ca.key.
        #[arg(long, global = true, default_value = ".")]
        dir: PathBuf,
        /// Where to write ROLE-NAME.pem/.key (default: DIR).
        #[arg(long, global = true)]
        out: Option<PathBuf>,
        /// Lifetime in days.
        #[arg(long, global = true, default_value_t = LEAF_DAYS)]
        days: u32,
    },
    /// Show role, region, name and expiry of a certificate.
    Inspect {
        /// PEM file.
        file: PathBuf,
    },
}

/// Roles that can be issued.
#[derive(Debug, Subcommand)]
pub enum IssueRole {
    /// A coordinator node.
    Coordinator {
        /// Raft node id.
        #[arg(long)]
        id: u64,
        /// DNS name clients dial (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// IP address clients dial (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
    },
    /// An agent in a region.
    Agent {
        /// Region (ru, eu, us...).
        #[arg(long)]
        region: String,
        /// Agent name.
        #[arg(long)]
        name: String,
    },
    /// An operator.
    Operator {
        /// Operator name.
        #[arg(long)]
        name: String,
    },
}

/// Runs a certs command.
pub fn run(command: CertsCommand, format: Format) -> Result<()> {
    match command {
        CertsCommand::Init { dir, days } => {
            Ca::create(&dir, days)?;
            println!(
                "created CA {} and {}",
                dir.join("ca.pem").display(),
                dir.join("ca.key").display()
            );
        }
        CertsCommand::Issue {
            role,
            dir,
            out,
            days,
        } => {
            let (identity, dns, ips) = match role {
                IssueRole::Coordinator { id, dns, ip } => {
                    if id == 0 {
                        bail!("invalid value '0' for --id: node ids start at 1");
                    }
                    (Identity::Coordinator { id }, dns, ip)
                }
                IssueRole::Agent { region, name } => {
                    for (flag, v) in [("--region", &region), ("--name", &name)] {
                        if !valid_label(v) {
                            bail!("invalid value '{v}' for {flag}: use a-z, 0-9 and '-'");
                        }
                    }
                    (Identity::Agent { region, name }, vec![], vec![])
                }
                IssueRole::Operator { name } => {
                    if !valid_label(&name) {
                        bail!("invalid value '{name}' for --name: use a-z, 0-9 and '-'");
                    }
                    (Identity::Operator { name }, vec![], vec![])
                }
            };
            let ca = Ca::load(&dir)?;
            let issued = ca.issue(&identity, &dns, &ips, days)?;
            let (cert, key) =
                issued.write(out.as_deref().unwrap_or(&dir), &pki::file_stem(&identity))?;
            println!("issued {identity}: {} {}", cert.display(), key.display());
        }
        CertsCommand::Inspect { file } => {
            let info = pki::inspect(&file)?;
            let (region, name) = match &info.identity {
                Identity::Agent { region, name } => (Some(region.clone()), name.clone()),
                other => (None, other.name()),
            };
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "role": info.identity.role(), "region": region, "name": name,
                        "uri": info.identity.uri(), "subject": info.subject,
                        "not_after": info.not_after, "days_left": info.days_left,
                    })
                ),
                Format::Text => {
                    println!("role:      {}", info.identity.role());
                    if let Some(region) = region {
                        println!("region:    {region}");
                    }
                    println!("name:      {name}");
                    println!("uri:       {}", info.identity.uri());
                    println!("subject:   {}", info.subject);
                    println!(
                        "expires:   {} ({} days left)",
                        info.not_after, info.days_left
                    );
                }
            }
        }
    }
    Ok(())
}
