//! Model groups → routes and backends: weighted targets, timeouts, retries, fallbacks
//! (general and context-window) and aliases.

use super::deployment::Deployment;
use super::settings::{FallbackRule, Settings};
use super::values::{glob_literal, max_of, millis, push_unique, sanitize};
use super::{Converter, Dropped, Group};
use std::collections::HashMap;
use switchyard_api::{Backend, RetryPolicy, Route, Target, Timeouts};

/// LiteLLM's router retries twice when nothing says otherwise.
const LITELLM_DEFAULT_RETRIES: u32 = 2;

/// The index of the glob `model_name` that LiteLLM's pattern router (and Switchyard's route
/// table) would pick for `model`: the longest literal prefix; `None` when no glob matches.
pub(super) fn most_specific_glob(names: &[&str], model: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, name) in names.iter().enumerate() {
        let Some(prefix) = name.find('*') else {
            continue;
        };
        let Ok(glob) = globset::Glob::new(&glob_literal(name)) else {
            continue;
        };
        if glob.compile_matcher().is_match(model) && best.is_none_or(|(_, p)| prefix > p) {
            best = Some((i, prefix));
        }
    }
    best.map(|(i, _)| i)
}

/// One fallback setting, resolved to backends.
#[derive(Default)]
struct Resolved {
    /// Route index → the backends of its fallback groups, in order.
    explicit: HashMap<usize, Vec<String>>,
    /// The `"*"` entry: every route without its own.
    star: Option<Vec<String>>,
}

impl Resolved {
    /// Route `i`'s list: its own entry, else its glob parent's, else `"*"`; the route's own
    /// backends left out (falling back to itself would only repeat the attempts).
    fn for_route(&self, i: usize, parent: Option<usize>, own: &[String]) -> Vec<String> {
        let list = self
            .explicit
            .get(&i)
            .or_else(|| parent.and_then(|p| self.explicit.get(&p)))
            .or(self.star.as_ref());
        let mut out = Vec::new();
        for b in list.into_iter().flatten() {
            if !own.contains(b) {
                push_unique(&mut out, b.clone());
            }
        }
        out
    }
}

/// The routes being built, with what fallback resolution needs to know about them.
struct Table<'a> {
    routes: Vec<Route>,
    /// Number of routes made from model groups; the ones after are made for fallback keys.
    groups: usize,
    /// For a route made for a fallback key: the glob group route it copies.
    parent: Vec<Option<usize>>,
    /// Default targets of each group route.
    backends: Vec<Vec<String>>,
    dropped: &'a [Dropped],
}

impl Table<'_> {
    fn group_names(&self) -> Vec<&str> {
        self.routes[..self.groups]
            .iter()
            .map(|r| r.name.as_str())
            .collect()
    }

    fn is_dropped(&self, name: &str) -> bool {
        self.dropped.iter().any(|d| d.name == name)
    }
}

