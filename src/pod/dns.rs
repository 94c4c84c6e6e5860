//! A pod's name on the network: hostname, subdomain, DNS resolver config and managed /etc/hosts.
//!
//! Owns the kubelet's `GeneratePodHostNameAndDomain` and `GetNodenameForKernel`
//! (kubelet_pods.go, util), `GetPodDNS` (network/dns/dns.go) and `managedHostsFileContent`.
//! The host's resolv.conf arrives as text; this module never reads files. Where the kubelet
//! records an event (limits exceeded, no cluster DNS), the text is returned as a warning for the
//! caller to report.

use k8s_openapi::api::core::v1::{HostAlias, Pod};

use super::context::{NodeContext, TranslateError};
use super::key as pod_key;
use crate::cri::api;

/// The kubelet's default options for cluster DNS.
pub const DEFAULT_DNS_OPTIONS: &[&str] = &["ndots:5"];
/// At most this many nameservers (glibc's MAXNS).
pub const MAX_DNS_NAMESERVERS: usize = 3;
/// At most this many search domains (API validation, ExpandedDNSConfig).
pub const MAX_DNS_SEARCH_PATHS: usize = 32;
/// At most this many characters in the search line.
pub const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
/// Linux limit of a hostname (64 bytes with the terminating NUL).
pub const HOSTNAME_MAX_LEN: usize = 63;
/// Linux limit of a nodename set to an FQDN.
pub const FQDN_MAX_LEN: usize = 64;

const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HOSTS_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// The pod's DNS resolver config plus what the kubelet would have said about it in events
/// (`MissingClusterDNS`, `DNSConfigForming`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DnsPlan {
    pub config: api::DNSConfig,
    pub warnings: Vec<String>,
}

/// Hostname and domain as the kubelet's `GeneratePodHostNameAndDomain`: `spec.hostname` (a DNS
/// label) or the pod name, truncated to 63 characters without a trailing `-`/`.`; the domain is
/// `<subdomain>.<namespace>.svc.<cluster domain>` when `spec.subdomain` is set, else empty.
pub fn hostname_and_domain(
    pod: &Pod,
    cluster_domain: &str,
) -> Result<(String, String), TranslateError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let mut hostname = name.to_string();
    if let Some(h) = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
    {
        check_dns_label(pod, "hostname", h)?;
        hostname = h.to_string();
    }
    if hostname.len() > HOSTNAME_MAX_LEN {
        // Truncate on a char boundary (a pod name is ASCII; this is only belt and braces).
        let mut end = HOSTNAME_MAX_LEN;
        while !hostname.is_char_boundary(end) {
            end -= 1;
        }
        let truncated = hostname[..end].trim_end_matches(['-', '.']).to_string();
        if truncated.is_empty() {
            return Err(TranslateError::InvalidPodField {
                pod: pod_key(pod),
                field: "hostname",
                value: hostname,
                detail: "nothing is left after truncating it to 63 characters".into(),
            });
        }
        hostname = truncated;
    }
    let mut domain = String::new();
    if let Some(sub) = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        check_dns_label(pod, "subdomain", sub)?;
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        domain = format!("{sub}.{ns}.svc.{cluster_domain}");
    }
    Ok((hostname, domain))
}

/// The kernel hostname of the sandbox (`GetNodenameForKernel`): the FQDN when
/// `setHostnameAsFQDN` is true and the pod has a domain, else the short hostname.
pub fn kernel_hostname(pod: &Pod, cluster_domain: &str) -> Result<String, TranslateError> {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain)?;
    let as_fqdn = pod
        .spec
        .as_ref()
        .and_then(|s| s.set_hostname_as_fqdn)
        .unwrap_or(false);
    if domain.is_empty() || !as_fqdn {
        return Ok(hostname);
    }
    let fqdn = format!("{hostname}.{domain}");
    if fqdn.len() > FQDN_MAX_LEN {
        return Err(TranslateError::InvalidPodField {
            pod: pod_key(pod),
            field: "fqdn hostname",
            value: fqdn.clone(),
            detail: format!(
                "{} characters is the max, {} characters requested",
                FQDN_MAX_LEN,
                fqdn.len()
            ),
        });
    }
    Ok(fqdn)
}

