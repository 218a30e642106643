//! The Grafana dashboard shipped with the chart (`charts/switchyard/dashboards/switchyard.json`)
//! names only metrics and labels that really exist: the real proxy binary serves a mock vLLM
//! through traffic that creates every label set the dashboard queries, its `/metrics` is
//! scraped, and every PromQL expression of the dashboard (panels, nested rows, annotations,
//! variables) is checked against the scrape. Operator metrics (`switchyard_operator_*`) are
//! checked against the registrations in `operator/src/metrics.rs`.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{http, mock, sample, TempFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn dashboard() -> Value {
    let path = repo_file("charts/switchyard/dashboards/switchyard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ------------------------------------------------------------------ dashboard shape

/// Every panel, rows' nested panels (collapsed rows) included.
fn all_panels(panels: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in panels.as_array().into_iter().flatten() {
        out.push(p);
        if let Some(nested) = p.get("panels") {
            out.extend(all_panels(nested));
        }
    }
    out
}

/// (where, PromQL) of every query: panel targets, annotations, and the metric selector of
/// `label_values(selector, label)` variables (returned with the label as a `by` clause so it
/// is checked the same way).
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in all_panels(&d["panels"]) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {:?} has a target without expr", p["title"]));
            out.push((
                format!("panel {:?} {}", p["title"], t["refId"]),
                expr.to_owned(),
            ));
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            out.push((format!("annotation {:?}", a["name"]), expr.to_owned()));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_else(|| panic!("variable {:?} without query", v["name"]));
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {:?}: expected label_values(…): {q}", v["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap_or_else(|| {
            panic!("variable {:?}: label_values needs a metric: {q}", v["name"])
        });
        out.push((
            format!("variable {:?}", v["name"]),
            format!("group by ({}) ({selector})", label.trim()),
        ));
    }
    out
}

#[test]
fn dashboard_has_grafana_shape() {
    let d = dashboard();
    assert_eq!(d["uid"], "switchyard");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "{}",
        d["schemaVersion"]
    );
    assert!(
        d.get("id").is_none() || d["id"].is_null(),
        "no instance-specific id"
    );
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().expect("variable name"), v))
        .collect();
    assert_eq!(vars["datasource"]["type"], "datasource");
    assert_eq!(vars["datasource"]["query"], "prometheus");
    for name in ["route", "backend"] {
        assert_eq!(vars[name]["type"], "query", "{name}");
        assert_eq!(vars[name]["datasource"]["uid"], "${datasource}", "{name}");
    }
    let panels = all_panels(&d["panels"]);
    let mut ids = BTreeSet::new();
    let mut graphs = 0;
    for p in &panels {
        let title = &p["title"];
        assert!(
            title.as_str().is_some_and(|t| !t.is_empty()),
            "panel without title: {p}"
        );
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id in {title}"
        );
        let g = &p["gridPos"];
        for k in ["x", "y", "w", "h"] {
            assert!(g[k].is_u64(), "{title}: gridPos.{k}");
        }
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{title}: too wide"
        );
        if p["type"] == "row" {
            assert!(p.get("targets").is_none(), "{title}: a row has no targets");
            continue;
        }
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "{title}: refId twice"
            );
        }
        graphs += 1;
    }
    assert!(graphs >= 20, "only {graphs} panels");
    // At least one collapsed row keeps its panels nested: they must be found too.
    assert!(panels.iter().any(|p| p["type"] == "row"
        && p["collapsed"] == true
        && p["panels"].as_array().is_some_and(|a| !a.is_empty())));
}

// ------------------------------------------------------------------ PromQL

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num,
    Var,
    /// A `[…]` range or subquery.
    Range,
    Sym(&'static str),
}