impl Converter<'_> {
    pub(super) fn routes(
        &mut self,
        groups: &[Group],
        dropped: &[Dropped],
        s: &Settings,
    ) -> Vec<Route> {
        let routes: Vec<Route> = groups.iter().map(|g| self.group_route(g, s)).collect();
        let backends = routes
            .iter()
            .map(|r| r.default_targets().into_iter().map(|t| t.backend).collect())
            .collect();
        let mut table = Table {
            groups: routes.len(),
            parent: vec![None; routes.len()],
            routes,
            backends,
            dropped,
        };
        let general = self.fallback_set(&mut table, &s.fallbacks, s.default_fallbacks.as_ref());
        let context = self.fallback_set(&mut table, &s.context_fallbacks, None);
        for i in 0..table.routes.len() {
            let parent = table.parent[i];
            let own = &table.backends[parent.unwrap_or(i)];
            table.routes[i].fallbacks = general.for_route(i, parent, own);
            table.routes[i].context_fallbacks = context.for_route(i, parent, own);
        }
        self.aliases(&mut table, s);
        table.routes
    }

    fn group_route(&mut self, g: &Group, s: &Settings) -> Route {
        let (backend, targets) = self.place(&g.deployments);
        let timeouts = self.timeouts(g, s);
        // LiteLLM's num_retries counts retries; Switchyard's attempts include the first.
        let retries = max_of(g.deployments.iter().map(|d| d.num_retries))
            .or(s.num_retries)
            .unwrap_or(LITELLM_DEFAULT_RETRIES);
        let mut policy = RetryPolicy {
            attempts: retries.saturating_add(1),
            ..RetryPolicy::default()
        };
        if let Some(secs) = s.retry_after {
            policy.backoff_ms = millis(secs);
            policy.max_backoff_ms = policy.max_backoff_ms.max(policy.backoff_ms);
        }
        Route {
            name: g.name.clone(),
            models: vec![glob_literal(&g.name)],
            backend,
            targets,
            rules: Vec::new(),
            fallbacks: Vec::new(),
            context_fallbacks: Vec::new(),
            retries: policy,
            timeouts,
            limits: Default::default(),
            responses_api: Default::default(),
        }
    }

    /// `fallbacks` or `context_window_fallbacks` (plus `default_fallbacks`, LiteLLM's last
    /// `"*"` entry). As in LiteLLM, the first entry for a name wins and the last `"*"` does.
    fn fallback_set(
        &mut self,
        table: &mut Table,
        rules: &[FallbackRule],
        default: Option<&FallbackRule>,
    ) -> Resolved {
        let mut out = Resolved::default();
        for rule in rules.iter().chain(default) {
            if rule.from == "*" {
                out.star = Some(self.fallback_targets(table, rule));
                continue;
            }
            let Some(i) = self.fallback_key(table, rule) else {
                continue;
            };
            if out.explicit.contains_key(&i) {
                let why = format!(
                    "an earlier entry for `{}` wins, as in LiteLLM; ignored",
                    rule.from
                );
                self.warn(&rule.path, why);
                continue;
            }
            let to = self.fallback_targets(table, rule);
            out.explicit.insert(i, to);
        }
        out
    }

    /// The route a fallback key names. LiteLLM looks fallbacks up by the name the client
    /// sent, so a key that only a glob group matches gets its own route, a copy of the glob
    /// group's (exact names beat globs), to carry them.
    fn fallback_key(&mut self, table: &mut Table, rule: &FallbackRule) -> Option<usize> {
        let key = rule.from.as_str();
        if let Some(i) = table.routes.iter().position(|r| r.name == key) {
            return Some(i);
        }
        if table.is_dropped(key) {
            let why = format!("`{key}` has no servable deployment; ignored");
            self.warn(&rule.path, why);
            return None;
        }
        let glob = (!key.contains('*'))
            .then(|| most_specific_glob(&table.group_names(), key))
            .flatten();
        let Some(g) = glob else {
            self.warn(
                &rule.path,
                format!("no model_list entry named `{key}`; ignored"),
            );
            return None;
        };
        let mut route = table.routes[g].clone();
        route.name = key.to_owned();
        route.models = vec![glob_literal(key)];
        table.routes.push(route);
        table.parent.push(Some(g));
        Some(table.routes.len() - 1)
    }

    /// The backends of a rule's fallback groups, in order (a name only a glob group matches
    /// resolves to that group, as a client's request for it would).
    fn fallback_targets(&mut self, table: &Table, rule: &FallbackRule) -> Vec<String> {
        let names = table.group_names();
        let mut out = Vec::new();
        for m in &rule.to {
            let group = names.iter().position(|n| n == m);
            let group = match group {
                Some(g) => Some(g),
                None if table.is_dropped(m) => {
                    let why = format!("`{m}` has no servable deployment; skipped");
                    self.warn(&rule.path, why);
                    continue;
                }
                None => most_specific_glob(&names, m),
            };
            match group {
                Some(g) => out.extend(table.backends[g].iter().cloned()),
                None => {
                    let why = format!("no model_list entry named `{m}`; skipped");
                    self.warn(&rule.path, why);
                }
            }
        }
        out
    }

    fn aliases(&mut self, table: &mut Table, s: &Settings) {
        for (alias, group, path) in &s.aliases {
            if table.routes.iter().any(|r| r.name == *alias) {
                let why = format!("`{alias}` is itself a model_name; the alias is ignored");
                self.warn(path, why);
            } else if table.is_dropped(group) {
                let why = format!("`{group}` has no servable deployment; the alias is ignored");
                self.warn(path, why);
            } else if let Some(route) = table.routes[..table.groups]
                .iter_mut()
                .find(|r| r.name == *group)
            {
                push_unique(&mut route.models, glob_literal(alias));
            } else {
                self.warn(
                    path,
                    format!("no model_list entry named `{group}`; ignored"),
                );
            }
        }
    }

    /// A backend (or the route's weighted targets) for one model_name's deployments.
    fn place(&mut self, group: &[Deployment]) -> (Option<String>, Vec<Target>) {
        let first = &group[0];
        if group.len() == 1 {
            return (
                Some(self.intern(first.backend.clone(), &first.hint)),
                Vec::new(),
            );
        }
        let weights = effective_weights(group);
        let same_but_url = group.iter().all(|d| {
            Backend {
                base_url: first.backend.base_url.clone(),
                ..d.backend.clone()
            } == first.backend
        });
        if same_but_url && weights.iter().all(|w| *w == weights[0]) {
            let mut urls: Vec<String> = Vec::new();
            for d in group {
                push_unique(&mut urls, d.backend.base_url.clone());
            }
            let mut spec = first.backend.clone();
            if urls.len() > 1 {
                spec.endpoints = urls;
            }
            return (Some(self.intern(spec, &first.hint)), Vec::new());
        }
        let mut targets: Vec<Target> = Vec::new();
        for (d, weight) in group.iter().zip(weights) {
            let name = self.intern(d.backend.clone(), &d.hint);
            match targets.iter_mut().find(|t| t.backend == name) {
                Some(t) => t.weight = t.weight.saturating_add(weight),
                None => targets.push(Target {
                    backend: name,
                    weight,
                }),
            }
        }
        if targets.len() == 1 {
            return (Some(targets.remove(0).backend), Vec::new());
        }
        (None, targets)
    }

    /// The name of an identical existing backend, or of `spec` added under a new name.
    fn intern(&mut self, mut spec: Backend, hint: &str) -> String {
        spec.name = String::new();
        if let Some(b) = self.backends.iter().find(|b| {
            Backend {
                name: String::new(),
                ..(*b).clone()
            } == spec
        }) {
            return b.name.clone();
        }
        let base = sanitize(hint);
        let mut name = base.clone();
        let mut n = 2;
        while self.backends.iter().any(|b| b.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        spec.name = name.clone();
        self.backends.push(spec);
        name
    }

    fn timeouts(&mut self, g: &Group, s: &Settings) -> Timeouts {
        let mut out = Timeouts::default();
        let own: Vec<(usize, f64)> = g
            .deployments
            .iter()
            .filter_map(|d| d.timeout.map(|t| (d.index, t)))
            .collect();
        if own.iter().any(|(_, t)| *t != own[0].1) {
            self.warn(
                format!("model_list[{}].litellm_params.timeout", own[0].0),
                format!(
                    "deployments of `{}` set different timeouts; the route uses the largest",
                    g.name
                ),
            );
        }
        let timeout = max_of(g.deployments.iter().map(|d| d.timeout))
            .or(s.timeout)
            .or(s.request_timeout);
        if let Some(secs) = timeout {
            out.first_token_ms = millis(secs);
            out.idle_ms = millis(secs);
        }
        let stream = max_of(g.deployments.iter().map(|d| d.stream_timeout)).or(s.stream_timeout);
        if let Some(secs) = stream {
            out.first_token_ms = millis(secs);
        }
        out.total_ms = out.total_ms.max(out.first_token_ms).max(out.idle_ms);
        out
    }
}

