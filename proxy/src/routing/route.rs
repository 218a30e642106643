//! Client model name → route → ordered backend plan (pure).
//!
//! A route is chosen by the requested model name (exact beats glob; a longer literal prefix
//! beats a shorter one; file order breaks ties). Inside it, the first task rule whose
//! conditions all hold picks the targets, else the route's defaults. The session's hash draws
//! one target by weight; the set's other targets follow (drawn by weight too, so a group
//! fails over within itself), then the route's fallbacks in order.

use globset::{Glob, GlobMatcher};
use std::collections::HashMap;
use switchyard_api::{Backend, ResponsesApi, RetryPolicy, Route, RuleMatch, Timeouts};

/// What task rules look at, gathered once per request.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    pub model: &'a str,
    /// `x-claude-code-agent-id` header present.
    pub agent_header: bool,
    pub thinking: bool,
    pub input_tokens: u64,
    pub images: bool,
    pub tools: bool,
    /// Request headers, lower-case names.
    pub headers: Vec<(&'a str, &'a str)>,
}

/// True when every condition the rule gives holds.
pub fn rule_matches(rule: &RuleMatch, f: &RequestFacts) -> bool {
    let subagent = f.agent_header || f.model.contains("haiku");
    rule.subagent.is_none_or(|want| want == subagent)
        && rule.thinking.is_none_or(|want| want == f.thinking)
        && rule
            .min_input_tokens
            .is_none_or(|min| f.input_tokens >= min)
        && rule.images.is_none_or(|want| want == f.images)
        && rule.tools.is_none_or(|want| want == f.tools)
        && rule.header.as_ref().is_none_or(|h| {
            f.headers
                .iter()
                .any(|(name, value)| name.eq_ignore_ascii_case(&h.name) && *value == h.value)
        })
}

#[derive(Debug, Clone)]
struct WeightedSet {
    /// (backend index, cumulative weight)
    cumulative: Vec<(usize, u64)>,
    total: u64,
}

impl WeightedSet {
    fn new(targets: &[switchyard_api::Target], backends: &[Backend]) -> Self {
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for t in targets.iter().filter(|t| t.weight > 0) {
            if let Some(i) = backends.iter().position(|b| b.name == t.backend) {
                total += t.weight as u64;
                cumulative.push((i, total));
            }
        }
        Self { cumulative, total }
    }

    /// The target for a point in `[0, 2^64)`: stable for a session's hash, so a session
    /// stays on one model during a gradual move.
    fn pick(&self, point: u64) -> Option<usize> {
        if self.total == 0 {
            return None;
        }
        let at = ((point as u128 * self.total as u128) >> 64) as u64;
        self.cumulative
            .iter()
            .find(|(_, c)| at < *c)
            .map(|(i, _)| *i)
    }

    /// Every target, the one `pick(point)` gives first, then the others drawn by weight from
    /// those left, each draw with a fresh point derived from the session's. So when a target
    /// fails, its sessions spread over the rest by weight, and the order is the same on
    /// every proxy of a fleet.
    fn order(&self, mut point: u64) -> Vec<usize> {
        let mut left = self.clone();
        let mut order = Vec::with_capacity(self.cumulative.len());
        while let Some(i) = left.pick(point) {
            order.push(i);
            left = left.without(i);
            point = crate::routing::balance::mix(point);
        }
        order
    }

    fn without(&self, backend: usize) -> Self {
        let mut rest = WeightedSet {
            cumulative: Vec::with_capacity(self.cumulative.len()),
            total: 0,
        };
        let mut previous = 0;
        for &(i, c) in &self.cumulative {
            let weight = c - previous;
            previous = c;
            if i != backend {
                rest.total += weight;
                rest.cumulative.push((i, rest.total));
            }
        }
        rest
    }
}

#[derive(Debug)]
struct CompiledRule {
    name: String,
    when: RuleMatch,
    targets: WeightedSet,
}

/// A route ready to plan requests.
#[derive(Debug)]
pub struct CompiledRoute {
    pub name: String,
    rules: Vec<CompiledRule>,
    targets: WeightedSet,
    fallbacks: Vec<usize>,
    /// Larger-window backends for a prompt too long for the one that would serve it.
    pub context_fallbacks: Vec<usize>,
    pub retries: RetryPolicy,
    pub timeouts: Timeouts,
    pub responses_api: ResponsesApi,
}

/// Backends to try, in order, and the rule that chose the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    pub route: &'a str,
    pub rule: Option<&'a str>,
    pub backends: Vec<usize>,
}

