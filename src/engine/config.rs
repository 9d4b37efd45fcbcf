//! The engine's JSON configuration. Parsed by hand over `serde_json::Value` so
//! that every error names the exact key path (`apns.auth.key_id: missing`).

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::contact::check_topic;
use super::push::PayloadTemplate;
use crate::apns::Endpoint;
use crate::fcm::valid_project_id;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `apns`: iPhones; `None` (absent, allowed with `fcm`): `pn-provider=apns` is not
    /// served (555).
    pub apns: Option<ApnsConfig>,
    /// `fcm`: Android devices; `None` (absent): `pn-provider=fcm` is not served (555).
    pub fcm: Option<FcmConfig>,
    pub park: ParkConfig,
    pub push: PushConfig,
    pub store: StoreConfig,
    /// `cluster`: bindings and wakes shared with other nodes through Redis;
    /// `None` (absent): a single node, no Redis code runs.
    pub cluster: Option<ClusterConfig>,
    /// Parsed for the host bridge (the ffi layer applies it to its logger); the
    /// engine itself never installs a logger.
    pub log_level: log::LevelFilter,
}

#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// Where pushes go. `Production` routes each device by its RFC 8599
    /// pn-provider (`apns` → production, `apns.dev` → sandbox); any other
    /// endpoint gets every push whatever the device says.
    pub endpoint: Endpoint,
    pub ca_file: Option<PathBuf>,
    pub auth: AuthConfig,
    pub connections: usize,
    pub worker_threads: usize,
    /// A connection idle this long gets a PING; no answer within
    /// `ping_timeout` and it is replaced (NATs and firewalls drop idle flows).
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// `apns.topics`: when set, a device may only register one of these topics.
    pub topics: Option<Vec<String>>,
}

/// Firebase Cloud Messaging (HTTP v1) for `pn-provider=fcm` devices, whose `pn-param`
/// names their Firebase project. Paths only, like `apns.auth`.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// The service-account key file for every project without one of its own.
    pub service_account_file: Option<PathBuf>,
    /// Project → its own service-account key file.
    pub projects: BTreeMap<String, PathBuf>,
    /// Google's `fcm.googleapis.com:443` unless `HOST:PORT` is given (the mock).
    pub host: String,
    pub port: u16,
    pub ca_file: Option<PathBuf>,
    pub connections: usize,
    pub worker_threads: usize,
}

impl FcmConfig {
    /// Whether a device of `project` can be pushed: it has a key file, or the default one
    /// serves it (a service account may send for other projects it was granted).
    pub fn serves(&self, project: &str) -> bool {
        self.service_account_file.is_some() || self.projects.contains_key(project)
    }
}

/// Paths only: key material is read in `Engine::new` and never kept here, so
/// Debug output of the config cannot leak a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    Token {
        key_file: PathBuf,
        key_id: String,
        team_id: String,
    },
    Certificate {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// Certificate and key in one PKCS#12 file. Its password is the first line
    /// of `password_file`, or the environment variable `password_env`, or empty.
    Pkcs12 {
        p12_file: PathBuf,
        password_file: Option<PathBuf>,
        password_env: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct ParkConfig {
    pub timeout: Duration,
    pub max_total: usize,
    pub max_per_aor: usize,
    pub reject_code: u16,
    pub reject_reason: String,
    pub push_failed_code: u16,
    pub push_failed_reason: String,
    /// A park within this long after a REGISTER of the same AOR resumes at once
    /// (the host's lookup raced with the REGISTER).
    pub recent_register: Duration,
    /// A device pushed for a call that ended before it registered is told
    /// (LateWake) if it registers within this long after the call's deadline
    /// or end, whichever is later.
    pub late_wake: Duration,
}

#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Per device: at most one push per interval; calls in between are coalesced.
    pub min_interval: Duration,
    pub payload_template: PayloadTemplate,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    pub max_age_days: u32,
    /// An unREGISTER (expires 0) keeps the push binding instead of removing it
    /// (for apps that unregister when they go to the background).
    pub unregister_keeps_binding: bool,
    /// A REGISTER that adds a binding beyond this evicts the AOR's least recently
    /// registered one (an app reinstalled again and again leaves bindings behind).
    pub max_devices_per_aor: usize,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port/db` or `redis+unix:///path`; Debug output and
    /// logs never show its password (`redis_url_shown`).
    pub redis_url: String,
    /// This node's name: its own messages are ignored and its push claims carry it.
    pub node_id: String,
    /// Put before every Redis key and channel name.
    pub key_prefix: String,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &self.redis_url_shown())
            .field("node_id", &self.node_id)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

impl ClusterConfig {
    /// The URL without its password, for logs.
    pub fn redis_url_shown(&self) -> String {
        match (self.redis_url.split_once("://"), self.redis_url.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &self.redis_url[at..]),
            _ => self.redis_url.clone(),
        }
    }
}

