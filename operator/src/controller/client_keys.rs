//! Client keys in cluster mode: the Secret the chart names (`clientKeys.existingSecret`, flag
//! `--client-keys-secret`) holds `keys.yaml`, a list in the snapshot's `keys` format (name,
//! SHA-256 of the key, routes, limits; never a key itself). The publisher reads it, checks it,
//! and hands the set to the proxies through the credentials Secret (key `keys.yaml`), not the
//! ConfigMap: the proxies merge it into the snapshot they serve (`proxy/src/config/cluster.rs`).
//!
//! A bad `keys.yaml` (or a missing or unreadable Secret) never opens the proxies: the last good
//! set stays published, and the problem is logged and sent as an Event on the Secret, naming
//! the field, never a hash. With no good set known yet (operator start), nothing is published
//! until one is: the proxies keep what they run.

use super::{Context, Error};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::runtime::events::{Event, EventType};
use std::collections::BTreeSet;
use switchyard_api::{ClientKey, FieldError, RoutingSnapshot};

use switchyard_api::wire::CLIENT_KEYS_KEY;

/// The last good set and the last problem reported, kept across publishes.
#[derive(Default)]
pub struct ClientKeysState {
    last_good: Option<Vec<ClientKey>>,
    last_problem: Option<String>,
}

impl std::fmt::Debug for ClientKeysState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: hashes stay out of every log line.
        f.debug_struct("ClientKeysState")
            .field(
                "last_good",
                &self
                    .last_good
                    .as_ref()
                    .map(|k| k.iter().map(|k| k.name.as_str()).collect::<Vec<_>>()),
            )
            .field("last_problem", &self.last_problem)
            .finish()
    }
}

/// What the publisher may use this time.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Client keys are off (no `--client-keys-secret`): the proxies ask for no key.
    Off,
    /// Publish these (the Secret's own, or the last good set while the Secret is bad).
    Keys(Vec<ClientKey>),
    /// Nothing good known yet: publish nothing, the proxies keep their snapshot.
    Withhold(String),
}

/// Parses and checks `keys.yaml`. The message names the field (`keys[1].sha256`) and never
/// echoes a value: a plaintext key pasted in place of its hash must not reach a log.
pub fn parse(text: &[u8]) -> Result<Vec<ClientKey>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "is not UTF-8 text".to_owned())?;
    let keys: Vec<ClientKey> = serde_yaml::from_str(text).map_err(|e| describe_yaml_error(&e))?;
    if keys.is_empty() {
        return Err(
            "lists no key: with client keys on, an empty list would let anyone in (remove \
             `clientKeys.existingSecret` to run without keys)"
                .into(),
        );
    }
    // The snapshot's own checks on names and hashes; routes are checked against the routes
    // of each publish (`prune`), since they come and go.
    let probe = RoutingSnapshot {
        keys,
        ..Default::default()
    };
    let errors: Vec<String> = probe
        .validate()
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.field.starts_with("keys[") && !e.field.contains(".routes["))
        .map(|e| e.to_string())
        .collect();
    if errors.is_empty() {
        Ok(probe.keys)
    } else {
        Err(errors.join("; "))
    }
}

/// serde_yaml's message reduced to location and kind: its `invalid type: string "…"` quotes
/// the value, which may be a key.
fn describe_yaml_error(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    let kind = match text.find(": ") {
        Some(i) if text.starts_with("invalid type") || text.starts_with("invalid value") => {
            text[..i].to_owned()
        }
        _ => text
            .split(['"', '`'])
            .step_by(2)
            .collect::<Vec<_>>()
            .join("…"),
    };
    let field = text
        .find("unknown field `")
        .and_then(|i| text[i + 15..].split('`').next())
        .filter(|f| f.len() <= 40 && f.chars().all(|c| c.is_ascii_alphabetic()));
    let kind = match field {
        Some(f) => format!("unknown field `{f}` (expected name, sha256, routes, limits)"),
        None => kind,
    };
    match e.location() {
        Some(at) => format!(
            "line {} column {}: {}",
            at.line(),
            at.column(),
            kind.split(" at line ").next().unwrap_or_default()
        ),
        None => kind,
    }
}

/// Keys limited to routes the snapshot does not serve lose those names (the route does not
/// exist, so the key's reach is the same); a key left with none is dropped, since an empty
/// list would mean every route. Returns what was removed, by key name, for the log.
pub fn prune(keys: &mut Vec<ClientKey>, routes: &BTreeSet<&str>) -> Vec<String> {
    let mut notes = Vec::new();
    keys.retain_mut(|k| {
        if k.routes.is_empty() {
            return true;
        }
        let before = k.routes.len();
        let gone: Vec<String> = k
            .routes
            .iter()
            .filter(|r| !routes.contains(r.as_str()))
            .cloned()
            .collect();
        k.routes.retain(|r| routes.contains(r.as_str()));
        if !gone.is_empty() {
            notes.push(format!(
                "key `{}`: routes not served ({}) left out{}",
                k.name,
                gone.join(", "),
                if gone.len() == before {
                    "; the key may use no served route and is left out"
                } else {
                    ""
                }
            ));
        }
        !k.routes.is_empty()
    });
    notes
}

/// The snapshot error that withholds a publish when client keys are on but none is usable.
pub fn no_usable_key(why: &str) -> FieldError {
    FieldError {
        field: "keys".into(),
        message: format!("client keys: {why}; not published, so the proxies do not open"),
    }
}

