//! The Node's labels: the ones a kubelet sets itself, `--node-labels`, and the NodeRestriction
//! rule that decides which of them a node may set at all.
//!
//! Owns [`node_labels`], [`parse_node_labels`] and the label rule. The rule is the API server's:
//! the NodeRestriction admission plugin (`plugin/pkg/admission/noderestriction`) forbids a node
//! to set a label whose key is in the `kubernetes.io` or `k8s.io` namespaces (or a subdomain of
//! them) unless the kubelet's own `IsKubeletLabel` (`k8s.io/kubelet/pkg/apis`) allows it, and
//! forbids `node-restriction.kubernetes.io` outright. The kubelet refuses such `--node-labels`
//! at start-up; so do we, before the API server answers 403 (fixture 04a). Must not do I/O.

use std::collections::BTreeMap;

use super::NodeError;

/// Label keys a kubelet may set on its own Node (`kubeletapis.KubeletLabels()`, sorted).
pub const KUBELET_LABELS: [&str; 11] = [
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// Label namespaces (and their subdomains) a kubelet may set freely.
pub const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

/// The namespace only cluster admins may set, so workloads can trust it for isolation.
pub const NODE_RESTRICTION_NAMESPACE: &str = "node-restriction.kubernetes.io";

/// `kubernetes.io/hostname`.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// `kubernetes.io/os`.
pub const LABEL_OS: &str = "kubernetes.io/os";
/// `kubernetes.io/arch`.
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
/// `beta.kubernetes.io/os`: kubelet 1.28 still sets it at registration.
pub const LABEL_BETA_OS: &str = "beta.kubernetes.io/os";
/// `beta.kubernetes.io/arch`: kubelet 1.28 still sets it at registration.
pub const LABEL_BETA_ARCH: &str = "beta.kubernetes.io/arch";
/// The label virtual kubelets carry so that workloads can select (or avoid) them.
pub const LABEL_TYPE: (&str, &str) = ("type", "virtual-kubelet");

/// The labels to register the Node with.
///
/// As kubelet 1.28's `initialNode`: `kubernetes.io/hostname` (the node name: a virtual node's
/// identity is its name, and several may share a host), `kubernetes.io/os`, `kubernetes.io/arch`
/// and their `beta.` twins; then `type=virtual-kubelet`; then `extra` (`--node-labels`), which
/// may override any of those, as the kubelet lets it. Every key is checked against the
/// NodeRestriction rule and label syntax; all forbidden keys are reported at once.
pub fn node_labels(
    name: &str,
    extra: &[(String, String)],
    arch: &str,
    os: &str,
) -> Result<BTreeMap<String, String>, NodeError> {
    let mut labels = BTreeMap::new();
    for (k, v) in [
        (LABEL_HOSTNAME, name),
        (LABEL_OS, os),
        (LABEL_ARCH, arch),
        (LABEL_BETA_OS, os),
        (LABEL_BETA_ARCH, arch),
        LABEL_TYPE,
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    for (k, v) in extra {
        labels.insert(k.clone(), v.clone());
    }
    for (k, v) in &labels {
        validate_key(k)?;
        validate_value(k, v)?;
    }
    let forbidden: Vec<String> = labels
        .keys()
        .filter(|k| is_forbidden_node_label(k))
        .cloned()
        .collect();
    if !forbidden.is_empty() {
        return Err(NodeError::ForbiddenLabels { keys: forbidden });
    }
    Ok(labels)
}

/// Parses `--node-labels` (`k=v,k2=v2`; a value may be empty, `k=`), in order, as the kubelet's
/// `ConfigurationMap` flag does: pairs are split on `,`, each is trimmed, the first `=` splits
/// key from value. An empty input is no labels. A repeated key is an error rather than a silent
/// last-one-wins.
pub fn parse_node_labels(input: &str) -> Result<Vec<(String, String)>, NodeError> {
    let err = |reason: String| NodeError::NodeLabelsSyntax {
        input: input.to_string(),
        reason,
    };
    let mut out: Vec<(String, String)> = Vec::new();
    if input.trim().is_empty() {
        return Ok(out);
    }
    for pair in input.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            return Err(err("empty entry (two commas in a row?)".to_string()));
        }
        let Some((k, v)) = pair.split_once('=') else {
            return Err(err(format!("{pair:?} is not key=value")));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(err(format!("{pair:?} has an empty key")));
        }
        if out.iter().any(|(seen, _)| seen == k) {
            return Err(err(format!("key {k:?} is given twice")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// True if NodeRestriction would refuse a node that sets this label key on itself.
pub fn is_forbidden_node_label(key: &str) -> bool {
    let ns = label_namespace(key);
    in_namespace(ns, NODE_RESTRICTION_NAMESPACE)
        || (is_kubernetes_label(key) && !is_kubelet_label(key))
}

/// True for keys in the `kubernetes.io` or `k8s.io` namespaces or their subdomains.
pub fn is_kubernetes_label(key: &str) -> bool {
    let ns = label_namespace(key);
    in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io")
}

/// The kubelet's `IsKubeletLabel`: in [`KUBELET_LABELS`], or in (a subdomain of) one of
/// [`KUBELET_LABEL_NAMESPACES`].
pub fn is_kubelet_label(key: &str) -> bool {
    if KUBELET_LABELS.contains(&key) {
        return true;
    }
    let ns = label_namespace(key);
    KUBELET_LABEL_NAMESPACES
        .iter()
        .any(|allowed| in_namespace(ns, allowed))
}

/// The prefix before `/`, or "" for an unprefixed key.
fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

/// `ns` is `domain` or a subdomain of it.
fn in_namespace(ns: &str, domain: &str) -> bool {
    ns == domain
        || ns
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

/// apimachinery's `IsQualifiedName`: `[prefix/]name`, prefix a DNS-1123 subdomain of at most
/// 253 characters, name at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn validate_key(key: &str) -> Result<(), NodeError> {
    let bad = |reason: &str| NodeError::InvalidLabel {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(bad("the prefix before '/' is empty"));
        }
        if prefix.len() > 253 {
            return Err(bad("the prefix is longer than 253 characters"));
        }
        let dns_label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !prefix.split('.').all(dns_label_ok) {
            return Err(bad(
                "the prefix must be a lowercase DNS subdomain (e.g. example.com)",
            ));
        }
    }
    if name.is_empty() {
        return Err(bad("the name part is empty"));
    }
    check_name_chars(name).map_err(|r| bad(&r))
}

/// apimachinery's `IsValidLabelValue`: empty, or at most 63 characters of `[A-Za-z0-9._-]`,
/// alphanumeric at both ends.
fn validate_value(key: &str, value: &str) -> Result<(), NodeError> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_chars(value).map_err(|r| NodeError::InvalidLabel {
        key: key.to_string(),
        reason: format!("value {value:?}: {r}"),
    })
}

fn check_name_chars(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err("must be at most 63 characters".to_string());
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !s.chars().all(ok_char) {
        return Err("may contain only letters, digits, '-', '_' and '.'".to_string());
    }
    let alnum_ends = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum_ends {
        return Err("must start and end with a letter or digit".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_labels_are_the_kubelets_plus_type() {
        let labels = node_labels("vk-node", &[], "amd64", "linux").unwrap();
        let expected: BTreeMap<String, String> = pairs(&[
            ("beta.kubernetes.io/arch", "amd64"),
            ("beta.kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("kubernetes.io/hostname", "vk-node"),
            ("kubernetes.io/os", "linux"),
            ("type", "virtual-kubelet"),
        ])
        .into_iter()
        .collect();
        assert_eq!(labels, expected);
    }

    #[test]
    fn fixture_11a_labels_are_what_we_set() {
        // After kube-controller-manager touched it, the node carries exactly our defaults.
        let body = include_str!(
            "../../tests/fixtures/apiserver/11a-node-get-accept-json/response-body.json"
        );
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_str(body).unwrap();
        let ours = node_labels("vk-node", &[], "amd64", "linux").unwrap();
        assert_eq!(node.metadata.labels.unwrap(), ours);
    }

    #[test]
    fn fixture_04a_labels_are_refused_up_front_with_both_keys() {
        // 04a: the API server's 403 names exactly these two.
        let extra = pairs(&[
            ("kubernetes.io/role", "agent"),
            ("node-role.kubernetes.io/agent", ""),
        ]);
        match node_labels("vk-node", &extra, "amd64", "linux") {
            Err(NodeError::ForbiddenLabels { keys }) => {
                assert_eq!(
                    keys,
                    vec!["kubernetes.io/role", "node-role.kubernetes.io/agent"]
                );
            }
            other => panic!("expected ForbiddenLabels, got {other:?}"),
        }
        let msg = node_labels("vk-node", &extra, "amd64", "linux")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(
                "refusing node labels kubernetes.io/role, node-role.kubernetes.io/agent: "
            ),
            "{msg}"
        );
        assert!(msg.contains("kubectl label node"), "{msg}");
    }

    #[test]
    fn the_noderestriction_rule_key_by_key() {
        let table: &[(&str, bool)] = &[
            // The kubelet's own set.
            ("kubernetes.io/hostname", false),
            ("kubernetes.io/arch", false),
            ("kubernetes.io/os", false),
            ("beta.kubernetes.io/os", false),
            ("beta.kubernetes.io/arch", false),
            ("beta.kubernetes.io/instance-type", false),
            ("node.kubernetes.io/instance-type", false),
            ("failure-domain.beta.kubernetes.io/zone", false),
            ("failure-domain.beta.kubernetes.io/region", false),
            ("topology.kubernetes.io/zone", false),
            ("topology.kubernetes.io/region", false),
            // The allowed namespaces and their subdomains.
            ("node.kubernetes.io/windows-build", false),
            ("node.kubernetes.io/anything", false),
            ("kubelet.kubernetes.io/anything", false),
            ("foo.node.kubernetes.io/x", false),
            ("foo.kubelet.kubernetes.io/x", false),
            // Outside kubernetes.io / k8s.io: anything goes.
            ("type", false),
            ("example.com/role", false),
            ("notkubernetes.io/x", false),
            ("k8s.io.example.com/x", false),
            // Forbidden.
            ("kubernetes.io/role", true),
            ("node-role.kubernetes.io/agent", true),
            ("node-role.kubernetes.io/worker", true),
            ("beta.kubernetes.io/other", true),
            ("topology.kubernetes.io/rack", true),
            ("k8s.io/x", true),
            ("foo.k8s.io/x", true),
            ("xnode.kubernetes.io/x", true),
            ("node-restriction.kubernetes.io/x", true),
            ("a.node-restriction.kubernetes.io/x", true),
        ];
        for (key, forbidden) in table {
            assert_eq!(is_forbidden_node_label(key), *forbidden, "{key}");
        }
    }

    #[test]
    fn node_labels_override_defaults_as_the_kubelet_lets_them() {
        let extra = pairs(&[
            ("type", "edge"),
            ("example.com/pool", "a"),
            ("node.kubernetes.io/x", "y"),
        ]);
        let labels = node_labels("vk-node", &extra, "arm64", "linux").unwrap();
        assert_eq!(labels["type"], "edge");
        assert_eq!(labels["example.com/pool"], "a");
        assert_eq!(labels["node.kubernetes.io/x"], "y");
        assert_eq!(labels["kubernetes.io/arch"], "arm64");
    }

    #[test]
    fn parses_node_labels_flag() {
        assert_eq!(parse_node_labels("").unwrap(), vec![]);
        assert_eq!(parse_node_labels("  ").unwrap(), vec![]);
        assert_eq!(
            parse_node_labels("a=1, example.com/b=two,c=").unwrap(),
            pairs(&[("a", "1"), ("example.com/b", "two"), ("c", "")])
        );
        assert_eq!(parse_node_labels("k=v=w").unwrap(), pairs(&[("k", "v=w")]));
    }

    #[test]
    fn node_labels_flag_errors_are_clear() {
        let cases: &[(&str, &str)] = &[
            (
                "a",
                "failed to parse --node-labels \"a\": \"a\" is not key=value",
            ),
            (
                "a=1,,b=2",
                "failed to parse --node-labels \"a=1,,b=2\": empty entry (two commas in a row?)",
            ),
            (
                "=v",
                "failed to parse --node-labels \"=v\": \"=v\" has an empty key",
            ),
            (
                "a=1,a=2",
                "failed to parse --node-labels \"a=1,a=2\": key \"a\" is given twice",
            ),
        ];
        for (input, msg) in cases {
            assert_eq!(parse_node_labels(input).unwrap_err().to_string(), *msg);
        }
    }

    #[test]
    fn label_syntax_is_checked() {
        let bad: &[(&str, &str)] = &[
            ("-a", "v"),
            ("a/", "v"),
            ("/a", "v"),
            ("Example.com/a", "v"),
            ("a b", "v"),
            ("a", "-v"),
            ("a", "v v"),
            ("a/b/c", "v"),
        ];
        for (k, v) in bad {
            let extra = pairs(&[(k, v)]);
            assert!(
                matches!(
                    node_labels("n", &extra, "amd64", "linux"),
                    Err(NodeError::InvalidLabel { .. })
                ),
                "{k}={v} accepted"
            );
        }
        let long = "x".repeat(64);
        let extra = pairs(&[("a", long.as_str())]);
        let msg = node_labels("n", &extra, "amd64", "linux")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("must be at most 63 characters"), "{msg}");
        let ok = pairs(&[("a.b-c/D_e.f", "X.y_z-1"), ("x", "")]);
        assert!(node_labels("n", &ok, "amd64", "linux").is_ok());
    }
}
