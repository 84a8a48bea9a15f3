//! Security options shared by `serve` and `door`: for GSI the host credential, the trust roots
//! and the grid-mapfile (GSI is on when a host certificate is given); for FTPS a TLS
//! certificate (`AUTH TLS` is offered when one is given).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use crate::door::GsiConfig;
use crate::gsi::{Gridmap, ServerCredentials, TrustPaths};

/// `gsiftp://` (GSI) options.
#[derive(Debug, Args, Default)]
pub struct GsiArgs {
    /// Host certificate (PEM, chain after it) for GSI logins: turns `AUTH GSSAPI` on.
    #[arg(long, env = "X509_USER_CERT", value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Host key (PEM) for --cert [default: /etc/grid-security/hostkey.pem].
    #[arg(long, env = "X509_USER_KEY", value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// Trusted CA certificates and their CRLs, by subject hash
    /// [default: /etc/grid-security/certificates].
    #[arg(long, env = "X509_CERT_DIR", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// grid-mapfile: certificate subjects and the local users they log in as
    /// [default: /etc/grid-security/grid-mapfile].
    #[arg(long, env = "GRIDMAP", value_name = "FILE")]
    pub gridmap: Option<PathBuf>,
    /// Refuse GSI logins with a limited proxy (globus-url-copy and gfal2 delegate limited
    /// proxies, but log in with the user's own, usually full, one).
    #[arg(long)]
    pub refuse_limited_proxies: bool,
    /// Certificate (PEM, chain after it) for FTPS: turns `AUTH TLS` on for password users.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// Key (PEM) for --tls-cert [default: the key in the --tls-cert file].
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Refuse USER before AUTH TLS (or GSI) on control connections not from loopback.
    #[arg(long)]
    pub require_tls: bool,
}

/// Says at start whether this kernel could put TLS records on sockets itself (the `tls` upper
/// layer protocol); PROT S/P run in user space either way for now.
fn log_kernel_tls() {
    let ulps = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap_or_default();
    let offered = ulps.split_whitespace().any(|u| u == "tls");
    tracing::info!(
        kernel_tls = offered,
        "PROT S/P data channels: TLS in user space through a relay{}",
        if offered {
            " (this kernel offers kernel TLS; not used yet)"
        } else {
            ""
        }
    );
}

impl GsiArgs {
    /// Puts the GSI and FTPS settings into the door's configuration.
    pub(super) fn apply(&self, config: &mut crate::door::DoorConfig) -> Result<()> {
        config.gsi = self.load()?;
        config.tls = self.load_tls()?;
        config.require_tls = self.require_tls;
        if self.require_tls && config.tls.is_none() && config.gsi.is_none() {
            anyhow::bail!("--require-tls needs --tls-cert (or a GSI host certificate)");
        }
        if config.tls.is_some() || config.gsi.is_some() {
            log_kernel_tls();
        }
        Ok(())
    }

    /// What a reload replaces: these settings loaded afresh, with the users given.
    pub(super) fn live(&self, users: crate::door::auth::Users) -> Result<crate::door::Live> {
        Ok(crate::door::Live {
            users,
            gsi: self.load()?,
            tls: self.load_tls()?,
        })
    }

    fn load_tls(&self) -> Result<Option<Arc<crate::gsi::FtpsContext>>> {
        let Some(cert) = &self.tls_cert else {
            return Ok(None);
        };
        let key = self.tls_key.as_ref().unwrap_or(cert);
        let context = crate::gsi::FtpsContext::load(cert, key).context("FTPS certificate")?;
        tracing::info!(subject = %context.subject, "FTPS on: AUTH TLS offered");
        Ok(Some(Arc::new(context)))
    }

    /// Loads the credential, trust roots and map when a certificate is configured.
    fn load(&self) -> Result<Option<Arc<GsiConfig>>> {
        let Some(cert) = &self.cert else {
            return Ok(None);
        };
        let key = self
            .key
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/grid-security/hostkey.pem"));
        let trust = TrustPaths {
            ca_dir: self
                .ca_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::gsi::creds::DEFAULT_CA_DIR)),
        };
        let gridmap_path = self
            .gridmap
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/grid-security/grid-mapfile"));
        let credentials = ServerCredentials::load(cert, &key, &trust, None).context("GSI host credential")?;
        let gridmap = Gridmap::load(&gridmap_path)?;
        tracing::info!(
            subject = %credentials.subject,
            ca_dir = %trust.ca_dir.display(),
            gridmap = %gridmap_path.display(),
            subjects = gridmap.len(),
            "GSI on: AUTH GSSAPI offered"
        );
        Ok(Some(Arc::new(GsiConfig {
            credentials,
            trust,
            gridmap,
            refuse_limited: self.refuse_limited_proxies,
        })))
    }
}