fn lex(expr: &str) -> Vec<Tok> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            while i < b.len() && b[i] as char != c {
                if b[i] == b'\\' && c != '`' {
                    i += 1;
                }
                s.push(b[i] as char);
                i += 1;
            }
            assert!(i < b.len(), "unterminated string in {expr}");
            i += 1;
            out.push(Tok::Str(s));
        } else if c == '[' {
            let end = expr[i..]
                .find(']')
                .unwrap_or_else(|| panic!("unclosed [ in {expr}"));
            i += end + 1;
            out.push(Tok::Range);
        } else if c == '$' {
            i += 1;
            if b.get(i) == Some(&b'{') {
                i += expr[i..].find('}').expect("closing }") + 1;
            } else {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
            out.push(Tok::Var);
        } else if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            out.push(Tok::Ident(expr[start..i].to_owned()));
        } else {
            const SYMS: [&str; 20] = [
                "=~", "!~", "!=", "==", ">=", "<=", "{", "}", "(", ")", ",", "=", "+", "-", "*",
                "/", "%", "^", ">", "<",
            ];
            let s = SYMS
                .iter()
                .find(|s| expr[i..].starts_with(**s))
                .unwrap_or_else(|| panic!("unexpected {c:?} in {expr}"));
            i += s.len();
            out.push(Tok::Sym(s));
        }
    }
    out
}

const FUNCTIONS: &[&str] = &[
    // aggregations
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    // functions
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "histogram_quantile",
    "histogram_fraction",
    "label_replace",
    "label_join",
    "abs",
    "ceil",
    "floor",
    "round",
    "clamp",
    "clamp_min",
    "clamp_max",
    "vector",
    "scalar",
    "time",
    "absent",
    "absent_over_time",
    "sort",
    "sort_desc",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "quantile_over_time",
    "timestamp",
    "predict_linear",
    "exp",
    "ln",
    "log2",
    "log10",
    "sqrt",
];
const OPERATOR_WORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// A metric named in a query, with its label matchers (label, operator, literal value or
/// `None` for a `$variable`).
#[derive(Debug)]
struct MetricRef {
    name: String,
    at: usize,
    matchers: Vec<(String, &'static str, Option<String>)>,
}

/// `by (…)`/`without (…)` labels and the token span of the aggregated expression.
#[derive(Debug)]
struct Grouping {
    labels: Vec<String>,
    span: (usize, usize),
}

#[derive(Debug, Default)]
struct Parsed {
    metrics: Vec<MetricRef>,
    groupings: Vec<Grouping>,
}

fn matching_close(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Sym("(") => depth += 1,
            Tok::Sym(")") => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses")
}

fn matching_open(toks: &[Tok], close: usize) -> usize {
    let mut depth = 0;
    for i in (0..=close).rev() {
        match toks[i] {
            Tok::Sym(")") => depth += 1,
            Tok::Sym("(") => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses")
}

/// Names inside `( a, b )` starting at `open`; returns them and the index after `)`.
fn label_list(toks: &[Tok], open: usize, expr: &str) -> (Vec<String>, usize) {
    assert_eq!(
        toks.get(open),
        Some(&Tok::Sym("(")),
        "label list expected in {expr}"
    );
    let mut labels = Vec::new();
    let mut i = open + 1;
    loop {
        match &toks[i] {
            Tok::Ident(l) => labels.push(l.clone()),
            Tok::Sym(",") => {}
            Tok::Sym(")") => return (labels, i + 1),
            t => panic!("unexpected {t:?} in a label list of {expr}"),
        }
        i += 1;
    }
}

fn parse(expr: &str) -> Parsed {
    let toks = lex(expr);
    let mut p = Parsed::default();
    let mut i = 0;
    while i < toks.len() {
        let Tok::Ident(word) = &toks[i] else {
            assert_ne!(
                toks[i],
                Tok::Sym("{"),
                "a selector without a metric name in {expr}"
            );
            i += 1;
            continue;
        };
        if GROUPING.contains(&word.as_str()) {
            if word.starts_with("group_") && toks.get(i + 1) != Some(&Tok::Sym("(")) {
                i += 1;
                continue;
            }
            let (labels, after) = label_list(&toks, i + 1, expr);
            if matches!(word.as_str(), "by" | "without") {
                let span = if toks.get(after) == Some(&Tok::Sym("(")) {
                    (after, matching_close(&toks, after))
                } else {
                    assert!(
                        i > 0 && toks[i - 1] == Tok::Sym(")"),
                        "`{word}` without an aggregation in {expr}"
                    );
                    (matching_open(&toks, i - 1), i - 1)
                };
                p.groupings.push(Grouping { labels, span });
            }
            i = after;
            continue;
        }
        if OPERATOR_WORDS.contains(&word.as_str()) {
            i += 1;
            continue;
        }
        let aggregation_modifier =
            matches!(toks.get(i + 1), Some(Tok::Ident(w)) if w == "by" || w == "without");
        if toks.get(i + 1) == Some(&Tok::Sym("(")) || aggregation_modifier {
            assert!(
                FUNCTIONS.contains(&word.as_str()),
                "unknown PromQL function {word} in {expr}"
            );
            i += 1;
            continue;
        }
        let mut m = MetricRef {
            name: word.clone(),
            at: i,
            matchers: Vec::new(),
        };
        i += 1;
        if toks.get(i) == Some(&Tok::Sym("{")) {
            i += 1;
            loop {
                match &toks[i] {
                    Tok::Sym("}") => break,
                    Tok::Sym(",") => i += 1,
                    Tok::Ident(label) => {
                        let op = match toks[i + 1] {
                            Tok::Sym(op @ ("=" | "!=" | "=~" | "!~")) => op,
                            ref t => panic!("bad matcher {t:?} in {expr}"),
                        };
                        let value = match &toks[i + 2] {
                            Tok::Str(s) if !s.contains('$') => Some(s.clone()),
                            Tok::Str(_) => None,
                            t => panic!("bad matcher value {t:?} in {expr}"),
                        };
                        m.matchers.push((label.clone(), op, value));
                        i += 3;
                    }
                    t => panic!("unexpected {t:?} in a selector of {expr}"),
                }
            }
            i += 1;
        }
        p.metrics.push(m);
    }
    p
}

#[test]
fn promql_names_are_extracted() {
    let p = parse(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{route=~"$route",x="1"}[$__rate_interval]))) / on (route) group_left sum(b_total) by (backend) > 0"#,
    );
    let names: Vec<&str> = p.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a_bucket", "b_total"]);
    assert_eq!(
        p.metrics[0].matchers,
        [
            ("route".into(), "=~", None),
            ("x".into(), "=", Some("1".into()))
        ]
    );
    let by: Vec<(Vec<String>, Vec<&str>)> = p
        .groupings
        .iter()
        .map(|g| {
            let inside = p
                .metrics
                .iter()
                .filter(|m| m.at > g.span.0 && m.at < g.span.1);
            (g.labels.clone(), inside.map(|m| m.name.as_str()).collect())
        })
        .collect();
    assert_eq!(
        by,
        [
            (vec!["le".to_owned(), "route".to_owned()], vec!["a_bucket"]),
            (vec!["backend".to_owned()], vec!["b_total"]),
        ]
    );
}

