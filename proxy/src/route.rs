//! Client model name → backend (pure).

use globset::{Glob, GlobMatcher};
use std::collections::HashMap;
use switchyard_api::{Backend, Route};

#[derive(Debug)]
struct GlobEntry {
    matcher: GlobMatcher,
    /// Characters before the first wildcard: more literal text means more specific.
    literal_prefix: usize,
    route: usize,
}

/// The outcome of routing one model name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub route: &'a str,
    /// Index into the runtime's backends.
    pub backend: usize,
}

#[derive(Debug)]
pub struct RouteTable {
    names: Vec<String>,
    backend_of: Vec<usize>,
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
            names: Vec::new(),
            backend_of: Vec::new(),
            exact: HashMap::new(),
            globs: Vec::new(),
        };
        for (i, r) in routes.iter().enumerate() {
            table.names.push(r.name.clone());
            let first = r
                .default_targets()
                .into_iter()
                .next()
                .map(|t| t.backend)
                .unwrap_or_default();
            let backend = backends.iter().position(|b| b.name == first).unwrap_or(0);
            table.backend_of.push(backend);
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
            .sort_by(|a, b| b.literal_prefix.cmp(&a.literal_prefix));
        table
    }

    pub fn resolve(&self, model: &str) -> Option<RouteMatch<'_>> {
        let route = self.exact.get(model).copied().or_else(|| {
            self.globs
                .iter()
                .find(|g| g.matcher.is_match(model))
                .map(|g| g.route)
        })?;
        Some(RouteMatch {
            route: &self.names[route],
            backend: self.backend_of[route],
        })
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

    fn table(routes: &[(&str, &[&str], &str)]) -> RouteTable {
        let backends: Vec<Backend> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                serde_json::from_value(serde_json::json!({"name": n, "baseUrl": "http://x/v1"}))
                    .unwrap()
            })
            .collect();
        let routes: Vec<Route> = routes
            .iter()
            .map(|(name, models, backend)| Route {
                name: name.to_string(),
                models: models.iter().map(|s| s.to_string()).collect(),
                backend: Some(backend.to_string()),
                targets: vec![],
                rules: vec![],
                fallbacks: vec![],
                retries: Default::default(),
                timeouts: Default::default(),
            })
            .collect();
        RouteTable::new(&routes, &backends)
    }

    #[test]
    fn most_specific_wins() {
        let t = table(&[
            ("fallback", &["*"], "a"),
            ("claude", &["claude-*"], "b"),
            ("haiku", &["claude-haiku-*", "fast"], "c"),
        ]);
        assert_eq!(t.resolve("claude-haiku-4-5").unwrap().route, "haiku");
        assert_eq!(t.resolve("claude-opus-5-5").unwrap().backend, 1);
        assert_eq!(t.resolve("fast").unwrap().route, "haiku");
        assert_eq!(t.resolve("gpt-4").unwrap().route, "fallback");
    }

    #[test]
    fn exact_beats_glob_and_unknown_is_none() {
        let t = table(&[("g", &["claude-*"], "a"), ("e", &["claude-opus-5-5"], "b")]);
        assert_eq!(t.resolve("claude-opus-5-5").unwrap().route, "e");
        assert!(t.resolve("qwen").is_none());
        assert_eq!(t.exact_names().collect::<Vec<_>>(), ["claude-opus-5-5"]);
    }
}
