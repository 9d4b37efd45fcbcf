//! What goes to a device: the payload template, and the per-device window
//! that rate-limits pushes and coalesces the calls that arrive inside it.

use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::store::DeviceInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    CallId,
    CallerUri,
    CallerName,
    PushId,
    Aor,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "call_id" => Field::CallId,
            "caller_uri" => Field::CallerUri,
            "caller_name" => Field::CallerName,
            "push_id" => Field::PushId,
            "aor" => Field::Aor,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// The payload as compiled JSON text with holes for the call's fields, so
/// rendering is string appends (values JSON-escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadTemplate {
    pieces: Vec<Piece>,
}

#[derive(Clone, Copy)]
pub(crate) struct PayloadFields<'a> {
    pub call_id: &'a str,
    pub caller_uri: &'a str,
    pub caller_name: &'a str,
    pub push_id: &'a str,
    pub aor: &'a str,
}

impl<'a> PayloadFields<'a> {
    fn get_mut(&mut self, field: Field) -> &mut &'a str {
        match field {
            Field::CallId => &mut self.call_id,
            Field::CallerUri => &mut self.caller_uri,
            Field::CallerName => &mut self.caller_name,
            Field::PushId => &mut self.push_id,
            Field::Aor => &mut self.aor,
        }
    }
}

/// How many bytes `c` takes inside a JSON string, as serde_json writes it.
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if c < ' ' => 6,
        c => c.len_utf8(),
    }
}

fn escaped_len(s: &str) -> usize {
    s.chars().map(escaped_char_len).sum()
}

/// The longest prefix of `s` that takes at most `budget` bytes escaped.
fn cut_escaped(s: &str, budget: usize) -> &str {
    let mut used = 0;
    for (at, c) in s.char_indices() {
        used += escaped_char_len(c);
        if used > budget {
            return &s[..at];
        }
    }
    s
}

/// A SIP display name as people read it: a quoted-string loses its quotes
/// and its backslash escapes; a token is kept as it is.
pub(crate) fn display_name(raw: &str) -> std::borrow::Cow<'_, str> {
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return raw.into();
    };
    if !inner.contains('\\') {
        return inner.into();
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out.into()
}

/// `{name}` placeholders in `s`, as (start, end, name).
fn placeholders(s: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    s.match_indices('{').filter_map(move |(start, _)| {
        let rest = &s[start + 1..];
        let len = rest.find(|c: char| !(c.is_ascii_lowercase() || c == '_'))?;
        (len > 0 && rest[len..].starts_with('}')).then(|| (start, start + len + 2, &rest[..len]))
    })
}

fn check_strings(v: &Value) -> Result<(), String> {
    match v {
        Value::String(s) => {
            for (_, _, name) in placeholders(s) {
                if Field::parse(name).is_none() {
                    return Err(format!(
                        "unknown placeholder {{{name}}} (known: {{call_id}} {{caller_uri}} \
                         {{caller_name}} {{push_id}} {{aor}})"
                    ));
                }
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(check_strings),
        // Two keys that render alike would make a payload with duplicate keys.
        Value::Object(o) => o
            .iter()
            .try_for_each(|(k, v)| match placeholders(k).next() {
                Some(_) => Err(format!("placeholders go in values, not in keys ({k:?})")),
                None => check_strings(v),
            }),
        _ => Ok(()),
    }
}

impl PayloadTemplate {
    pub(crate) fn new(template: &Value) -> Result<PayloadTemplate, String> {
        if !template.is_object() {
            return Err("must be a JSON object".into());
        }
        check_strings(template)?;
        // Compact JSON puts `{` outside strings only before `"` or `}`, so every
        // `{name}` in the text is a placeholder inside a string.
        let text = template.to_string();
        let mut pieces = Vec::new();
        let mut at = 0;
        for (start, end, name) in placeholders(&text) {
            if start > at {
                pieces.push(Piece::Text(text[at..start].to_string()));
            }
            pieces.push(Piece::Field(Field::parse(name).expect("checked above")));
            at = end;
        }
        pieces.push(Piece::Text(text[at..].to_string()));
        Ok(PayloadTemplate { pieces })
    }

    pub(crate) fn default_template() -> PayloadTemplate {
        let v = serde_json::json!({
            "aps": {}, "call_id": "{call_id}", "caller": "{caller_uri}",
            "caller_name": "{caller_name}", "push_id": "{push_id}", "aor": "{aor}"
        });
        PayloadTemplate::new(&v).expect("the default template is valid")
    }

    /// The payload in at most `max` bytes: when it is longer, the fields the
    /// caller controls are cut (display name first, then caller URI, then
    /// Call-ID) on a character boundary. Err when even empty they do not fit.
    pub(crate) fn render_within(&self, f: &PayloadFields, max: usize) -> Result<String, String> {
        let mut f = *f;
        let mut text = self.render(&f);
        for field in [Field::CallerName, Field::CallerUri, Field::CallId] {
            if text.len() <= max {
                return Ok(text);
            }
            let uses = self
                .pieces
                .iter()
                .filter(|p| **p == Piece::Field(field))
                .count();
            if uses == 0 {
                continue;
            }
            let value = f.get_mut(field);
            // Each use of the field grows the payload by its escaped length.
            let cut = (text.len() - max).div_ceil(uses);
            *value = cut_escaped(value, escaped_len(value).saturating_sub(cut));
            text = self.render(&f);
        }
        if text.len() <= max {
            return Ok(text);
        }
        Err(format!(
            "the payload is {} bytes even without the caller's fields; at most {max} allowed",
            text.len()
        ))
    }

    pub(crate) fn render(&self, f: &PayloadFields) -> String {
        let mut out = Vec::with_capacity(256);
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Field(field) => {
                    let value = match field {
                        Field::CallId => f.call_id,
                        Field::CallerUri => f.caller_uri,
                        Field::CallerName => f.caller_name,
                        Field::PushId => f.push_id,
                        Field::Aor => f.aor,
                    };
                    // serde_json escapes the value in quotes; the template has its own.
                    let start = out.len();
                    serde_json::to_writer(&mut out, value).expect("a Vec takes every write");
                    out.pop();
                    out.remove(start);
                }
            }
        }
        String::from_utf8(out).expect("UTF-8 text with UTF-8 values spliced in")
    }
}