fn check_dns_label(pod: &Pod, field: &'static str, value: &str) -> Result<(), TranslateError> {
    let b = value.as_bytes();
    let ok_inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let ok_end = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(ok_inner)
        && b.first().is_some_and(ok_end)
        && b.last().is_some_and(ok_end);
    if valid {
        return Ok(());
    }
    Err(TranslateError::InvalidPodField {
        pod: pod_key(pod),
        field,
        value: value.to_string(),
        detail: "not a valid DNS label (at most 63 of [a-z0-9-], starting and ending with \
                 [a-z0-9])"
            .into(),
    })
}

/// What the resolver of a pod gets from its policy.
enum DnsType {
    Cluster,
    Host,
    None,
}

fn dns_type(pod: &Pod) -> DnsType {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    match spec.and_then(|s| s.dns_policy.as_deref()) {
        Some("None") => DnsType::None,
        Some("ClusterFirstWithHostNet") => DnsType::Cluster,
        Some("Default") => DnsType::Host,
        // ClusterFirst falls back to the host's config on the host network. An unknown policy
        // (the API server rejects those) is ClusterFirst, as in the kubelet.
        _ if host_network => DnsType::Host,
        _ => DnsType::Cluster,
    }
}

/// The host's resolv.conf as the kubelet's `parseResolvConf`: nameservers accumulate, the last
/// `search` line wins (without `.` and trailing dots), options merge by name (last wins).
pub fn parse_resolv_conf(content: &str) -> Result<api::DNSConfig, String> {
    let mut config = api::DNSConfig::default();
    for line in content.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.split_first() {
            Some((&"nameserver", rest)) => match rest.first() {
                Some(ns) => config.servers.push(ns.to_string()),
                None => return Err("nameserver list is empty".into()),
            },
            Some((&"search", rest)) => {
                config.searches = rest
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some((&"options", rest)) => {
                let opts: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                config.options = merge_options(&config.options, &opts);
            }
            _ => {}
        }
    }
    Ok(config)
}

fn option_name(op: &str) -> &str {
    op.split(':').next().unwrap_or(op)
}

