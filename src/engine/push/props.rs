//! Property tests: whatever the call's fields hold (quotes, backslashes,
//! control and non-BMP characters, megabytes), the payload is valid JSON that
//! reads back as the template with the fields put in.

use super::*;
use proptest::prelude::*;
use serde_json::{json, Map};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures become plain regression tests, not files next to the source.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text that is hard to put in JSON, plus arbitrary Unicode and placeholder look-alikes.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\/\u{0}-\u{1f}\u{7f}\u{80}-\u{9f}\u{2028}\u{2029}\u{fffd}\u{10000}-\u{10ffff}a]{0,40}",
        "(\\{(call_id|caller_uri|caller_name|push_id|aor)\\}|[{}\"\\\\]){0,6}",
        ("[\"\\\\\u{1}\u{1f600}a]{1,3}", 10_000..200_000usize).prop_map(|(s, n)| s.repeat(n / s.len())),
    ]
}

prop_compose! {
    fn fields()(
        call_id in field_value(),
        caller_uri in field_value(),
        caller_name in field_value(),
        push_id in field_value(),
        aor in field_value(),
    ) -> [String; 5] {
        [call_id, caller_uri, caller_name, push_id, aor]
    }
}

fn as_fields(f: &[String; 5]) -> PayloadFields<'_> {
    PayloadFields {
        call_id: &f[0],
        caller_uri: &f[1],
        caller_name: &f[2],
        push_id: &f[3],
        aor: &f[4],
    }
}

/// The template's documented meaning, written independently of `render`:
/// every `{name}` of a known field in a string value (keys may hold none)
/// becomes the field's text, once (values are not expanded again).
fn expand(s: &str, f: &[String; 5]) -> String {
    const NAMES: [&str; 5] = ["call_id", "caller_uri", "caller_name", "push_id", "aor"];
    let mut out = String::new();
    let mut rest = s;
    'scan: while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        for (name, value) in NAMES.iter().zip(f) {
            if let Some(tail) = after.strip_prefix(name).and_then(|t| t.strip_prefix('}')) {
                out.push_str(value);
                rest = tail;
                continue 'scan;
            }
        }
        out.push('{');
        rest = after;
    }
    out + rest
}

fn expand_value(v: &Value, f: &[String; 5]) -> Value {
    match v {
        Value::String(s) => Value::String(expand(s, f)),
        Value::Array(a) => Value::Array(a.iter().map(|x| expand_value(x, f)).collect()),
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, x) in o {
                m.insert(expand(k, f), expand_value(x, f));
            }
            Value::Object(m)
        }
        other => other.clone(),
    }
}

/// Template strings: literal text, the known placeholders, and unknown or broken ones.
fn template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(
            &["{call_id}", "{caller_uri}", "{caller_name}", "{push_id}", "{aor}"][..]
        ).prop_map(String::from),
        4 => "[a-z {}\"\\\\\u{1}\u{e9}\u{1f600}]".prop_map(String::from),
        1 => "\\{[a-z_]{0,4}\\}?".prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

fn template() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Not any f64: serde_json's default parser may miss the last bit of some.
        prop::sample::select(&[0.5, -1.25, 1e300][..]).prop_map(Value::from),
        template_text().prop_map(Value::from),
    ];
    let tree = leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(template_text(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(template_text(), tree, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn the_default_payload_carries_any_field_values(f in fields()) {
        let text = PayloadTemplate::default_template().render(&as_fields(&f));
        let v: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = json!({
            "aps": {}, "call_id": f[0], "caller": f[1], "caller_name": f[2],
            "push_id": f[3], "aor": f[4]
        });
        prop_assert_eq!(v, want);
    }

    #[test]
    fn any_template_renders_as_its_expansion(t in template(), f in fields()) {
        match PayloadTemplate::new(&t) {
            Ok(compiled) => {
                let text = compiled.render(&as_fields(&f));
                let v: Value =
                    serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(v, expand_value(&t, &f));
            }
            Err(e) => prop_assert!(
                e.starts_with("unknown placeholder {")
                    || e.starts_with("placeholders go in values, not in keys"),
                "{}",
                e
            ),
        }
    }
}

proptest! {
    #![proptest_config(config(300))]

    /// Whatever the caller sends, the push fits APNs' limit: its own fields
    /// are cut (keeping their start), the others are never touched.
    #[test]
    fn the_payload_fits_the_limit_whatever_the_caller_sends(
        call_id in field_value(),
        caller_uri in field_value(),
        caller_name in field_value(),
        push_id in "[0-9a-f-]{36}",
        aor in "sip:[a-z]{1,200}@example\\.com",
        max in prop::sample::select(&[300usize, 5120][..]),
    ) {
        let f = PayloadFields {
            call_id: &call_id, caller_uri: &caller_uri, caller_name: &caller_name,
            push_id: &push_id, aor: &aor,
        };
        let t = PayloadTemplate::default_template();
        match t.render_within(&f, max) {
            Ok(text) => {
                prop_assert!(text.len() <= max, "{} > {}", text.len(), max);
                let v: Value =
                    serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                for (key, sent) in [("call_id", &call_id), ("caller", &caller_uri), ("caller_name", &caller_name)] {
                    let got = v[key].as_str().unwrap();
                    prop_assert!(sent.starts_with(got), "{} is not a prefix", key);
                }
                prop_assert_eq!(&v["push_id"], &json!(push_id));
                prop_assert_eq!(&v["aor"], &json!(aor));
                if t.render(&f).len() <= max {
                    prop_assert_eq!(text, t.render(&f));
                }
            }
            Err(_) => {
                let empty = PayloadFields { call_id: "", caller_uri: "", caller_name: "", ..f };
                prop_assert!(t.render(&empty).len() > max);
            }
        }
    }
}