// ------------------------------------------------------------------ what is exported

/// Series names with the label names (and values) seen on them, and family types.
#[derive(Debug, Default)]
struct Catalog {
    /// series name → label → values (empty for the operator, whose values are not known).
    series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    types: BTreeMap<String, String>,
    values_known: bool,
}

fn scrape_catalog(text: &str) -> Catalog {
    let mut c = Catalog {
        values_known: true,
        ..Catalog::default()
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE line");
            c.types.insert(name.to_owned(), ty.trim().to_owned());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("sample line");
        let entry = c.series.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let close = line.rfind('}').expect("closing brace");
            // Label values here are route/backend names and fixed words: no `",` inside.
            for pair in line[name_end + 1..close].split("\",") {
                let (k, v) = pair.split_once("=\"").expect("label pair");
                entry
                    .entry(k.to_owned())
                    .or_default()
                    .insert(v.trim_end_matches('"').to_owned());
            }
        }
    }
    c
}

/// The operator's metrics as `operator/src/metrics.rs` registers them: the registry prefix,
/// each `registry.register("name", "help", var.clone())`, the type of `var`
/// (Counter, Gauge, Histogram, or a `Family` of them) and the fields of its label struct.
/// (The e2e crate does not depend on the operator crate, so its registry cannot be built here.)
fn operator_catalog() -> Catalog {
    let src =
        std::fs::read_to_string(repo_file("operator/src/metrics.rs")).expect("operator metrics.rs");
    let flat: String = src.split_whitespace().collect::<Vec<_>>().join(" ");
    let prefix = between(&flat, "Registry::with_prefix(\"", "\"").expect("registry prefix");
    let label_fields = |ty: &str| -> Vec<String> {
        let body = between(&flat, &format!("pub struct {ty} {{"), "}")
            .unwrap_or_else(|| panic!("label struct {ty}"));
        body.match_indices("pub ")
            .filter_map(|(at, _)| {
                let (name, rest) = body[at + 4..].split_once(':')?;
                let name = name.trim();
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    .then(|| name.to_owned())
                    .filter(|_| !rest.starts_with(':'))
            })
            .collect()
    };
    // (kind, label struct) of a type written as `Family<L, T…>`, `Family::<L, T>`, `Counter`, ….
    let resolve = |ty: &str| -> (String, Option<String>) {
        let ty = ty.trim();
        if let Some(rest) = ty.strip_prefix("Family::<").or(ty.strip_prefix("Family<")) {
            let mut parts = rest.split(',');
            let labels = parts.next().unwrap().trim().to_owned();
            let value = parts
                .next()
                .unwrap()
                .trim()
                .trim_end_matches('>')
                .to_owned();
            return (value, Some(labels));
        }
        (ty.to_owned(), None)
    };
    let mut c = Catalog::default();
    let mut registered = 0;
    let mut rest = flat.as_str();
    while let Some(at) = rest.find("registry.register(") {
        rest = &rest[at + "registry.register(".len()..];
        let name = between(rest, "\"", "\"").expect("metric name");
        let call_end = rest.find(");").expect("end of register call");
        let var = rest[..call_end]
            .trim_end_matches([',', ' '])
            .rsplit(',')
            .next()
            .unwrap()
            .trim()
            .trim_end_matches(".clone()")
            .to_owned();
        // `let var: Type = …` or `let var = Type::default()` / `Type::new…`.
        let decl =
            between(&flat, &format!("let {var}"), ";").unwrap_or_else(|| panic!("let {var}"));
        let mut ty = match decl.trim().strip_prefix(':') {
            Some(t) => t.split('=').next().unwrap().trim().to_owned(),
            None => {
                let rhs = decl.split_once('=').unwrap().1.trim();
                rhs[..rhs.rfind("::").unwrap()].to_owned()
            }
        };
        if let Some(alias) = between(&flat, &format!("type {ty} ="), ";") {
            ty = alias.trim().to_owned();
        }
        let (kind, labels) = resolve(&ty);
        let mut labels: BTreeSet<String> = labels
            .map(|l| label_fields(&l))
            .unwrap_or_default()
            .into_iter()
            .collect();
        let family = format!("{prefix}_{name}");
        let series: Vec<(String, bool)> = match kind.as_str() {
            "Counter" => vec![(format!("{family}_total"), false)],
            "Gauge" => vec![(family.clone(), false)],
            "Histogram" => vec![
                (format!("{family}_bucket"), true),
                (format!("{family}_sum"), false),
                (format!("{family}_count"), false),
            ],
            other => panic!("{family}: metric type {other} not understood"),
        };
        c.types.insert(family, kind.to_lowercase());
        for (s, bucket) in series {
            let mut l = labels.clone();
            if bucket {
                l.insert("le".into());
            }
            c.series
                .insert(s, l.into_iter().map(|k| (k, BTreeSet::new())).collect());
        }
        labels.clear();
        registered += 1;
    }
    assert!(
        registered >= 5,
        "only {registered} operator registrations parsed"
    );
    assert_eq!(
        registered,
        src.matches(".register(").count(),
        "every register call parsed"
    );
    c
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let to = s[from..].find(end)?;
    Some(&s[from..from + to])
}