/// Options merged by name: a later option replaces an earlier one in place; new ones append.
fn merge_options(existing: &[String], new: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(existing.len() + new.len());
    for op in existing.iter().chain(new) {
        match out.iter_mut().find(|o| option_name(o) == option_name(op)) {
            Some(slot) => *slot = op.clone(),
            None => out.push(op.clone()),
        }
    }
    out
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The kubelet's `GetPodDNS`: the resolver config for the pod's DNS policy
/// (ClusterFirst: cluster nameservers, `<ns>.svc.<domain> svc.<domain> <domain>` + host
/// searches, `ndots:5`; Default, or ClusterFirst on the host network: the host's resolv.conf;
/// None: empty), then `spec.dnsConfig` appended, then the glibc/API limits applied.
pub fn dns_config(pod: &Pod, node: &NodeContext) -> Result<DnsPlan, TranslateError> {
    let mut warnings = Vec::new();
    let host = match node.host_resolv_conf.as_deref() {
        Some(content) => {
            parse_resolv_conf(content).map_err(|detail| TranslateError::ResolvConf {
                pod: pod_key(pod),
                detail,
            })?
        }
        None => api::DNSConfig::default(),
    };
    let mut config = host;
    let policy = dns_type(pod);
    match policy {
        DnsType::None => config = api::DNSConfig::default(),
        DnsType::Cluster if !node.cluster_dns.is_empty() => {
            config.servers = node.cluster_dns.clone();
            if !node.cluster_domain.is_empty() {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                let d = &node.cluster_domain;
                let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
                push_unique(&mut searches, config.searches.drain(..));
                config.searches = searches;
            }
            config.options = DEFAULT_DNS_OPTIONS.iter().map(|s| s.to_string()).collect();
        }
        DnsType::Cluster | DnsType::Host => {
            if matches!(policy, DnsType::Cluster) {
                warnings.push(format!(
                    "pod: {:?}. kubelet does not have ClusterDNS IP configured and cannot \
                     create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                    kubelet_pod_desc(pod)
                ));
            }
            if node.host_resolv_conf.is_none() {
                // The kubelet's `--resolv-conf=""`: the local resolver only.
                config.servers = vec!["127.0.0.1".into()];
                config.searches = vec![".".into()];
            }
        }
    }
    if let Some(extra) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        let mut servers = std::mem::take(&mut config.servers);
        push_unique(&mut servers, extra.nameservers.iter().flatten().cloned());
        config.servers = servers;
        let mut searches = std::mem::take(&mut config.searches);
        push_unique(&mut searches, extra.searches.iter().flatten().cloned());
        config.searches = searches;
        let opts: Vec<String> = extra
            .options
            .iter()
            .flatten()
            .filter_map(|o| {
                let name = o.name.as_deref()?;
                Some(match o.value.as_deref() {
                    Some(v) if !v.is_empty() => format!("{name}:{v}"),
                    _ => name.to_string(),
                })
            })
            .collect();
        config.options = merge_options(&config.options, &opts);
    }
    if config.servers.len() > MAX_DNS_NAMESERVERS {
        config.servers.truncate(MAX_DNS_NAMESERVERS);
        warnings.push(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied \
             nameserver line is: {}",
            config.servers.join(" ")
        ));
    }
    let mut limited = false;
    if config.searches.len() > MAX_DNS_SEARCH_PATHS {
        config.searches.truncate(MAX_DNS_SEARCH_PATHS);
        limited = true;
    }
    while config.searches.join(" ").len() > MAX_DNS_SEARCH_LIST_CHARS {
        config.searches.pop();
        limited = true;
    }
    if limited {
        warnings.push(format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied \
             search line is: {}",
            config.searches.join(" ")
        ));
    }
    Ok(DnsPlan { config, warnings })
}

/// The kubelet's `format.Pod`: `name_namespace(uid)`, used in messages the kubelet shows users.
pub fn kubelet_pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The kubelet's managed /etc/hosts for a pod on the pod network: header, localhost lines,
/// `<ip>\t<hostname>` (or `<ip>\t<hostname>.<domain>\t<hostname>` with a subdomain) for every
/// pod IP, then the pod's hostAliases.
pub fn etc_hosts(
    pod: &Pod,
    pod_ips: &[String],
    cluster_domain: &str,
) -> Result<String, TranslateError> {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain)?;
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        if domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    out.push_str(&host_aliases(pod));
    Ok(out)
}

/// The kubelet's /etc/hosts for a host-network pod: the node's own hosts file under a header,
/// then the pod's hostAliases.
pub fn etc_hosts_for_host_network(pod: &Pod, node_hosts: &str) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    out.push_str(&host_aliases(pod));
    out
}