pub(crate) type DeviceId = (String, String);

pub(crate) struct Coalescer {
    interval: Duration,
    /// Open windows: a device gets at most one push per interval; calls in
    /// between wait for the window's end and then go as one push carrying the
    /// latest call. The value is that push's target, None while nothing waits.
    windows: HashMap<DeviceId, Option<DeviceInfo>>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Push now, and flush the window at `window_end`.
    SendNow { window_end: Instant },
    /// A push went out within the interval: this waits for the window's end.
    /// `superseded` when an earlier waiting call was folded into it.
    Wait { superseded: bool },
}

impl Coalescer {
    pub(crate) fn new(interval: Duration) -> Coalescer {
        Coalescer {
            interval,
            windows: HashMap::new(),
        }
    }

    pub(crate) fn offer(&mut self, aor: &str, device: &DeviceInfo, now: Instant) -> Offer {
        let id = (aor.to_string(), device.key.clone());
        match self.windows.get_mut(&id) {
            Some(pending) => Offer::Wait {
                superseded: pending.replace(device.clone()).is_some(),
            },
            None => {
                if !self.interval.is_zero() {
                    self.windows.insert(id, None);
                }
                Offer::SendNow {
                    window_end: now + self.interval,
                }
            }
        }
    }

    /// The window of `id` ended: the device to push now, if calls waited; the
    /// caller then `restart`s the window if it sends, or `forget`s it.
    pub(crate) fn window_ended(&mut self, id: &DeviceId) -> Option<DeviceInfo> {
        let pending = self.windows.get_mut(id)?.take();
        if pending.is_none() {
            self.windows.remove(id);
        }
        pending
    }

    pub(crate) fn restart(&mut self, id: DeviceId, now: Instant) -> Instant {
        self.windows.insert(id, None);
        now + self.interval
    }

    pub(crate) fn forget(&mut self, id: &DeviceId) {
        self.windows.remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(call_id: &'a str, caller_name: &'a str) -> PayloadFields<'a> {
        PayloadFields {
            call_id,
            caller_uri: "sip:bob@example.com",
            caller_name,
            push_id: "p-1",
            aor: "sip:alice@example.com",
        }
    }