/// Problems with one query against the exports.
fn check_query(
    label: &str,
    expr: &str,
    proxy: &Catalog,
    operator: &Catalog,
    used: &mut BTreeSet<String>,
) -> Vec<String> {
    let p = parse(expr);
    let mut problems = Vec::new();
    if p.metrics.is_empty() {
        problems.push(format!("{label}: no metric in {expr}"));
    }
    let catalog = |name: &str| {
        if name.starts_with("switchyard_operator_") {
            operator
        } else {
            proxy
        }
    };
    for m in &p.metrics {
        used.insert(m.name.clone());
        let c = catalog(&m.name);
        let Some(labels) = c.series.get(&m.name) else {
            problems.push(format!(
                "{label}: series {} not exported (query: {expr})",
                m.name
            ));
            continue;
        };
        let (family, want) = if let Some(f) = m.name.strip_suffix("_total") {
            (f, "counter")
        } else if let Some(f) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| m.name.strip_suffix(s))
            .filter(|f| c.types.get(*f).is_some_and(|t| t == "histogram"))
        {
            (f, "histogram")
        } else {
            (m.name.as_str(), "gauge")
        };
        if c.types.get(family).map(String::as_str) != Some(want) {
            problems.push(format!(
                "{label}: {} should be a {want} family {family}, exposition says {:?}",
                m.name,
                c.types.get(family)
            ));
        }
        for (l, op, value) in &m.matchers {
            let Some(values) = labels.get(l) else {
                problems.push(format!(
                    "{label}: {} has no label {l} (has {:?})",
                    m.name,
                    labels.keys()
                ));
                continue;
            };
            if let (true, "=", Some(v)) = (c.values_known, *op, value) {
                if !values.contains(v) {
                    problems.push(format!(
                        "{label}: {}{{{l}=\"{v}\"}} never seen (values {values:?})",
                        m.name
                    ));
                }
            }
        }
    }
    for g in &p.groupings {
        let inside: Vec<&MetricRef> = p
            .metrics
            .iter()
            .filter(|m| m.at > g.span.0 && m.at < g.span.1)
            .collect();
        if inside.is_empty() {
            problems.push(format!(
                "{label}: by/without ({:?}) over no metric in {expr}",
                g.labels
            ));
        }
        for m in inside {
            let Some(labels) = catalog(&m.name).series.get(&m.name) else {
                continue;
            };
            for l in &g.labels {
                if !labels.contains_key(l) {
                    problems.push(format!(
                        "{label}: by ({l}) but {} has no label {l} (has {:?})",
                        m.name,
                        labels.keys()
                    ));
                }
            }
        }
    }
    problems
}