/// A configuration error naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// One JSON object being read: keys are taken out as they are parsed, and
/// `finish` reports whatever is left as unknown.
struct Section {
    path: String,
    map: Map<String, Value>,
}

impl Section {
    fn new(path: &str, value: Value) -> Result<Section, ConfigError> {
        match value {
            Value::Object(map) => Ok(Section {
                path: path.to_string(),
                map,
            }),
            other => Err(err(
                path,
                format!("expected an object, found {}", kind(&other)),
            )),
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// The value of `key`, `None` when absent or null.
    fn take(&mut self, key: &str) -> Option<(String, Value)> {
        let path = self.key_path(key);
        match self.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some((path, v)),
        }
    }

    fn section(&mut self, key: &str) -> Result<Section, ConfigError> {
        let path = self.key_path(key);
        Section::new(
            &path,
            self.take(key).map_or(Value::Object(Map::new()), |(_, v)| v),
        )
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s)),
            Some((p, v)) => Err(err(&p, format!("expected a string, found {}", kind(&v)))),
        }
    }

    /// A key id or team id: 10 ASCII letters and digits, as Apple issues them.
    fn apple_id(&mut self, key: &str) -> Result<String, ConfigError> {
        let id = self.required_string(key)?;
        if id.len() != 10 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err(
                &self.key_path(key),
                "must be 10 letters and digits, as Apple shows it",
            ));
        }
        Ok(id)
    }

    fn required_string(&mut self, key: &str) -> Result<String, ConfigError> {
        let path = self.key_path(key);
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(err(&path, "must not be empty")),
            None => Err(err(&path, "missing")),
        }
    }

    fn uint(&mut self, key: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        match self.take(key) {
            None => Ok(default),
            Some((p, Value::Number(n))) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(v),
                _ => Err(err(
                    &p,
                    format!("expected an integer from {min} to {max}, found {n}"),
                )),
            },
            Some((p, v)) => Err(err(&p, format!("expected an integer, found {}", kind(&v)))),
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.take(key) {
            None => Ok(default),
            Some((_, Value::Bool(b))) => Ok(b),
            Some((p, v)) => Err(err(&p, format!("expected a boolean, found {}", kind(&v)))),
        }
    }

    fn finish(self) -> Result<(), ConfigError> {
        match self.map.keys().next() {
            // `park.` or, at the top, nothing at all would name no key.
            Some(k) if k.is_empty() => Err(err(&self.path, "unknown key \"\"")),
            Some(k) => Err(err(&self.key_path(k), "unknown key")),
            None => Ok(()),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn sip_code(s: &mut Section, key: &str) -> Result<u16, ConfigError> {
    // Only final failure responses make sense for a call we give up on.
    Ok(s.uint(key, 480, 400, 699)? as u16)
}

fn reason_phrase(s: &mut Section, key: &str) -> Result<String, ConfigError> {
    let path = s.key_path(key);
    let text = s
        .string(key)?
        .unwrap_or_else(|| "Temporarily Unavailable".to_string());
    // It goes into a SIP status line: no control characters.
    if text.is_empty() || text.chars().any(|c| c.is_control()) {
        return Err(err(&path, "must be a non-empty single line"));
    }
    Ok(text)
}

/// `apns.topics`: a non-empty list of VoIP topics.
fn topics(s: &mut Section) -> Result<Option<Vec<String>>, ConfigError> {
    let Some((path, value)) = s.take("topics") else {
        return Ok(None);
    };
    let list = match value {
        Value::Array(list) if !list.is_empty() => list,
        v => {
            let found = kind(&v);
            return Err(err(
                &path,
                format!("expected a non-empty array of topics, found {found}"),
            ));
        }
    };
    let topics = list
        .into_iter()
        .map(|t| match t {
            Value::String(t) => check_topic(&t)
                .map(|()| t)
                .map_err(|e| err(&path, e.message())),
            v => Err(err(
                &path,
                format!("expected topic strings, found {}", kind(&v)),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(topics))
}

fn parse_auth(mut s: Section) -> Result<AuthConfig, ConfigError> {
    let auth = if s.map.contains_key("p12_file") {
        let p12_file = s.required_string("p12_file")?.into();
        let password_file = s.string("password_file")?.map(PathBuf::from);
        let password_env = s.string("password_env")?;
        if password_file.is_some() && password_env.is_some() {
            let why = "password_file and password_env exclude each other";
            return Err(err(&s.path, why));
        }
        AuthConfig::Pkcs12 {
            p12_file,
            password_file,
            password_env,
        }
    } else if s.map.contains_key("cert_file") {
        AuthConfig::Certificate {
            cert_file: s.required_string("cert_file")?.into(),
            key_file: s.required_string("key_file")?.into(),
        }
    } else {
        AuthConfig::Token {
            key_file: s.required_string("key_file")?.into(),
            key_id: s.apple_id("key_id")?,
            team_id: s.apple_id("team_id")?,
        }
    };
    s.finish()?;
    Ok(auth)
}

/// A project as `pn-param` names it: its id, or its number (FCM takes
/// `projects/{project_number}` too, "for legacy support").
pub(crate) fn valid_fcm_project(project: &str) -> bool {
    valid_project_id(project)
        || (!project.is_empty()
            && project.len() <= 20
            && project.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_apns(mut a: Section) -> Result<ApnsConfig, ConfigError> {
    let endpoint_path = a.key_path("endpoint");
    let endpoint = match a.string("endpoint")? {
        Some(t) => Endpoint::parse(&t).map_err(|m| err(&endpoint_path, m))?,
        None => Endpoint::Production,
    };
    let ca_file = a.string("ca_file")?.map(PathBuf::from);
    let auth_path = a.key_path("auth");
    if !a.map.contains_key("auth") {
        return Err(err(&auth_path, "missing"));
    }
    let auth = parse_auth(a.section("auth")?)?;
    let connections = a.uint("connections", 1, 1, 64)? as usize;
    let worker_threads = a.uint("worker_threads", 1, 1, 64)? as usize;
    let ping_interval = Duration::from_secs(a.uint("ping_interval_s", 60, 1, 3600)?);
    let ping_timeout = Duration::from_secs(a.uint("ping_timeout_s", 10, 1, 300)?);
    let topics = topics(&mut a)?;
    a.finish()?;
    Ok(ApnsConfig {
        endpoint,
        ca_file,
        auth,
        connections,
        worker_threads,
        ping_interval,
        ping_timeout,
        topics,
    })
}

fn parse_fcm(mut s: Section) -> Result<FcmConfig, ConfigError> {
    let service_account_file = s.string("service_account_file")?.map(PathBuf::from);
    let mut projects = BTreeMap::new();
    if let Some((path, v)) = s.take("projects") {
        let Value::Object(map) = v else {
            return Err(err(
                &path,
                format!("expected an object, found {}", kind(&v)),
            ));
        };
        for (project, file) in map {
            let key = format!("{path}.{project}");
            if !valid_fcm_project(&project) {
                return Err(err(&key, "not a Firebase project id or number"));
            }
            match file {
                Value::String(f) if !f.is_empty() => projects.insert(project, f.into()),
                v => {
                    return Err(err(
                        &key,
                        format!("expected a file name, found {}", kind(&v)),
                    ))
                }
            };
        }
    }
    if service_account_file.is_none() && projects.is_empty() {
        return Err(err(
            &s.key_path("service_account_file"),
            "missing (or name the key file of each project in fcm.projects)",
        ));
    }
    let endpoint_path = s.key_path("endpoint");
    let (host, port) = match s.string("endpoint")? {
        None => ("fcm.googleapis.com".to_string(), 443),
        Some(t) => match Endpoint::parse(&t) {
            Ok(Endpoint::Custom { host, port }) => (host, port),
            _ => return Err(err(&endpoint_path, format!("{t:?} is not HOST:PORT"))),
        },
    };
    let ca_file = s.string("ca_file")?.map(PathBuf::from);
    let connections = s.uint("connections", 1, 1, 64)? as usize;
    let worker_threads = s.uint("worker_threads", 1, 1, 64)? as usize;
    s.finish()?;
    Ok(FcmConfig {
        service_account_file,
        projects,
        host,
        port,
        ca_file,
        connections,
        worker_threads,
    })
}

fn parse_cluster(mut s: Section) -> Result<ClusterConfig, ConfigError> {
    let url_path = s.key_path("redis_url");
    let redis_url = s.required_string("redis_url")?;
    let schemes = ["redis://", "redis+unix://", "unix://"];
    if !schemes.iter().any(|p| redis_url.starts_with(p)) {
        return Err(err(
            &url_path,
            "must start with redis://, redis+unix:// or unix:// (no TLS)",
        ));
    }
    if let Err(e) = redis::Client::open(&*redis_url) {
        return Err(err(&url_path, format!("not a valid Redis URL: {e}")));
    }
    let id_path = s.key_path("node_id");
    let node_id = s.required_string("node_id")?;
    let id_ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
    if node_id.len() > 64 || !node_id.bytes().all(id_ok) {
        return Err(err(
            &id_path,
            "must be at most 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let prefix_path = s.key_path("key_prefix");
    let key_prefix = s
        .string("key_prefix")?
        .unwrap_or_else(|| "pushpark:".into());
    if key_prefix.len() > 64
        || key_prefix
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(err(
            &prefix_path,
            "must be at most 64 characters, without blanks or control characters",
        ));
    }
    s.finish()?;
    Ok(ClusterConfig {
        redis_url,
        node_id,
        key_prefix,
    })
}

impl EngineConfig {
    /// One JSON document; unknown keys and missing required keys are errors
    /// naming the key path.
    pub fn from_json(text: &str) -> Result<EngineConfig, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| err("", format!("invalid JSON: {e}")))?;
        let mut root = Section::new("", value)?;

        let fcm = match root.take("fcm") {
            None => None,
            Some((path, v)) => Some(parse_fcm(Section::new(&path, v)?)?),
        };
        let apns = match root.take("apns") {
            Some((path, v)) => Some(parse_apns(Section::new(&path, v)?)?),
            None if fcm.is_some() => None,
            None => {
                return Err(err(
                    "apns",
                    "missing (an engine pushes through apns, fcm or both)",
                ))
            }
        };

        let mut p = root.section("park")?;
        let park = ParkConfig {
            timeout: Duration::from_millis(p.uint("timeout_ms", 30_000, 1, 3_600_000)?),
            max_total: p.uint("max_total", 100_000, 1, 10_000_000)? as usize,
            max_per_aor: p.uint("max_per_aor", 8, 1, 10_000_000)? as usize,
            reject_code: sip_code(&mut p, "reject_code")?,
            reject_reason: reason_phrase(&mut p, "reject_reason")?,
            push_failed_code: sip_code(&mut p, "push_failed_code")?,
            push_failed_reason: reason_phrase(&mut p, "push_failed_reason")?,
            recent_register: Duration::from_millis(p.uint(
                "recent_register_ms",
                2000,
                0,
                60_000,
            )?),
            late_wake: Duration::from_millis(p.uint("late_wake_ms", 30_000, 0, 3_600_000)?),
        };
        p.finish()?;

        let mut u = root.section("push")?;
        let min_interval = Duration::from_millis(u.uint("min_interval_ms", 2000, 0, 3_600_000)?);
        let payload_template = match u.take("payload_template") {
            Some((path, v)) => PayloadTemplate::new(&v).map_err(|m| err(&path, m))?,
            None => PayloadTemplate::default_template(),
        };
        u.finish()?;

        let mut st = root.section("store")?;
        let store = StoreConfig {
            dir: st
                .string("dir")?
                .unwrap_or_else(|| "/var/lib/pushpark".into())
                .into(),
            max_age_days: st.uint("max_age_days", 30, 1, 36_500)? as u32,
            unregister_keeps_binding: st.boolean("unregister_keeps_binding", false)?,
            max_devices_per_aor: st.uint("max_devices_per_aor", 10, 1, 1000)? as usize,
        };
        st.finish()?;

        let cluster = match root.take("cluster") {
            None => None,
            Some((path, v)) => Some(parse_cluster(Section::new(&path, v)?)?),
        };

        let level_path = root.key_path("log_level");
        let log_level = match root.string("log_level")? {
            None => log::LevelFilter::Info,
            Some(t) => t.parse().map_err(|_| {
                err(
                    &level_path,
                    format!("`{t}` is not off, error, warn, info, debug or trace"),
                )
            })?,
        };
        root.finish()?;

        Ok(EngineConfig {
            apns,
            fcm,
            park,
            push: PushConfig {
                min_interval,
                payload_template,
            },
            store,
            cluster,
            log_level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        r#"{"apns":{"auth":{"key_file":"/k.p8","key_id":"ABCDE12345","team_id":"TEAM123456"}}}"#;

    fn error_of(text: &str) -> String {
        EngineConfig::from_json(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_gets_operator_defaults() {
        let c = EngineConfig::from_json(MINIMAL).unwrap();
        assert_eq!(c.apns.as_ref().unwrap().endpoint, Endpoint::Production);
        assert_eq!(
            c.apns.as_ref().unwrap().auth,
            AuthConfig::Token {
                key_file: "/k.p8".into(),
                key_id: "ABCDE12345".into(),
                team_id: "TEAM123456".into()
            }
        );
        assert_eq!(c.park.timeout, Duration::from_secs(30));
        assert_eq!((c.park.max_total, c.park.max_per_aor), (100_000, 8));
        assert_eq!((c.park.reject_code, c.park.push_failed_code), (480, 480));
        assert_eq!(c.park.reject_reason, "Temporarily Unavailable");
        assert_eq!(c.push.min_interval, Duration::from_secs(2));
        assert_eq!(c.store.dir, PathBuf::from("/var/lib/pushpark"));
        assert_eq!(c.store.max_age_days, 30);
        assert_eq!(c.store.max_devices_per_aor, 10);
        assert_eq!(c.log_level, log::LevelFilter::Info);
        assert!(c.cluster.is_none(), "a single node unless told");
        assert_eq!(
            (
                c.apns.as_ref().unwrap().ping_interval,
                c.apns.as_ref().unwrap().ping_timeout
            ),
            (Duration::from_secs(60), Duration::from_secs(10))
        );
    }

    #[test]
    fn full_config_is_read() {
        let c = EngineConfig::from_json(
            r#"{"apns":{"endpoint":"localhost:4430","ca_file":"/ca.pem",
                 "auth":{"cert_file":"/c.pem","key_file":"/k.pem"},"connections":2,"worker_threads":2,
                 "ping_interval_s":20,"ping_timeout_s":5},
               "park":{"timeout_ms":5000,"max_total":10,"max_per_aor":2,"reject_code":486,
                 "reject_reason":"Busy Here","push_failed_code":404,"push_failed_reason":"Not Found",
                 "recent_register_ms":0},
               "push":{"min_interval_ms":0,"payload_template":{"id":"{call_id}"}},
               "store":{"dir":"/tmp/x","max_age_days":7,"max_devices_per_aor":1},"log_level":"debug"}"#,
        )
        .unwrap();
        assert_eq!(
            c.apns.as_ref().unwrap().endpoint,
            Endpoint::Custom {
                host: "localhost".into(),
                port: 4430
            }
        );
        assert_eq!(
            c.apns.as_ref().unwrap().auth,
            AuthConfig::Certificate {
                cert_file: "/c.pem".into(),
                key_file: "/k.pem".into()
            }
        );
        assert_eq!(
            c.apns.as_ref().unwrap().ca_file,
            Some(PathBuf::from("/ca.pem"))
        );
        assert_eq!(
            c.apns.as_ref().unwrap().ping_interval,
            Duration::from_secs(20)
        );
        assert_eq!(
            c.apns.as_ref().unwrap().ping_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(c.park.reject_code, 486);
        assert_eq!(c.park.push_failed_reason, "Not Found");
        assert_eq!(c.park.recent_register, Duration::ZERO);
        assert_eq!(c.store.max_age_days, 7);
        assert_eq!(c.store.max_devices_per_aor, 1);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
    }

    #[test]
    fn a_p12_file_with_its_password_file() {
        let c = EngineConfig::from_json(
            r#"{"apns":{"auth":{"p12_file":"/v.p12","password_file":"/v.pass"}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.apns.as_ref().unwrap().auth,
            AuthConfig::Pkcs12 {
                p12_file: "/v.p12".into(),
                password_file: Some("/v.pass".into()),
                password_env: None,
            }
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            error_of("{}"),
            "apns: missing (an engine pushes through apns, fcm or both)"
        );
        assert_eq!(error_of(r#"{"apns":{}}"#), "apns.auth: missing");
        assert_eq!(
            error_of(r#"{"apns":{"auth":{"key_file":"/k","team_id":"T"}}}"#),
            "apns.auth.key_id: missing"
        );
        assert_eq!(
            error_of(r#"{"apns":{"auth":{"key_file":"/k","key_id":"ABCDE123456","team_id":"T"}}}"#),
            "apns.auth.key_id: must be 10 letters and digits, as Apple shows it"
        );
        assert_eq!(
            error_of(
                r#"{"apns":{"auth":{"key_file":"/k","key_id":"ABCDE12345","team_id":"TEAM-12345"}}}"#
            ),
            "apns.auth.team_id: must be 10 letters and digits, as Apple shows it"
        );
        assert_eq!(
            error_of(r#"{"apns":{"auth":{"cert_file":"/c"}}}"#),
            "apns.auth.key_file: missing"
        );
        assert_eq!(
            error_of(
                r#"{"apns":{"auth":{"p12_file":"/v.p12","password_file":"/p","password_env":"P"}}}"#
            ),
            "apns.auth: password_file and password_env exclude each other"
        );
        assert_eq!(
            error_of(r#"{"apns":{"auth":{"p12_file":"/v.p12","password":"x"}}}"#),
            "apns.auth.password: unknown key"
        );
        let with = |extra: &str| {
            error_of(&format!(
                r#"{{"apns":{{"auth":{{"key_file":"/k","key_id":"ABCDE12345","team_id":"TEAM123456"}}}},{extra}}}"#
            ))
        };
        assert_eq!(
            with(r#""park":{"timout_ms":1}"#),
            "park.timout_ms: unknown key"
        );
        assert_eq!(with(r#""bogus":1"#), "bogus: unknown key");
        assert_eq!(
            with(r#""park":{"timeout_ms":"30"}"#),
            "park.timeout_ms: expected an integer, found a string"
        );
        assert_eq!(
            with(r#""park":{"reject_code":200}"#),
            "park.reject_code: expected an integer from 400 to 699, found 200"
        );
        assert_eq!(
            with(r#""store":{"max_devices_per_aor":1001}"#),
            "store.max_devices_per_aor: expected an integer from 1 to 1000, found 1001"
        );
        assert_eq!(
            with(r#""park":{"reject_reason":"a\r\nb"}"#),
            "park.reject_reason: must be a non-empty single line"
        );
        assert!(with(r#""apns":1"#).starts_with("apns: expected an object"));
        assert!(with(r#""log_level":"loud""#).starts_with("log_level: `loud` is not"));
        assert!(with(r#""push":{"payload_template":{"x":"{nope}"}}"#)
            .starts_with("push.payload_template: unknown placeholder {nope}"));
        assert!(error_of("{").starts_with("invalid JSON"));
        // Found by props.rs: an empty key was reported as just "unknown key".
        assert_eq!(with(r#""":1"#), r#"unknown key """#);
        assert_eq!(with(r#""park":{"":1}"#), r#"park: unknown key """#);
    }

    #[test]
    fn endpoints() {
        let e = |t: &str| {
            let text = format!(
                r#"{{"apns":{{"endpoint":"{t}","auth":{{"key_file":"/k","key_id":"ABCDE12345","team_id":"TEAM123456"}}}}}}"#
            );
            EngineConfig::from_json(&text).map(|c| c.apns.unwrap().endpoint)
        };
        assert_eq!(e("sandbox").unwrap(), Endpoint::Sandbox);
        assert_eq!(e("sandbox:2197").unwrap(), Endpoint::SandboxAltPort);
        assert_eq!(
            e("[::1]:4430").unwrap(),
            Endpoint::Custom {
                host: "::1".into(),
                port: 4430
            }
        );
        for bad in ["prod", "host:", ":443", "host:0", "host:99999"] {
            assert!(
                e(bad)
                    .unwrap_err()
                    .to_string()
                    .starts_with("apns.endpoint: endpoint"),
                "{bad}"
            );
        }
    }

    fn with_fcm(fcm: &str) -> String {
        format!(
            r#"{{"apns":{{"auth":{{"key_file":"/k.p8","key_id":"ABCDE12345","team_id":"TEAM123456"}}}},"fcm":{fcm}}}"#
        )
    }

    #[test]
    fn fcm_section() {
        let c =
            EngineConfig::from_json(&with_fcm(r#"{"service_account_file":"/sa.json"}"#)).unwrap();
        let f = c.fcm.unwrap();
        assert_eq!(f.service_account_file, Some(PathBuf::from("/sa.json")));
        assert_eq!((f.host.as_str(), f.port), ("fcm.googleapis.com", 443));
        assert!(f.serves("any-project") && f.serves("1234567890"));

        let c = EngineConfig::from_json(&with_fcm(
            r#"{"projects":{"voip-app-1":"/a.json","987654321":"/b.json"},"endpoint":"127.0.0.1:4431","ca_file":"/ca.pem","connections":2}"#,
        ))
        .unwrap();
        let f = c.fcm.unwrap();
        assert_eq!(f.projects["voip-app-1"], PathBuf::from("/a.json"));
        assert!(f.serves("987654321") && !f.serves("other-app-1"));
        assert_eq!(
            (f.host.as_str(), f.port, f.connections),
            ("127.0.0.1", 4431, 2)
        );
        assert!(EngineConfig::from_json(MINIMAL).unwrap().fcm.is_none());

        let cases = [
            ("{}", "fcm.service_account_file: missing (or name the key file of each project in fcm.projects)"),
            (r#"{"projects":{"Bad_Project":"/a.json"}}"#, "fcm.projects.Bad_Project: not a Firebase project id or number"),
            (r#"{"projects":{"voip-app-1":""}}"#, "fcm.projects.voip-app-1: expected a file name, found a string"),
            (r#"{"projects":[]}"#, "fcm.projects: expected an object, found an array"),
            (r#"{"service_account_file":"/s","endpoint":"production"}"#, "fcm.endpoint: \"production\" is not HOST:PORT"),
            (r#"{"service_account_file":"/s","team":"x"}"#, "fcm.team: unknown key"),
        ];
        for (fcm, want) in cases {
            assert_eq!(error_of(&with_fcm(fcm)), want, "{fcm}");
        }
    }

    fn with_cluster(cluster: &str) -> String {
        format!(
            r#"{{"apns":{{"auth":{{"key_file":"/k.p8","key_id":"ABCDE12345","team_id":"TEAM123456"}}}},"cluster":{cluster}}}"#
        )
    }

    #[test]
    fn cluster_section() {
        let c = EngineConfig::from_json(&with_cluster(
            r#"{"redis_url":"redis://:s3cret@10.0.0.5:6379/2","node_id":"sbc-a"}"#,
        ))
        .unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.node_id, "sbc-a");
        assert_eq!(cl.key_prefix, "pushpark:");
        assert_eq!(cl.redis_url, "redis://:s3cret@10.0.0.5:6379/2");
        assert!(!format!("{cl:?}").contains("s3cret"), "{cl:?}");
        assert_eq!(cl.redis_url_shown(), "redis://***@10.0.0.5:6379/2");
        let c = EngineConfig::from_json(&with_cluster(
            r#"{"redis_url":"redis://127.0.0.1","node_id":"b","key_prefix":"pp:{eu}:"}"#,
        ))
        .unwrap();
        assert_eq!(c.cluster.unwrap().key_prefix, "pp:{eu}:");
        let cases = [
            (r#"{"node_id":"a"}"#, "cluster.redis_url: missing"),
            (r#"{"redis_url":"redis://h"}"#, "cluster.node_id: missing"),
            (
                r#"{"redis_url":"redis://h","node_id":""}"#,
                "cluster.node_id: must not be empty",
            ),
            (
                r#"{"redis_url":"redis://h","node_id":"a b"}"#,
                "cluster.node_id: must be at most 64 letters, digits, '-', '_' or '.'",
            ),
            (
                r#"{"redis_url":"http://h","node_id":"a"}"#,
                "cluster.redis_url: must start with redis://, redis+unix:// or unix:// (no TLS)",
            ),
            (
                r#"{"redis_url":"redis://h","node_id":"a","key_prefix":"a b"}"#,
                "cluster.key_prefix: must be at most 64 characters, without blanks or control characters",
            ),
            (
                r#"{"redis_url":"redis://h","node_id":"a","port":1}"#,
                "cluster.port: unknown key",
            ),
            (r#""redis://h""#, "cluster: expected an object, found a string"),
        ];
        for (cluster, want) in cases {
            assert_eq!(error_of(&with_cluster(cluster)), want, "{cluster}");
        }
        assert!(error_of(&with_cluster(
            r#"{"redis_url":"redis://h:notaport","node_id":"a"}"#
        ))
        .starts_with("cluster.redis_url: not a valid Redis URL"),);
    }
}

#[cfg(test)]
mod props;
