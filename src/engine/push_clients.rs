//! The push clients the engine sends through, made from its configuration: with an
//! `apns` section one APNs client per environment in use, with an `fcm` section one
//! FCM client per service account.

use std::collections::BTreeMap;
use std::path::Path;

use super::config::{ApnsConfig, AuthConfig, EngineConfig, FcmConfig};
use super::{ConfigError, EngineError};
use crate::apns::{ApnsClient, Auth, ClientConfig, Endpoint};
use crate::fcm::{FcmClient, ServiceAccount};
use crate::push_client::{check_tls, Settings};

pub(crate) struct Clients {
    max_pending: usize,
    apns: Option<ApnsClients>,
    fcm: Option<FcmClients>,
}

/// With `endpoint: production` the sandbox client (for `apns.dev` devices) is
/// created on first use.
struct ApnsClients {
    by_provider: bool,
    template: ClientConfig,
    main: ApnsClient,
    sandbox: Option<ApnsClient>,
}

/// `fcm.projects`' clients, and the one of `fcm.service_account_file` for the others.
struct FcmClients {
    default: Option<FcmClient>,
    by_project: BTreeMap<String, FcmClient>,
}

fn config_error(path: String, message: String) -> EngineError {
    EngineError::Config(ConfigError { path, message })
}

fn read_file(path: &Path, key: &str) -> Result<String, EngineError> {
    std::fs::read_to_string(path).map_err(|e| {
        config_error(
            format!("apns.auth.{key}"),
            format!("cannot read {}: {e}", path.display()),
        )
    })
}

fn pkcs12_auth(
    p12_file: &Path,
    password_file: Option<&Path>,
    password_env: Option<&str>,
) -> Result<Auth, EngineError> {
    let bad = |key: &str, message: String| config_error(format!("apns.auth.{key}"), message);
    let p12 = std::fs::read(p12_file).map_err(|e| {
        bad(
            "p12_file",
            format!("cannot read {}: {e}", p12_file.display()),
        )
    })?;
    let password = match (password_file, password_env) {
        (Some(file), _) => read_file(file, "password_file")?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            bad(
                "password_env",
                format!("the environment variable {var} is not set"),
            )
        })?,
        (None, None) => String::new(),
    };
    Auth::from_pkcs12(&p12, &password)
        .map_err(|e| bad("p12_file", format!("{}: {e}", p12_file.display())))
}

/// Every parked call may have a push in flight per device.
fn max_pending(cfg: &EngineConfig) -> usize {
    (cfg.park.max_total * 2).clamp(1024, 1_000_000)
}

/// The APNs client's settings, with the credentials the config names read.
fn apns_config(apns: &ApnsConfig, cfg: &EngineConfig) -> Result<ClientConfig, EngineError> {
    let auth = match &apns.auth {
        AuthConfig::Token {
            key_file,
            key_id,
            team_id,
        } => Auth::Token {
            key_pem: read_file(key_file, "key_file")?,
            key_id: key_id.clone(),
            team_id: team_id.clone(),
        },
        AuthConfig::Certificate {
            cert_file,
            key_file,
        } => Auth::Certificate {
            cert_pem: read_file(cert_file, "cert_file")?,
            key_pem: read_file(key_file, "key_file")?,
        },
        AuthConfig::Pkcs12 {
            p12_file,
            password_file,
            password_env,
        } => pkcs12_auth(p12_file, password_file.as_deref(), password_env.as_deref())?,
    };
    let mut template = ClientConfig::new(apns.endpoint.clone(), auth);
    template.ca_file = apns.ca_file.clone();
    template.connections = apns.connections;
    template.worker_threads = apns.worker_threads;
    template.ping_interval = apns.ping_interval;
    template.ping_timeout = apns.ping_timeout;
    template.max_pending = max_pending(cfg);
    Ok(template)
}