// ------------------------------------------------------------------ traffic

fn config(live: &str, dead: &str, version: &str) -> String {
    let backend = |name: &str, url: &str, extra: &str| {
        format!("  - name: {name}\n    baseUrl: '{url}'\n    servedModel: qwen3-coder\n    contextWindow: 32768\n{extra}")
    };
    format!(
        "version: {version}\nserver: {{bodyReadTimeoutMs: 300}}\nbackends:\n{}{}{}routes:\n\
         \x20 - name: failover\n    models: ['failover']\n    backend: primary\n    fallbacks: [vllm]\n\
         \x20 - name: budget\n    models: ['budget']\n    backend: tight\n    retries: {{attempts: 2, backoffMs: 1, maxBackoffMs: 2}}\n\
         \x20 - name: main\n    models: ['*']\n    backend: vllm\n",
        backend("vllm", live, ""),
        backend("primary", dead, "    outlier: {consecutiveFailures: 1}\n"),
        backend("tight", live, "    retryBudget: {ratio: 0.0, minPerSecond: 0}\n"),
    )
}

async fn post(proxy: &ProxyProcess, body: Value) -> (u16, String) {
    let resp = http()
        .post(format!("{}/v1/messages", proxy.url()))
        .json(&body)
        .send()
        .await
        .expect("proxy answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn message(model: &str, text: &str, stream: bool, max_tokens: u32) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "stream": stream,
        "messages": [{"role": "user", "content": text}]})
}