impl CompiledRoute {
    /// `point` is the session's hash (or a random number without a session).
    pub fn plan(&self, facts: &RequestFacts, point: u64) -> Plan<'_> {
        let (rule, set) = self
            .rules
            .iter()
            .find(|r| rule_matches(&r.when, facts))
            .map(|r| (Some(r.name.as_str()), &r.targets))
            .unwrap_or((None, &self.targets));
        let mut backends = set.order(point);
        for f in &self.fallbacks {
            if !backends.contains(f) {
                backends.push(*f);
            }
        }
        Plan {
            route: &self.name,
            rule,
            backends,
        }
    }
}

fn positions(names: &[String], backends: &[Backend]) -> Vec<usize> {
    names
        .iter()
        .filter_map(|f| backends.iter().position(|b| &b.name == f))
        .collect()
}

struct GlobEntry {
    matcher: GlobMatcher,
    /// Characters before the first wildcard: more literal text means more specific.
    literal_prefix: usize,
    route: usize,
}

impl std::fmt::Debug for GlobEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.matcher.glob(), self.route)
    }
}

#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
    exact: HashMap<String, usize>,
    /// Most specific first.
    globs: Vec<GlobEntry>,
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

impl RouteTable {
    /// Routes must already be validated (every glob compiles, every backend exists).
    pub fn new(routes: &[Route], backends: &[Backend]) -> Self {
        let mut table = RouteTable {
            routes: Vec::new(),
            exact: HashMap::new(),
            globs: Vec::new(),
        };
        for (i, r) in routes.iter().enumerate() {
            table.routes.push(CompiledRoute {
                name: r.name.clone(),
                rules: r
                    .rules
                    .iter()
                    .map(|rule| CompiledRule {
                        name: rule.name.clone(),
                        when: rule.when.clone(),
                        targets: WeightedSet::new(&rule.targets(), backends),
                    })
                    .collect(),
                targets: WeightedSet::new(&r.default_targets(), backends),
                fallbacks: positions(&r.fallbacks, backends),
                context_fallbacks: positions(&r.context_fallbacks, backends),
                retries: r.retries.clone(),
                timeouts: r.timeouts.clone(),
                responses_api: r.responses_api,
            });
            for pattern in &r.models {
                if !is_glob(pattern) {
                    // The first route naming a model keeps it.
                    table.exact.entry(pattern.clone()).or_insert(i);
                } else if let Ok(glob) = Glob::new(pattern) {
                    table.globs.push(GlobEntry {
                        matcher: glob.compile_matcher(),
                        literal_prefix: pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len()),
                        route: i,
                    });
                }
            }
        }
        // Stable sort: equal specificity keeps file order.
        table
            .globs
            .sort_by_key(|g| std::cmp::Reverse(g.literal_prefix));
        table
    }

    pub fn resolve(&self, model: &str) -> Option<&CompiledRoute> {
        let i = self.exact.get(model).copied().or_else(|| {
            self.globs
                .iter()
                .find(|g| g.matcher.is_match(model))
                .map(|g| g.route)
        })?;
        Some(&self.routes[i])
    }

    /// Exact model names, for `GET /v1/models`.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.exact.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(routes: serde_json::Value) -> RouteTable {
        let backends: Vec<Backend> = ["a", "b", "c"]
            .iter()
            .map(|n| serde_json::from_value(json!({"name": n, "baseUrl": "http://x/v1"})).unwrap())
            .collect();
        let routes: Vec<Route> = serde_json::from_value(routes).unwrap();
        RouteTable::new(&routes, &backends)
    }

    fn facts(model: &str) -> RequestFacts<'_> {
        RequestFacts {
            model,
            ..Default::default()
        }
    }

    #[test]
    fn most_specific_wins() {
        let t = table(json!([
            {"name": "fallback", "models": ["*"], "backend": "a"},
            {"name": "claude", "models": ["claude-*"], "backend": "b"},
            {"name": "haiku", "models": ["claude-haiku-*", "fast"], "backend": "c"},
        ]));
        assert_eq!(t.resolve("claude-haiku-4-5").unwrap().name, "haiku");
        assert_eq!(
            t.resolve("claude-opus-5-5")
                .unwrap()
                .plan(&facts(""), 0)
                .backends,
            [1]
        );
        assert_eq!(t.resolve("fast").unwrap().name, "haiku");
        assert_eq!(t.resolve("gpt-4").unwrap().name, "fallback");
    }

    #[test]
    fn exact_beats_glob_and_unknown_is_none() {
        let t = table(json!([
            {"name": "g", "models": ["claude-*"], "backend": "a"},
            {"name": "e", "models": ["claude-opus-5-5"], "backend": "b"},
        ]));
        assert_eq!(t.resolve("claude-opus-5-5").unwrap().name, "e");
        assert!(t.resolve("qwen").is_none());
        assert_eq!(t.exact_names().collect::<Vec<_>>(), ["claude-opus-5-5"]);
    }

    #[test]
    fn first_matching_rule_picks_targets_and_fallbacks_follow() {
        let t = table(
            json!([{"name": "r", "models": ["*"], "backend": "a", "fallbacks": ["c", "a"],
            "rules": [
                {"name": "subagents", "when": {"subagent": true}, "backend": "b"},
                {"name": "long", "when": {"minInputTokens": 100000}, "backend": "c"},
                {"name": "profile", "when": {"header": {"name": "X-Profile", "value": "fast"}}, "backend": "b"},
            ]}]),
        );
        let r = t.resolve("claude-opus").unwrap();
        let plan = r.plan(&facts("claude-opus"), 0);
        assert_eq!((plan.rule, plan.backends), (None, vec![0, 2]));
        let plan = r.plan(&facts("claude-haiku-4-5"), 0);
        assert_eq!(
            (plan.rule, plan.backends),
            (Some("subagents"), vec![1, 2, 0])
        );
        let agent = RequestFacts {
            agent_header: true,
            ..facts("claude-opus")
        };
        assert_eq!(r.plan(&agent, 0).rule, Some("subagents"));
        let long = RequestFacts {
            input_tokens: 150_000,
            ..facts("claude-opus")
        };
        assert_eq!(r.plan(&long, 0).rule, Some("long"));
        let profile = RequestFacts {
            headers: vec![("x-profile", "fast")],
            ..facts("claude-opus")
        };
        assert_eq!(r.plan(&profile, 0).rule, Some("profile"));
    }

    #[test]
    fn conditions_combine_and_can_require_absence() {
        let m: RuleMatch =
            serde_json::from_value(json!({"thinking": true, "tools": false, "images": true}))
                .unwrap();
        let mut f = facts("m");
        f.thinking = true;
        f.images = true;
        assert!(rule_matches(&m, &f));
        f.tools = true;
        assert!(!rule_matches(&m, &f));
    }

    #[test]
    fn weights_split_points_proportionally() {
        let t = table(json!([{"name": "r", "models": ["*"],
            "targets": [{"backend": "a", "weight": 90}, {"backend": "b", "weight": 10}, {"backend": "c", "weight": 0}]}]));
        let r = t.resolve("x").unwrap();
        let mut counts = [0u32; 3];
        for i in 0..1000u64 {
            // The middle of each thousandth of the range.
            let point = i * (u64::MAX / 1000) + u64::MAX / 2000;
            counts[r.plan(&facts("x"), point).backends[0]] += 1;
        }
        assert_eq!(counts, [900, 100, 0]);
    }

    #[test]
    fn every_target_of_a_group_follows_the_chosen_one_then_fallbacks() {
        let t = table(json!([{"name": "r", "models": ["*"], "fallbacks": ["c"],
            "targets": [{"backend": "a", "weight": 1}, {"backend": "b", "weight": 1}]}]));
        let r = t.resolve("x").unwrap();
        assert_eq!(r.plan(&facts("x"), 0).backends, [0, 1, 2]);
        assert_eq!(r.plan(&facts("x"), u64::MAX).backends, [1, 0, 2]);
    }

    #[test]
    fn a_failed_targets_sessions_spread_over_the_rest_by_weight() {
        let t = table(json!([{"name": "r", "models": ["*"],
            "targets": [{"backend": "a", "weight": 50}, {"backend": "b", "weight": 30}, {"backend": "c", "weight": 20}]}]));
        let r = t.resolve("x").unwrap();
        let mut second = [0u32; 3];
        let mut sessions_of_a = 0;
        for i in 0..10_000u64 {
            let plan = r.plan(&facts("x"), crate::routing::balance::mix(i));
            let mut sorted = plan.backends.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2], "every target once");
            if plan.backends[0] == 0 {
                sessions_of_a += 1;
                second[plan.backends[1]] += 1;
            }
        }
        // a's sessions move to b and c in the ratio 30:20 (±3 percentage points).
        let to_b = f64::from(second[1]) / f64::from(sessions_of_a);
        assert!((0.57..0.63).contains(&to_b), "{to_b} of a's sessions to b");
        assert_eq!(second[0], 0);
    }
}
