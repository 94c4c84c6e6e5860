//! A strict reader of Prometheus's text exposition format (0.0.4), for the tests of `/metrics`
//! and `/metrics/resource`: every family has its `# HELP` then `# TYPE` before its samples,
//! samples belong to the family just declared (histograms through `_bucket`, `_sum`,
//! `_count`), label names and escapes are valid, values parse as Go writes floats, and
//! timestamps are integer milliseconds. It panics with the offending line otherwise, as
//! metrics-server's parser (prometheus' textparse) would refuse the scrape.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → (help, type).
    pub families: BTreeMap<String, (String, String)>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The samples of `name` whose labels include every pair of `want`.
    pub fn find(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The one sample of `name` with these labels.
    pub fn one(&self, name: &str, want: &[(&str, &str)]) -> &Sample {
        let found = self.find(name, want);
        assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
        found[0]
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(v: &str, line: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => v
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
    }
}

/// Parses `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn parse_labels<'a>(s: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = s.strip_prefix('{') else {
        return (labels, s);
    };
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        let eq = rest.find('=').unwrap_or_else(|| panic!("no = in {line:?}"));
        let name = &rest[..eq];
        assert!(is_name(name), "bad label name {name:?} in {line:?}");
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .unwrap_or_else(|| panic!("unquoted label value in {line:?}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(
            labels.insert(name.to_string(), value).is_none(),
            "duplicate label {name} in {line:?}"
        );
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// A series' labels without `le`.
type LabelPairs = Vec<(String, String)>;

pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    let mut current: Option<(String, String)> = None;
    let mut pending_help: Option<(String, String)> = None;
    assert!(
        text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_name(name), "bad family name in {line:?}");
            assert!(
                !out.families.contains_key(name),
                "family {name} declared twice"
            );
            pending_help = Some((name.to_string(), help.to_string()));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE needs a type");
            let (help_name, help) = pending_help
                .take()
                .unwrap_or_else(|| panic!("TYPE without HELP: {line:?}"));
            assert_eq!(help_name, name, "HELP and TYPE of different families");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            out.families
                .insert(name.to_string(), (help, kind.to_string()));
            current = Some((name.to_string(), kind.to_string()));
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        assert!(!line.is_empty(), "empty line in the exposition");
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let name = &line[..name_end];
        let (family, kind) = current
            .as_ref()
            .unwrap_or_else(|| panic!("sample before any TYPE: {line:?}"));
        let belongs = name == family
            || kind == "histogram"
                && [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .iter()
                .any(|n| n == name);
        assert!(belongs, "sample {name} outside its family {family}");
        let (labels, rest) = parse_labels(&line[name_end..], line);
        let mut parts = rest.trim_start_matches(' ').split(' ');
        let value = parse_value(parts.next().expect("value"), line);
        let timestamp_ms = parts.next().map(|t| {
            t.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp in {line:?}"))
        });
        assert!(parts.next().is_none(), "trailing fields in {line:?}");
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
            timestamp_ms,
        });
    }
    // Histogram buckets are cumulative and end with +Inf = _count.
    for (family, (_, kind)) in &out.families {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<LabelPairs, Vec<(f64, f64)>> = BTreeMap::new();
        for s in out
            .samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let le = parse_value(&s.labels["le"], family);
            let key: LabelPairs = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, s.value));
        }
        for (key, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family} {key:?}: buckets not cumulative: {buckets:?}"
            );
            assert_eq!(
                buckets.last().unwrap().0,
                f64::INFINITY,
                "{family}: no +Inf"
            );
        }
    }
    out
}