/// The service accounts `fcm` names: the default one (None when absent) and each project's.
#[allow(clippy::type_complexity)]
fn fcm_accounts(
    fcm: &FcmConfig,
) -> Result<(Option<ServiceAccount>, BTreeMap<String, ServiceAccount>), EngineError> {
    let read = |path: &Path, key: String| {
        let text = std::fs::read(path).map_err(|e| {
            config_error(key.clone(), format!("cannot read {}: {e}", path.display()))
        })?;
        ServiceAccount::from_json(&text)
            .map_err(|e| config_error(key, format!("{}: {e}", path.display())))
    };
    let default = fcm
        .service_account_file
        .as_deref()
        .map(|p| read(p, "fcm.service_account_file".into()))
        .transpose()?;
    let by_project = fcm
        .projects
        .iter()
        .map(|(project, p)| Ok((project.clone(), read(p, format!("fcm.projects.{project}"))?)))
        .collect::<Result<_, EngineError>>()?;
    Ok((default, by_project))
}

fn fcm_settings(fcm: &FcmConfig, cfg: &EngineConfig) -> Settings {
    let mut s = Settings::new(&fcm.host, fcm.port);
    s.ca_file = fcm.ca_file.clone();
    s.connections = fcm.connections;
    s.worker_threads = fcm.worker_threads;
    // The health checks of `apns`, which names them, else the defaults.
    if let Some(apns) = &cfg.apns {
        s.ping_interval = apns.ping_interval;
        s.ping_timeout = apns.ping_timeout;
    }
    s.max_pending = max_pending(cfg);
    s
}

/// What `Clients::new` would refuse, without starting a thread or connecting:
/// the credentials read and parsed, the CA files.
pub(crate) fn check(cfg: &EngineConfig) -> Result<(), EngineError> {
    if let Some(apns) = &cfg.apns {
        ApnsClient::check(&apns_config(apns, cfg)?)
            .map_err(|e| EngineError::Apns(e.to_string()))?;
    }
    if let Some(fcm) = &cfg.fcm {
        fcm_accounts(fcm)?;
        check_tls(&fcm_settings(fcm, cfg)).map_err(|e| EngineError::Fcm(e.to_string()))?;
    }
    Ok(())
}

impl Clients {
    pub(crate) fn new(cfg: &EngineConfig) -> Result<Clients, EngineError> {
        let apns = match &cfg.apns {
            None => None,
            Some(apns) => {
                let template = apns_config(apns, cfg)?;
                let main = ApnsClient::new(template.clone())
                    .map_err(|e| EngineError::Apns(e.to_string()))?;
                Some(ApnsClients {
                    by_provider: apns.endpoint == Endpoint::Production,
                    template,
                    main,
                    sandbox: None,
                })
            }
        };
        let fcm = match &cfg.fcm {
            None => None,
            Some(fcm) => {
                let (default, by_project) = fcm_accounts(fcm)?;
                let settings = fcm_settings(fcm, cfg);
                let start = |account| {
                    FcmClient::new(account, &settings).map_err(|e| EngineError::Fcm(e.to_string()))
                };
                Some(FcmClients {
                    default: default.map(start).transpose()?,
                    by_project: by_project
                        .into_iter()
                        .map(|(project, account)| Ok((project, start(account)?)))
                        .collect::<Result<_, EngineError>>()?,
                })
            }
        };
        Ok(Clients {
            max_pending: max_pending(cfg),
            apns,
            fcm,
        })
    }

    /// Pushes any one client accepts in flight.
    pub(crate) fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// The APNs client for a device of `provider` (`apns` or `apns.dev`).
    pub(crate) fn apns(&mut self, provider: &str) -> Result<&ApnsClient, String> {
        let apns = self
            .apns
            .as_mut()
            .ok_or("no apns section in the configuration")?;
        if !apns.by_provider || provider != "apns.dev" {
            return Ok(&apns.main);
        }
        if apns.sandbox.is_none() {
            let mut cfg = apns.template.clone();
            cfg.endpoint = Endpoint::Sandbox;
            apns.sandbox = Some(ApnsClient::new(cfg).map_err(|e| format!("sandbox client: {e}"))?);
        }
        Ok(apns.sandbox.as_ref().expect("just set"))
    }

    /// The FCM client for a device of Firebase `project`.
    pub(crate) fn fcm(&self, project: &str) -> Result<&FcmClient, String> {
        let fcm = self
            .fcm
            .as_ref()
            .ok_or("no fcm section in the configuration")?;
        fcm.by_project
            .get(project)
            .or(fcm.default.as_ref())
            .ok_or_else(|| format!("no FCM service account for project {project}"))
    }
}