/// Weights for a group's deployments: `weight`, else `rpm`, else `tpm` (LiteLLM's
/// simple-shuffle picks by the first of them any deployment sets), else equal. Integral
/// values are kept; fractions are scaled to the largest = 1000.
pub(super) fn effective_weights(group: &[Deployment]) -> Vec<u32> {
    type Field = fn(&Deployment) -> Option<f64>;
    let fields: [Field; 3] = [|d| d.weight, |d| d.rpm, |d| d.tpm];
    let raw = fields.iter().find_map(|f| {
        group.iter().any(|d| f(d).is_some()).then(|| {
            group
                .iter()
                .map(|d| f(d).unwrap_or(0.0))
                .collect::<Vec<f64>>()
        })
    });
    let equal = vec![1; group.len()];
    let Some(raw) = raw else {
        return equal;
    };
    let max = raw.iter().copied().fold(0.0, f64::max);
    if max <= 0.0 {
        return equal;
    }
    if max <= 1_000_000.0 && raw.iter().all(|w| w.fract() == 0.0) {
        return raw.iter().map(|w| *w as u32).collect();
    }
    raw.iter()
        .map(|w| match ((w / max) * 1000.0).round() as u32 {
            0 if *w > 0.0 => 1,
            n => n,
        })
        .collect()
}
