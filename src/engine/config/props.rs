//! Property tests: any JSON document gives a config or an error that names a
//! key path the document has (or a required key it lacks), never a panic.

use super::*;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeSet;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures become plain regression tests, not files next to the source.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Keys that are required when their section is read (their absence is an error).
const REQUIRED: [&str; 6] = [
    "apns",
    "apns.auth",
    "apns.auth.key_file",
    "apns.auth.key_id",
    "apns.auth.team_id",
    "apns.auth.p12_file",
];

/// Every key the document has, as dotted paths.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            key_paths(child, &path, out);
            out.insert(path);
        }
    }
}

fn check_error_names_a_key(doc: &Value) -> Result<(), TestCaseError> {
    let Err(e) = EngineConfig::from_json(&doc.to_string()) else {
        return Ok(());
    };
    prop_assert!(!e.message.is_empty());
    if e.path.is_empty() {
        prop_assert!(!doc.is_object(), "an object's error names no key: {}", e);
    } else {
        let mut paths = BTreeSet::new();
        key_paths(doc, "", &mut paths);
        prop_assert!(
            paths.contains(&e.path) || REQUIRED.contains(&e.path.as_str()),
            "`{}` names neither a key of the document nor a required key",
            e
        );
        prop_assert_eq!(e.to_string(), format!("{}: {}", e.path, e.message));
    }
    Ok(())
}

/// The keys the config knows, so that random documents reach its sections.
const KEYS: [&str; 40] = [
    "apns",
    "auth",
    "endpoint",
    "ca_file",
    "key_file",
    "key_id",
    "team_id",
    "cert_file",
    "p12_file",
    "password_file",
    "password_env",
    "connections",
    "worker_threads",
    "ping_interval_s",
    "ping_timeout_s",
    "topics",
    "park",
    "timeout_ms",
    "max_total",
    "max_per_aor",
    "reject_code",
    "reject_reason",
    "push_failed_code",
    "push_failed_reason",
    "recent_register_ms",
    "late_wake_ms",
    "push",
    "min_interval_ms",
    "payload_template",
    "store",
    "dir",
    "max_age_days",
    "unregister_keeps_binding",
    "max_devices_per_aor",
    "log_level",
    "a.b",
    "",
    "{call_id}",
    "{nope}",
    "APNS",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..5000).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        "(\\{[a-z_]{0,10}\\}|[a-z:.0-9 ]){0,4}".prop_map(Value::from),
        prop::sample::select(
            &[
                "sandbox",
                "sandbox:2197",
                "[::1]:4430",
                "h:0",
                "trace",
                "x\n"
            ][..]
        )
        .prop_map(Value::from),
    ];
    let key = prop_oneof![
        3 => prop::sample::select(&KEYS[..]).prop_map(String::from),
        1 => ".{0,6}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid() -> Value {
    json!({
        "apns": {"endpoint": "127.0.0.1:4430", "ca_file": "/ca.pem",
                 "auth": {"key_file": "/k.p8", "key_id": "ABCDE12345", "team_id": "TEAM123456"},
                 "connections": 2, "worker_threads": 2, "ping_interval_s": 60, "ping_timeout_s": 10,
                 "topics": ["com.example.voip"]},
        "park": {"timeout_ms": 5000, "max_total": 10, "max_per_aor": 2, "reject_code": 480,
                 "reject_reason": "Temporarily Unavailable", "push_failed_code": 480,
                 "push_failed_reason": "Temporarily Unavailable", "recent_register_ms": 0,
                 "late_wake_ms": 1000},
        "push": {"min_interval_ms": 0, "payload_template": {"id": "{call_id}"}},
        "store": {"dir": "/tmp/x", "max_age_days": 7, "unregister_keeps_binding": true,
                  "max_devices_per_aor": 3},
        "log_level": "debug"
    })
}

/// The valid document's paths, each as its list of keys.
fn valid_paths() -> Vec<Vec<String>> {
    let mut paths = BTreeSet::new();
    key_paths(&valid(), "", &mut paths);
    paths
        .into_iter()
        .map(|p| p.split('.').map(String::from).collect())
        .collect()
}

/// The value at `path`, if every step on the way is an object with that key.
fn slot<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |v, k| v.get_mut(k.as_str()))
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_text_is_an_error_or_a_config(text in ".{0,64}") {
        if let Err(e) = EngineConfig::from_json(&text) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn arbitrary_json_errors_name_a_key_it_has(doc in any_json()) {
        check_error_names_a_key(&doc)?;
    }

    /// A valid document with some of its values replaced by arbitrary JSON.
    #[test]
    fn a_damaged_config_errors_name_a_key_it_has(
        damage in prop::collection::vec(
            (prop::sample::select(valid_paths()), any_json(), any::<bool>()), 1..4),
    ) {
        let mut doc = valid();
        for (path, value, remove) in damage {
            let (last, parent) = path.split_last().unwrap();
            if let Some(map) = slot(&mut doc, parent).and_then(Value::as_object_mut) {
                if remove {
                    map.remove(last);
                } else {
                    map.insert(last.clone(), value);
                }
            }
        }
        check_error_names_a_key(&doc)?;
    }

    /// One value of a valid document made wrong: the error is about that key.
    #[test]
    fn one_wrong_value_is_named_exactly(
        path in prop::sample::select(valid_paths()),
        wrong in prop_oneof![
            Just(json!([])), Just(json!(true)), Just(json!(-1)), Just(json!(1.5)),
            Just(json!(99_999_999)), Just(json!("x\ny")),
        ],
    ) {
        let mut doc = valid();
        *slot(&mut doc, &path).unwrap() = wrong.clone();
        let text = doc.to_string();
        // Some values are right for some keys (a string for a path, an object
        // for a template): only a refusal must name the key.
        if let Err(e) = EngineConfig::from_json(&text) {
            prop_assert_eq!(&e.path, &path.join("."), "{}", e);
        } else {
            let in_template = path.len() > 2 && path[1] == "payload_template";
            let a_flag = wrong.is_boolean() && slot(&mut valid(), &path).is_some_and(|v| v.is_boolean());
            prop_assert!(wrong.is_string() || in_template || a_flag, "{} accepted", text);
        }
    }

    /// An unknown key anywhere in a valid document is named.
    #[test]
    fn an_unknown_key_is_named(
        section in prop::sample::select(&["", "apns", "apns.auth", "park", "push", "store"][..]),
        key in "[a-z_]{1,12}|.{0,8}",
    ) {
        let mut doc = valid();
        let parent: Vec<String> =
            section.split('.').filter(|s| !s.is_empty()).map(String::from).collect();
        let map = slot(&mut doc, &parent).and_then(Value::as_object_mut).unwrap();
        // cert_file and p12_file are known: they choose another kind of auth.
        prop_assume!(!map.contains_key(&key) && key != "cert_file" && key != "p12_file");
        map.insert(key.clone(), json!(1));
        let e = EngineConfig::from_json(&doc.to_string()).unwrap_err();
        let want = match (section, key.as_str()) {
            (_, "") => (section.to_string(), "unknown key \"\""),
            ("", _) => (key.clone(), "unknown key"),
            _ => (format!("{section}.{key}"), "unknown key"),
        };
        prop_assert_eq!((e.path.clone(), e.message.as_str()), want);
    }
}