    #[test]
    fn default_payload_carries_every_field_escaped() {
        let t = PayloadTemplate::default_template();
        let text = t.render(&fields("abc@10.0.0.1", "Bob \"the\" \\ Builder\n"));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["aps"], serde_json::json!({}));
        assert_eq!(v["call_id"], "abc@10.0.0.1");
        assert_eq!(v["caller"], "sip:bob@example.com");
        assert_eq!(v["caller_name"], "Bob \"the\" \\ Builder\n");
        assert_eq!(v["push_id"], "p-1");
        assert_eq!(v["aor"], "sip:alice@example.com");
    }

    #[test]
    fn payload_bytes_are_pinned() {
        let t = PayloadTemplate::default_template();
        assert_eq!(
            t.render(&fields("c@h", "B\u{1}\t\"o\\b/ é")),
            r#"{"aor":"sip:alice@example.com","aps":{},"call_id":"c@h","caller":"sip:bob@example.com","caller_name":"B\u0001\t\"o\\b/ é","push_id":"p-1"}"#
        );
        let t = PayloadTemplate::new(&serde_json::json!({"m": "{caller_name} ({aor})"})).unwrap();
        assert_eq!(
            t.render(&fields("c", "\"x\"")),
            r#"{"m":"\"x\" (sip:alice@example.com)"}"#
        );
    }

    #[test]
    fn custom_template_keeps_literals_and_embeds_fields() {
        let t = PayloadTemplate::new(&serde_json::json!({
            "aps": {"content-available": 1}, "x": ["call {call_id} from {caller_name}", "{}", "{x y}"],
            "n": 3
        }))
        .unwrap();
        let v: Value = serde_json::from_str(&t.render(&fields("c1", "Bob"))).unwrap();
        assert_eq!(
            v["x"],
            serde_json::json!(["call c1 from Bob", "{}", "{x y}"])
        );
        assert_eq!(v["aps"]["content-available"], 1);
        assert_eq!(v["n"], 3);
        assert!(PayloadTemplate::new(&serde_json::json!([1])).is_err());
        let e = PayloadTemplate::new(&serde_json::json!({"a": {"b": "{calid}"}})).unwrap_err();
        assert!(e.starts_with("unknown placeholder {calid}"), "{e}");
        let e = PayloadTemplate::new(&serde_json::json!({"{call_id}": 1, "{aor}": 2})).unwrap_err();
        assert!(
            e.starts_with("placeholders go in values, not in keys"),
            "{e}"
        );
    }

    #[test]
    fn long_caller_fields_are_cut_to_fit_on_a_char_boundary() {
        let t = PayloadTemplate::default_template();
        let name = "\u{1}é".repeat(3000);
        let mut f = fields("c@h", &name);
        let full = t.render(&f);
        assert!(full.len() > 5120);
        let text = t.render_within(&f, 5120).unwrap();
        assert!(text.len() <= 5120 && text.len() > 5100, "{}", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        let cut = v["caller_name"].as_str().unwrap();
        assert!(!cut.is_empty() && name.starts_with(cut));
        assert_eq!(
            (v["call_id"].as_str(), v["aor"].as_str()),
            (Some("c@h"), Some("sip:alice@example.com"))
        );
        // What fits is left alone.
        f.caller_name = "Bob";
        assert_eq!(t.render_within(&f, 5120).unwrap(), t.render(&f));
        // Past the caller's fields nothing can be cut.
        f.push_id = &name;
        let e = t.render_within(&f, 5120).unwrap_err();
        assert!(e.contains("even without the caller's fields"), "{e}");
    }

    #[test]
    fn display_names_lose_their_sip_quotes() {
        assert_eq!(
            display_name("\"Bob \\\"B\\\" Example\""),
            "Bob \"B\" Example"
        );
        assert_eq!(display_name("\"a\\\\b\""), "a\\b");
        assert_eq!(display_name("Bob"), "Bob");
        assert_eq!(display_name("\"Bob"), "\"Bob");
        assert_eq!(display_name("\""), "\"");
        assert_eq!(display_name("\"\""), "");
    }

    fn device(key: &str) -> DeviceInfo {
        DeviceInfo {
            key: key.into(),
            provider: "apns".into(),
            token: "00".into(),
            topic: "t.voip".into(),
            contact: String::new(),
            last_register_unix: 0,
        }
    }

    #[test]
    fn one_push_per_window_then_the_latest_waiting_call() {
        let mut c = Coalescer::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let d = device("d1");
        let id = ("alice".to_string(), "d1".to_string());
        assert_eq!(
            c.offer("alice", &d, t0),
            Offer::SendNow {
                window_end: t0 + Duration::from_secs(2)
            }
        );
        assert_eq!(
            c.offer("alice", &device("d2"), t0),
            Offer::SendNow {
                window_end: t0 + Duration::from_secs(2)
            }
        );
        assert_eq!(c.offer("alice", &d, t0), Offer::Wait { superseded: false });
        assert_eq!(c.offer("alice", &d, t0), Offer::Wait { superseded: true });
        assert_eq!(c.window_ended(&id), Some(d.clone()));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(c.restart(id.clone(), t1), t1 + Duration::from_secs(2));
        assert_eq!(c.offer("alice", &d, t1), Offer::Wait { superseded: false });
        c.forget(&id);
        assert_eq!(c.window_ended(&id), None);
        let d2 = ("alice".to_string(), "d2".to_string());
        assert_eq!(c.window_ended(&d2), None, "nothing waited");
        assert_eq!(c.len(), 0, "idle windows are dropped");
    }

    #[test]
    fn zero_interval_never_waits() {
        let mut c = Coalescer::new(Duration::ZERO);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(
                c.offer("a", &device("d"), now),
                Offer::SendNow { window_end: now }
            );
        }
        assert_eq!(c.len(), 0);
    }
}

#[cfg(test)]
mod props;