fn host_aliases(pod: &Pod) -> String {
    let aliases: &[HostAlias] = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_deref())
        .unwrap_or_default();
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names: Vec<&str> = a.hostnames.iter().flatten().map(String::as_str).collect();
        out.push_str(&format!("{}\t{}\n", a.ip, names.join("\t")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(f: impl FnOnce(&mut PodSpec)) -> Pod {
        let mut spec = PodSpec {
            dns_policy: Some("ClusterFirst".into()),
            ..Default::default()
        };
        f(&mut spec);
        Pod {
            metadata: ObjectMeta {
                name: Some("p1".into()),
                namespace: Some("fixtures".into()),
                uid: Some("4efec839-56e9-47bb-866d-48bc6e748cd4".into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn node() -> NodeContext {
        let mut n = NodeContext::new("vk-node");
        n.cluster_dns = vec!["10.96.0.10".into()];
        n.host_resolv_conf = Some(
            "# host\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example. lab.example .\noptions timeout:2 attempts:3\n".into(),
        );
        n
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn dns_policy_table() {
        let cluster_searches = s(&[
            "fixtures.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "corp.example",
            "lab.example",
        ]);
        let host_searches = s(&["corp.example", "lab.example"]);
        let host_servers = s(&["192.168.1.1", "192.168.1.2"]);
        let host_options = s(&["timeout:2", "attempts:3"]);
        type Case = (
            &'static str,
            Option<&'static str>,
            bool,
            Vec<String>,
            Vec<String>,
            Vec<String>,
        );
        let cases: Vec<Case> = vec![
            (
                "ClusterFirst",
                Some("ClusterFirst"),
                false,
                s(&["10.96.0.10"]),
                cluster_searches.clone(),
                s(&["ndots:5"]),
            ),
            (
                "unset is ClusterFirst",
                None,
                false,
                s(&["10.96.0.10"]),
                cluster_searches.clone(),
                s(&["ndots:5"]),
            ),
            (
                "ClusterFirst on host network is Default",
                Some("ClusterFirst"),
                true,
                host_servers.clone(),
                host_searches.clone(),
                host_options.clone(),
            ),
            (
                "ClusterFirstWithHostNet",
                Some("ClusterFirstWithHostNet"),
                true,
                s(&["10.96.0.10"]),
                cluster_searches.clone(),
                s(&["ndots:5"]),
            ),
            (
                "ClusterFirstWithHostNet off host network",
                Some("ClusterFirstWithHostNet"),
                false,
                s(&["10.96.0.10"]),
                cluster_searches.clone(),
                s(&["ndots:5"]),
            ),
            (
                "Default",
                Some("Default"),
                false,
                host_servers.clone(),
                host_searches.clone(),
                host_options.clone(),
            ),
            ("None", Some("None"), false, vec![], vec![], vec![]),
        ];
        for (name, policy, host_network, servers, searches, options) in cases {
            let p = pod(|spec| {
                spec.dns_policy = policy.map(String::from);
                spec.host_network = Some(host_network);
            });
            let plan = dns_config(&p, &node()).unwrap();
            assert_eq!(plan.config.servers, servers, "{name}: servers");
            assert_eq!(plan.config.searches, searches, "{name}: searches");
            assert_eq!(plan.config.options, options, "{name}: options");
            assert!(plan.warnings.is_empty(), "{name}: {:?}", plan.warnings);
        }
    }

    #[test]
    fn dns_config_is_appended_and_options_merge_by_name() {
        let p = pod(|spec| {
            spec.dns_config = Some(PodDNSConfig {
                nameservers: Some(s(&["10.96.0.10", "1.1.1.1"])),
                searches: Some(s(&["svc.cluster.local", "extra.example"])),
                options: Some(vec![
                    PodDNSConfigOption {
                        name: Some("ndots".into()),
                        value: Some("2".into()),
                    },
                    PodDNSConfigOption {
                        name: Some("edns0".into()),
                        value: None,
                    },
                ]),
            });
        });
        let plan = dns_config(&p, &node()).unwrap();
        assert_eq!(plan.config.servers, s(&["10.96.0.10", "1.1.1.1"]));
        assert_eq!(
            plan.config.searches,
            s(&[
                "fixtures.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "lab.example",
                "extra.example"
            ])
        );
        assert_eq!(plan.config.options, s(&["ndots:2", "edns0"]));

        // None + dnsConfig is exactly the dnsConfig.
        let p = pod(|spec| {
            spec.dns_policy = Some("None".into());
            spec.dns_config = Some(PodDNSConfig {
                nameservers: Some(s(&["8.8.8.8"])),
                searches: Some(s(&["a.example"])),
                options: None,
            });
        });
        let plan = dns_config(&p, &node()).unwrap();
        assert_eq!(plan.config.servers, s(&["8.8.8.8"]));
        assert_eq!(plan.config.searches, s(&["a.example"]));
        assert!(plan.config.options.is_empty());
    }

    #[test]
    fn missing_cluster_dns_falls_back_to_the_host_with_a_warning() {
        let mut n = node();
        n.cluster_dns.clear();
        let plan = dns_config(&pod(|_| {}), &n).unwrap();
        assert_eq!(plan.config.servers, s(&["192.168.1.1", "192.168.1.2"]));
        assert_eq!(plan.warnings.len(), 1);
        assert!(plan.warnings[0].contains("does not have ClusterDNS IP configured"));
        assert!(plan.warnings[0].contains("p1_fixtures(4efec839"));
    }

    #[test]
    fn no_host_resolv_conf_means_the_local_resolver() {
        let mut n = node();
        n.host_resolv_conf = None;
        let plan = dns_config(&pod(|s| s.dns_policy = Some("Default".into())), &n).unwrap();
        assert_eq!(plan.config.servers, s(&["127.0.0.1"]));
        assert_eq!(plan.config.searches, s(&["."]));
        // Cluster DNS does not read the host's file at all.
        let plan = dns_config(&pod(|_| {}), &n).unwrap();
        assert_eq!(plan.config.searches.len(), 3);
    }

    #[test]
    fn limits_truncate_nameservers_and_searches_with_warnings() {
        let p = pod(|spec| {
            spec.dns_config = Some(PodDNSConfig {
                nameservers: Some(s(&["1.1.1.1", "2.2.2.2", "3.3.3.3"])),
                searches: Some((0..40).map(|i| format!("d{i}.example")).collect()),
                options: None,
            });
        });
        let plan = dns_config(&p, &node()).unwrap();
        assert_eq!(
            plan.config.servers,
            s(&["10.96.0.10", "1.1.1.1", "2.2.2.2"])
        );
        assert_eq!(plan.config.searches.len(), MAX_DNS_SEARCH_PATHS);
        assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);

        let long = "a".repeat(63);
        let p = pod(|spec| {
            spec.dns_config = Some(PodDNSConfig {
                searches: Some((0..31).map(|i| format!("{long}.{i}")).collect()),
                ..Default::default()
            });
        });
        let plan = dns_config(&p, &node()).unwrap();
        assert!(plan.config.searches.join(" ").len() <= MAX_DNS_SEARCH_LIST_CHARS);
        assert!(plan.warnings[0].starts_with("Search Line limits were exceeded"));
    }

    #[test]
    fn broken_host_resolv_conf_is_an_error_naming_the_pod() {
        let mut n = node();
        n.host_resolv_conf = Some("nameserver\n".into());
        let e = dns_config(&pod(|_| {}), &n).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to read the host's resolv.conf for pod fixtures/p1: nameserver list is empty"
        );
    }

    #[test]
    fn resolv_conf_options_merge_across_lines() {
        let c = parse_resolv_conf("options ndots:1 rotate\noptions ndots:3\nsearch a\nsearch b\n")
            .unwrap();
        assert_eq!(c.options, s(&["ndots:3", "rotate"]));
        assert_eq!(c.searches, s(&["b"]));
    }

    #[test]
    fn hostname_table() {
        let long = "a".repeat(70);
        let dashed = "a".repeat(62);
        type Case = (
            &'static str,
            String,
            Option<String>,
            Option<&'static str>,
            Option<bool>,
            String,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("pod name", "p1".into(), None, None, None, "p1".into(), ""),
            (
                "spec hostname",
                "p1".into(),
                Some("web-0".into()),
                None,
                None,
                "web-0".into(),
                "",
            ),
            (
                "subdomain",
                "p1".into(),
                Some("web-0".into()),
                Some("nginx"),
                None,
                "web-0".into(),
                "nginx.fixtures.svc.cluster.local",
            ),
            (
                "fqdn as hostname",
                "p1".into(),
                Some("web-0".into()),
                Some("nginx"),
                Some(true),
                "web-0.nginx.fixtures.svc.cluster.local".into(),
                "nginx.fixtures.svc.cluster.local",
            ),
            (
                "fqdn flag without subdomain",
                "p1".into(),
                None,
                None,
                Some(true),
                "p1".into(),
                "",
            ),
            (
                "long pod name truncated",
                long.clone(),
                None,
                None,
                None,
                "a".repeat(63),
                "",
            ),
            (
                "truncation drops a trailing dash",
                format!("{dashed}-tail"),
                None,
                None,
                None,
                "a".repeat(62),
                "",
            ),
        ];
        for (name, pod_name, hostname, sub, fqdn, want_kernel, want_domain) in cases {
            let mut p = pod(|s| {
                s.hostname = hostname;
                s.subdomain = sub.map(String::from);
                s.set_hostname_as_fqdn = fqdn;
            });
            p.metadata.name = Some(pod_name);
            let (_, domain) = hostname_and_domain(&p, "cluster.local").unwrap();
            assert_eq!(domain, want_domain, "{name}: domain");
            assert_eq!(
                kernel_hostname(&p, "cluster.local").unwrap(),
                want_kernel,
                "{name}"
            );
        }
    }

    #[test]
    fn invalid_hostnames_are_errors() {
        let p = pod(|s| s.hostname = Some("Web_0".into()));
        let e = hostname_and_domain(&p, "cluster.local").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "invalid hostname \"Web_0\" of pod fixtures/p1: not a valid DNS label"
            ),
            "{e}"
        );
        let p = pod(|s| {
            s.hostname = Some("a".repeat(40));
            s.subdomain = Some("b".repeat(20));
            s.set_hostname_as_fqdn = Some(true);
        });
        let e = kernel_hostname(&p, "cluster.local").unwrap_err();
        assert!(e.to_string().contains("64 characters is the max"), "{e}");
    }

    #[test]
    fn etc_hosts_table() {
        let base = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";
        let plain = pod(|_| {});
        assert_eq!(
            etc_hosts(&plain, &s(&["10.88.0.5"]), "cluster.local").unwrap(),
            format!("{base}10.88.0.5\tp1\n")
        );
        let dual = etc_hosts(&plain, &s(&["10.88.0.5", "fd00::5"]), "cluster.local").unwrap();
        assert_eq!(dual, format!("{base}10.88.0.5\tp1\nfd00::5\tp1\n"));
        let sub = pod(|s| {
            s.hostname = Some("web-0".into());
            s.subdomain = Some("nginx".into());
        });
        assert_eq!(
            etc_hosts(&sub, &s(&["10.88.0.5"]), "k8s.test").unwrap(),
            format!("{base}10.88.0.5\tweb-0.nginx.fixtures.svc.k8s.test\tweb-0\n")
        );
        let aliased = pod(|s| {
            s.host_aliases = Some(vec![
                HostAlias {
                    ip: "127.0.0.1".into(),
                    hostnames: Some(s_vec(&["foo.local", "bar.local"])),
                },
                HostAlias {
                    ip: "10.1.2.3".into(),
                    hostnames: Some(s_vec(&["foo.remote"])),
                },
            ]);
        });
        assert_eq!(
            etc_hosts(&aliased, &s(&["10.88.0.5"]), "cluster.local").unwrap(),
            format!(
                "{base}10.88.0.5\tp1\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
            )
        );
        assert_eq!(
            etc_hosts_for_host_network(&aliased, "127.0.0.1 localhost\n"),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
        );
    }

    fn s_vec(v: &[&str]) -> Vec<String> {
        s(v)
    }
}