/// Reads the client-keys Secret (when configured) and decides what this publish uses.
pub async fn current(ctx: &Context) -> Result<Verdict, Error> {
    let Some(name) = ctx.settings.client_keys_secret.as_deref() else {
        return Ok(Verdict::Off);
    };
    let ns = &ctx.settings.snapshot_namespace;
    let read = match ctx.api::<Secret>(ns).get_opt(name).await {
        Ok(Some(secret)) => match secret.data.as_ref().and_then(|d| d.get(CLIENT_KEYS_KEY)) {
            Some(bytes) => parse(&bytes.0).map_err(|m| format!("key `{CLIENT_KEYS_KEY}`: {m}")),
            None => Err(format!("has no key `{CLIENT_KEYS_KEY}`")),
        },
        Ok(None) => Err("not found".into()),
        Err(kube::Error::Api(e)) if e.code == 403 => Err(
            "the operator may not read it (grant `get` on this Secret; chart: clientKeys)".into(),
        ),
        Err(source) => {
            return Err(Error::Read {
                what: format!("Secret {ns}/{name}"),
                source: Box::new(source),
            })
        }
    };
    let problem = read.as_ref().err().cloned();
    let verdict = {
        let mut state = ctx.client_keys.lock().expect("not poisoned");
        let changed = state.last_problem != problem;
        state.last_problem = problem.clone();
        let verdict = match read {
            Ok(keys) => {
                state.last_good = Some(keys.clone());
                Verdict::Keys(keys)
            }
            Err(ref why) => match &state.last_good {
                Some(good) => Verdict::Keys(good.clone()),
                None => Verdict::Withhold(format!("Secret {ns}/{name} {why}")),
            },
        };
        (verdict, changed)
    };
    let (verdict, changed) = verdict;
    match (&problem, changed) {
        (Some(why), true) => {
            let kept = if matches!(verdict, Verdict::Keys(_)) {
                "the last good set stays published"
            } else {
                "no good set known yet: nothing is published until there is one"
            };
            let message = format!("Secret {ns}/{name} {why}; {kept}");
            tracing::warn!(secret = %name, namespace = %ns, "client keys refused: {message}");
            publish_event(ctx, name, EventType::Warning, "ClientKeysInvalid", message).await;
        }
        (None, true) => {
            tracing::info!(secret = %name, namespace = %ns, "client keys accepted");
            publish_event(
                ctx,
                name,
                EventType::Normal,
                "ClientKeysAccepted",
                format!("Secret {ns}/{name}: client keys accepted"),
            )
            .await;
        }
        _ => {}
    }
    Ok(verdict)
}

async fn publish_event(ctx: &Context, name: &str, type_: EventType, reason: &str, message: String) {
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        name: Some(name.into()),
        namespace: Some(ctx.settings.snapshot_namespace.clone()),
        ..Default::default()
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(message),
        action: "Publish".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        // Best effort: the log line above says the same.
        tracing::debug!(error = %e, "could not publish an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_good_set_parses() {
        let keys = parse(
            format!("- {{name: alice, sha256: {HASH}}}\n- {{name: ci, sha256: '{HASH}', routes: [local], limits: {{requestsPerMinute: 60}}}}\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].limits.requests_per_minute, Some(60));
    }

    #[test]
    fn errors_name_the_field_never_the_value() {
        let plaintext = "sk-live-0123456789";
        let m = parse(format!("- {{name: a, sha256: {plaintext}}}\n").as_bytes()).unwrap_err();
        assert_eq!(
            m,
            "keys[0].sha256: must be 64 hex digits (the SHA-256 of the key, never the key)"
        );
        let m = parse(
            format!("- {{name: a, sha256: {HASH}}}\n- {{name: a, sha256: {HASH}}}\n").as_bytes(),
        )
        .unwrap_err();
        assert_eq!(m, "keys[1].name: must be present and unique");
        let m = parse(
            format!("- {{name: a, sha256: {HASH}, limits: {{concurrent: {plaintext}}}}}\n")
                .as_bytes(),
        )
        .unwrap_err();
        assert!(
            m.starts_with("line 1 column") && m.contains("invalid type"),
            "{m}"
        );
        assert!(!m.contains(plaintext) && !m.contains(HASH), "{m}");
        let m = parse(format!("- {{name: a, sha: {HASH}}}\n").as_bytes()).unwrap_err();
        assert!(m.contains("unknown field `sha`"), "{m}");
        assert!(!m.contains(HASH), "{m}");
        assert!(parse(b"[]").unwrap_err().contains("lists no key"));
        assert_eq!(parse(&[0xff]).unwrap_err(), "is not UTF-8 text");
    }

    #[test]
    fn keys_keep_only_served_routes_and_a_key_with_none_left_is_dropped() {
        let key = |name: &str, routes: &[&str]| ClientKey {
            name: name.into(),
            sha256: HASH.into(),
            routes: routes.iter().map(|r| r.to_string()).collect(),
            limits: Default::default(),
            log_content: false,
        };
        let mut keys = vec![
            key("all", &[]),
            key("some", &["a", "gone"]),
            key("none", &["gone"]),
        ];
        let notes = prune(&mut keys, &BTreeSet::from(["a", "b"]));
        assert_eq!(keys, [key("all", &[]), key("some", &["a"])]);
        assert_eq!(notes.len(), 2);
        assert!(
            notes[1].contains("`none`") && notes[1].contains("left out"),
            "{notes:?}"
        );
    }
}