/// Polls `/metrics` (bounded) until `series` has a sample.
async fn wait_for_sample(proxy: &ProxyProcess, series: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = proxy.metrics().await;
        if sample(&text, series) > 0.0 {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never appeared:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Drives the proxy through every path the dashboard shows, so that each label set exists.
async fn drive(proxy: &ProxyProcess, cfg: &TempFile, live: &str, dead: &str) -> String {
    // Served, with a client-invented field (dropped_params{kind="other"}).
    let mut body = message("claude-sonnet-4-5", "hi", false, 100);
    body["some_client_field"] = json!(true);
    let (status, text) = post(proxy, body).await;
    assert_eq!(status, 200, "{text}");
    // A stream (time to first token).
    let (status, text) = post(proxy, message("claude-sonnet-4-5", "hi", true, 100)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("message_stop"), "{text}");
    // An upstream error answered 5xx (upstream_errors{kind="status"}).
    let (status, text) = post(
        proxy,
        message("claude-sonnet-4-5", "[[mock:error:500]]", false, 100),
    )
    .await;
    assert!(status >= 500, "{status} {text}");
    // max_tokens the whole window: the prompt is counted exactly first (context_retries).
    let (status, text) = post(proxy, message("claude-sonnet-4-5", "hi", false, 32768)).await;
    assert_eq!(status, 200, "{text}");
    // Dead primary: unreachable, cooled down (its only endpoint), fallback to vllm.
    let (status, text) = post(proxy, message("failover", "hi", true, 100)).await;
    assert_eq!(status, 200, "{text}");
    // A retry refused by an empty retry budget.
    let (status, text) = post(proxy, message("budget", "[[mock:error:500]]", false, 100)).await;
    assert!(status >= 500, "{status} {text}");
    // A body slower than bodyReadTimeoutMs: 408, requests_refused{reason="body_read_timeout"}.
    let mut tcp = tokio::net::TcpStream::connect(proxy.api).await.unwrap();
    tcp.write_all(
        b"POST /v1/messages HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A reload applied, then one rejected.
    cfg.replace(&config(live, dead, "two"));
    wait_for_sample(proxy, "switchyard_config_reloads_total{result=\"applied\"}").await;
    cfg.replace("backends: [unclosed\n");
    wait_for_sample(
        proxy,
        "switchyard_config_reloads_total{result=\"rejected\"}",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_exported_metrics_and_labels() {
    let live = mock().await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{dead_port}/v1");
    let cfg = TempFile::new(&config(&live.base_url(), &dead, "one"));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).expect("proxy starts");
    let text = drive(&proxy, &cfg, &live.base_url(), &dead).await;

    let proxy_catalog = scrape_catalog(&text);
    let operator = operator_catalog();
    let d = dashboard();
    let queries = queries(&d);
    assert!(queries.len() >= 30, "only {} queries", queries.len());
    let mut used = BTreeSet::new();
    let problems: Vec<String> = queries
        .iter()
        .flat_map(|(label, expr)| check_query(label, expr, &proxy_catalog, &operator, &mut used))
        .collect();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n\nscrape:\n{text}",
        problems.len(),
        problems.join("\n")
    );
    // The areas the dashboard is for are all there (a query may not silently go missing).
    for needed in [
        "switchyard_requests_total",
        "switchyard_time_to_first_token_seconds_bucket",
        "switchyard_tokens_total",
        "switchyard_active_streams",
        "switchyard_fallbacks_total",
        "switchyard_ejections_total",
        "switchyard_context_retries_total",
        "switchyard_config_reloads_total",
        "switchyard_config_info",
        "switchyard_requests_refused_total",
        "switchyard_upstream_errors_total",
        "switchyard_operator_reconciles_total",
        "switchyard_operator_proxies_synced",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    let unused: Vec<&String> = proxy_catalog
        .types
        .keys()
        .chain(operator.types.keys())
        .filter(|f| !used.iter().any(|u| u.starts_with(f.as_str())))
        .collect();
    if !unused.is_empty() {
        eprintln!("metric families not on the dashboard: {unused:?}");
    }
}

#[test]
fn the_checker_reports_what_is_not_exported() {
    let proxy = scrape_catalog(
        "# TYPE switchyard_requests counter\nswitchyard_requests_total{route=\"a\",status=\"200\"} 1\n\
         # TYPE switchyard_active_streams gauge\nswitchyard_active_streams 0\n# EOF\n",
    );
    let operator = operator_catalog();
    let mut used = BTreeSet::new();
    let mut check = |expr: &str| check_query("t", expr, &proxy, &operator, &mut used);
    assert!(
        check(r#"sum by (route) (rate(switchyard_requests_total{status="200"}[5m]))"#).is_empty()
    );
    assert!(check("sum(switchyard_active_streams)").is_empty());
    assert!(check("histogram_quantile(0.9, sum by (le, controller) (rate(switchyard_operator_reconcile_duration_seconds_bucket[5m])))").is_empty());
    let bad = [
        "rate(switchyard_requests[5m])",
        r#"rate(switchyard_requests_total{model="x"}[5m])"#,
        r#"rate(switchyard_requests_total{status="418"}[5m])"#,
        "sum by (backend) (rate(switchyard_requests_total[5m]))",
        "sum(rate(switchyard_requests_total[5m])) by (key)",
        "switchyard_active_streams_total",
        "sum(switchyard_operator_reconciles)",
        "sum by (error) (rate(switchyard_operator_reconciles_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(switchyard_operator_reconcile_duration_seconds[5m])))",
    ];
    for expr in bad {
        assert!(!check(expr).is_empty(), "not reported: {expr}");
    }
}
