//! `/stats/summary` in the kubelet's JSON shape (`stats/v1alpha1.Summary`) and
//! `/metrics/resource` in the kubelet's Prometheus text, from CRI `ListContainerStats`,
//! `ListPodSandboxStats` and a [`HostSample`]: per container cpu (`usageCoreNanoSeconds`,
//! `usageNanoCores`) and memory (`workingSetBytes`, `usageBytes`, `rssBytes`, `pageFaults`,
//! `majorPageFaults`), per pod its cgroup's cpu, memory, network and process count (read from
//! the host as cAdvisor would, else from the runtime's sandbox stats, else the sums of its
//! containers), and the node (cpu, memory, fs, network, rlimit and the `pods` system
//! container). Pure: it builds the documents from what the runtime and the host returned.
//!
//! Owns: the summary document and the resource metrics text. Must not call the runtime or read
//! the host.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::cri::api;
use crate::metrics::{escape_label, format_float};
use crate::node::stats::{HostSample, MemorySample, PodCgroupSample};
use crate::pod::labels::{CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID};

fn rfc3339(nanos: i64) -> Value {
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| Value::String(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null)
}

fn put(m: &mut Map<String, Value>, key: &str, v: &protobuf::MessageField<api::UInt64Value>) {
    if let Some(v) = v.as_ref() {
        m.insert(key.into(), json!(v.value));
    }
}

fn cpu(c: &api::CpuUsage) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), rfc3339(c.timestamp));
    put(&mut m, "usageNanoCores", &c.usage_nano_cores);
    put(&mut m, "usageCoreNanoSeconds", &c.usage_core_nano_seconds);
    Value::Object(m)
}

fn memory(c: &api::MemoryUsage) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), rfc3339(c.timestamp));
    put(&mut m, "availableBytes", &c.available_bytes);
    put(&mut m, "usageBytes", &c.usage_bytes);
    put(&mut m, "workingSetBytes", &c.working_set_bytes);
    put(&mut m, "rssBytes", &c.rss_bytes);
    put(&mut m, "pageFaults", &c.page_faults);
    put(&mut m, "majorPageFaults", &c.major_page_faults);
    Value::Object(m)
}

/// Adds the numeric fields of `v` into `sum` (the time is the latest one).
fn add(sum: &mut Map<String, Value>, v: &Value) {
    let Some(obj) = v.as_object() else { return };
    for (k, x) in obj {
        if k == "time" {
            let newer = sum.get(k).and_then(Value::as_str) < x.as_str();
            if newer {
                sum.insert(k.clone(), x.clone());
            }
        } else if let Some(n) = x.as_u64() {
            let cur = sum.get(k).and_then(Value::as_u64).unwrap_or(0);
            sum.insert(k.clone(), json!(cur.saturating_add(n)));
        }
    }
}

/// A pod by namespace, name and uid.
type PodKey = (String, String, String);
/// A pod's containers, and its cpu and memory sums.
type PodSums = (Vec<Value>, Map<String, Value>, Map<String, Value>);

/// `usageNanoCores` of the node, the pods' cgroup and this daemon, from [`crate::node::stats::CpuRate`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeRates {
    pub node: Option<u64>,
    pub pods: Option<u64>,
    /// vk-cri's own process.
    pub daemon: Option<u64>,
}

fn opt(m: &mut Map<String, Value>, key: &str, v: Option<u64>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v));
    }
}

fn node_cpu(time: &Value, rate: Option<u64>, usage_ns: u64) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), time.clone());
    opt(&mut m, "usageNanoCores", rate);
    m.insert("usageCoreNanoSeconds".into(), json!(usage_ns));
    Value::Object(m)
}

fn node_memory(time: &Value, mem: &MemorySample) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), time.clone());
    opt(&mut m, "availableBytes", mem.available);
    m.insert("usageBytes".into(), json!(mem.usage));
    m.insert("workingSetBytes".into(), json!(mem.working_set));
    m.insert("rssBytes".into(), json!(mem.rss));
    m.insert("pageFaults".into(), json!(mem.page_faults));
    m.insert("majorPageFaults".into(), json!(mem.major_page_faults));
    Value::Object(m)
}

/// The summary's `node` from a host sample: cpu, memory, network (the first interface, `eth0`
/// when there is one, as the kubelet's default), fs (the pods directory's filesystem), rlimit
/// and the `kubelet` (this daemon's process) and `pods` (vk-cri's cgroup root) system
/// containers.
pub fn node_summary(name: &str, sample: Option<&HostSample>, rates: NodeRates) -> Value {
    let mut node = Map::new();
    node.insert("nodeName".into(), json!(name));
    let Some(s) = sample else {
        return Value::Object(node);
    };
    let time = rfc3339(s.at_ns);
    let mut system = Vec::new();
    if let Some((daemon, started)) = s.daemon {
        let mut c = json!({
            "name": "kubelet",
            "cpu": node_cpu(&time, rates.daemon, daemon.cpu_usage_ns),
            "memory": node_memory(&time, &daemon.memory),
        });
        if let Some(t) = started {
            c["startTime"] = rfc3339(t);
        }
        system.push(c);
    }
    if let Some(pods) = s.pods_cgroup {
        system.push(json!({
            "name": "pods",
            "cpu": node_cpu(&time, rates.pods, pods.cpu_usage_ns),
            "memory": node_memory(&time, &pods.memory),
        }));
    }
    if !system.is_empty() {
        node.insert("systemContainers".into(), Value::Array(system));
    }
    if let Some(boot) = s.boot_time_s {
        node.insert(
            "startTime".into(),
            rfc3339(boot.saturating_mul(1_000_000_000)),
        );
    }
    node.insert("cpu".into(), node_cpu(&time, rates.node, s.cpu_usage_ns));
    node.insert("memory".into(), node_memory(&time, &s.memory));
    let default = s
        .interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or_else(|| s.interfaces.first());
    if let Some(d) = default {
        let iface = |i: &crate::node::stats::InterfaceSample| {
            json!({
                "name": i.name,
                "rxBytes": i.rx_bytes,
                "rxErrors": i.rx_errors,
                "txBytes": i.tx_bytes,
                "txErrors": i.tx_errors,
            })
        };
        let mut net = iface(d);
        net["time"] = time.clone();
        net["interfaces"] = Value::Array(s.interfaces.iter().map(iface).collect());
        node.insert("network".into(), net);
    }
    if let Some(fs) = s.fs {
        node.insert(
            "fs".into(),
            json!({
                "time": time,
                "availableBytes": fs.available,
                "capacityBytes": fs.capacity,
                "usedBytes": fs.used,
                "inodesFree": fs.inodes_free,
                "inodes": fs.inodes,
                "inodesUsed": fs.inodes.saturating_sub(fs.inodes_free),
            }),
        );
    }
    if let Some((maxpid, curproc)) = s.rlimit {
        node.insert(
            "rlimit".into(),
            json!({"time": time, "maxpid": maxpid, "curproc": curproc}),
        );
    }
    Value::Object(node)
}

fn u64v(value: u64) -> protobuf::MessageField<api::UInt64Value> {
    Some(api::UInt64Value {
        value,
        ..Default::default()
    })
    .into()
}

/// A pod's cgroup sample in the shape of CRI's pod sandbox stats (what the kubelet's stats
/// provider reads from cAdvisor), so that one path builds the documents from either source.
pub fn pod_cgroup_stats(
    uid: &str,
    pod: &PodCgroupSample,
    nano_cores: Option<u64>,
) -> api::PodSandboxStats {
    let mut meta = api::PodSandboxMetadata::new();
    meta.uid = uid.to_string();
    let mut attrs = api::PodSandboxAttributes::new();
    attrs.metadata = Some(meta).into();
    let mut cpu = api::CpuUsage::new();
    cpu.timestamp = pod.at_ns;
    cpu.usage_core_nano_seconds = u64v(pod.usage.cpu_usage_ns);
    if let Some(n) = nano_cores {
        cpu.usage_nano_cores = u64v(n);
    }
    let m = &pod.usage.memory;
    let mut memory = api::MemoryUsage::new();
    memory.timestamp = pod.at_ns;
    memory.working_set_bytes = u64v(m.working_set);
    memory.usage_bytes = u64v(m.usage);
    memory.rss_bytes = u64v(m.rss);
    memory.page_faults = u64v(m.page_faults);
    memory.major_page_faults = u64v(m.major_page_faults);
    let mut linux = api::LinuxPodSandboxStats::new();
    linux.cpu = Some(cpu).into();
    linux.memory = Some(memory).into();
    let iface = |i: &crate::node::stats::InterfaceSample| {
        let mut n = api::NetworkInterfaceUsage::new();
        n.name = i.name.clone();
        n.rx_bytes = u64v(i.rx_bytes);
        n.rx_errors = u64v(i.rx_errors);
        n.tx_bytes = u64v(i.tx_bytes);
        n.tx_errors = u64v(i.tx_errors);
        n
    };
    if !pod.interfaces.is_empty() {
        let mut net = api::NetworkUsage::new();
        net.timestamp = pod.at_ns;
        let default = pod
            .interfaces
            .iter()
            .find(|i| i.name == "eth0")
            .unwrap_or(&pod.interfaces[0]);
        net.default_interface = Some(iface(default)).into();
        net.interfaces = pod.interfaces.iter().map(iface).collect();
        linux.network = Some(net).into();
    }
    let mut process = api::ProcessUsage::new();
    process.timestamp = pod.at_ns;
    process.process_count = u64v(pod.process_count);
    linux.process = Some(process).into();
    let mut sb = api::PodSandboxStats::new();
    sb.attributes = Some(attrs).into();
    sb.linux = Some(linux).into();
    sb
}

/// The pod-level stats of each pod uid from CRI `ListPodSandboxStats` (the pod's cgroup, so
/// the sandbox and the runtime's overhead count too): the sandbox with the latest cpu sample.
pub fn sandbox_stats_by_uid(
    sandboxes: &[api::PodSandboxStats],
) -> BTreeMap<String, &api::LinuxPodSandboxStats> {
    let mut by_uid: BTreeMap<String, &api::LinuxPodSandboxStats> = BTreeMap::new();
    for sb in sandboxes {
        let (Some(attrs), Some(linux)) = (sb.attributes.as_ref(), sb.linux.as_ref()) else {
            continue;
        };
        let Some(cpu) = linux.cpu.as_ref() else {
            continue;
        };
        let uid = attrs
            .metadata
            .as_ref()
            .map(|m| m.uid.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| attrs.labels.get(POD_UID).cloned())
            .unwrap_or_default();
        let newer = by_uid
            .get(&uid)
            .and_then(|l| l.cpu.as_ref())
            .is_none_or(|old| old.timestamp < cpu.timestamp);
        if newer {
            by_uid.insert(uid, linux);
        }
    }
    by_uid
}

fn network(n: &api::NetworkUsage) -> Value {
    let iface = |i: &api::NetworkInterfaceUsage| {
        let mut m = Map::new();
        m.insert("name".into(), json!(i.name));
        put(&mut m, "rxBytes", &i.rx_bytes);
        put(&mut m, "rxErrors", &i.rx_errors);
        put(&mut m, "txBytes", &i.tx_bytes);
        put(&mut m, "txErrors", &i.tx_errors);
        m
    };
    let mut m = n.default_interface.as_ref().map(iface).unwrap_or_default();
    m.insert("time".into(), rfc3339(n.timestamp));
    m.insert(
        "interfaces".into(),
        Value::Array(
            n.interfaces
                .iter()
                .map(|i| Value::Object(iface(i)))
                .collect(),
        ),
    );
    Value::Object(m)
}

/// The summary from the node's part ([`node_summary`]), its containers' stats, its pods'
/// sandbox stats (pod cpu, memory, network and process count when the runtime has them, else
/// the sums of the containers) and the containers' start times (container id → nanoseconds
/// since the epoch).
pub fn summary(
    node: Value,
    stats: &[api::ContainerStats],
    sandboxes: &[api::PodSandboxStats],
    started: &BTreeMap<String, i64>,
) -> Value {
    let by_uid = sandbox_stats_by_uid(sandboxes);
    let mut pods: BTreeMap<PodKey, PodSums> = BTreeMap::new();
    for s in stats {
        let Some(attrs) = s.attributes.as_ref() else {
            continue;
        };
        let label = |k: &str| attrs.labels.get(k).cloned().unwrap_or_default();
        let key = (label(POD_NAMESPACE), label(POD_NAME), label(POD_UID));
        let entry = pods.entry(key).or_default();
        let mut c = Map::new();
        c.insert("name".into(), json!(label(CONTAINER_NAME)));
        if let Some(t) = started.get(&attrs.id) {
            c.insert("startTime".into(), rfc3339(*t));
        }
        if let Some(u) = s.cpu.as_ref() {
            let v = cpu(u);
            add(&mut entry.1, &v);
            c.insert("cpu".into(), v);
        }
        if let Some(u) = s.memory.as_ref() {
            let v = memory(u);
            add(&mut entry.2, &v);
            c.insert("memory".into(), v);
        }
        entry.0.push(Value::Object(c));
    }
    let pods: Vec<Value> = pods
        .into_iter()
        .map(
            |((namespace, name, uid), (containers, cpu_sum, memory_sum))| {
                let sandbox = by_uid.get(&uid);
                let mut pod = json!({
                    "podRef": {"name": name, "namespace": namespace, "uid": uid},
                    "containers": containers,
                    "cpu": sandbox.and_then(|l| l.cpu.as_ref()).map_or(Value::Object(cpu_sum), cpu),
                    "memory": sandbox
                        .and_then(|l| l.memory.as_ref())
                        .map_or(Value::Object(memory_sum), memory),
                });
                if let Some(n) = sandbox.and_then(|l| l.network.as_ref()) {
                    pod["network"] = network(n);
                }
                if let Some(p) = sandbox.and_then(|l| l.process.as_ref()) {
                    let mut m = Map::new();
                    put(&mut m, "process_count", &p.process_count);
                    pod["process_stats"] = Value::Object(m);
                }
                pod
            },
        )
        .collect();
    json!({"node": node, "pods": pods})
}

/// One series: labels, value and an optional timestamp in nanoseconds.
type Series = (String, f64, Option<i64>);

/// `/metrics/resource` as the kubelet (v1.28) writes it: families sorted by name, series
/// sorted by label values, `container`/`namespace`/`pod` labels, cpu in core-seconds and
/// memory in bytes with millisecond timestamps, container start times without one, and
/// `resource_scrape_error`/`scrape_error` last. `stats` is `None` when the runtime could not be
/// asked (a scrape error: only the node and the error are reported).
pub fn resource_metrics(
    sample: Option<&HostSample>,
    stats: Option<&[api::ContainerStats]>,
    sandboxes: &[api::PodSandboxStats],
    started: &BTreeMap<String, i64>,
) -> String {
    let by_uid = sandbox_stats_by_uid(sandboxes);
    let mut container_cpu: Vec<Series> = Vec::new();
    let mut container_mem: Vec<Series> = Vec::new();
    let mut container_start: Vec<Series> = Vec::new();
    // (namespace, pod) → (cpu sum, its latest time, memory sum, its latest time).
    type PodAcc = (Option<(u64, i64)>, Option<(u64, i64)>);
    let mut pods: BTreeMap<(String, String, String), PodAcc> = BTreeMap::new();
    for s in stats.unwrap_or_default() {
        let Some(attrs) = s.attributes.as_ref() else {
            continue;
        };
        let label = |k: &str| attrs.labels.get(k).cloned().unwrap_or_default();
        let (ns, pod, name) = (label(POD_NAMESPACE), label(POD_NAME), label(CONTAINER_NAME));
        let labels = format!(
            "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
            escape_label(&name),
            escape_label(&ns),
            escape_label(&pod)
        );
        let acc = pods.entry((ns, pod, label(POD_UID))).or_default();
        let add = |slot: &mut Option<(u64, i64)>, v: u64, t: i64| {
            let (sum, time) = slot.unwrap_or((0, t));
            *slot = Some((sum.saturating_add(v), time.max(t)));
        };
        if let Some(t) = started.get(&attrs.id).filter(|t| **t > 0) {
            container_start.push((labels.clone(), *t as f64 / 1e9, None));
        }
        if let Some(c) = s.cpu.as_ref() {
            if let Some(v) = c.usage_core_nano_seconds.as_ref() {
                container_cpu.push((labels.clone(), v.value as f64 / 1e9, Some(c.timestamp)));
                add(&mut acc.0, v.value, c.timestamp);
            }
        }
        if let Some(m) = s.memory.as_ref() {
            if let Some(v) = m.working_set_bytes.as_ref() {
                container_mem.push((labels.clone(), v.value as f64, Some(m.timestamp)));
                add(&mut acc.1, v.value, m.timestamp);
            }
        }
    }
    let mut pod_cpu: Vec<Series> = Vec::new();
    let mut pod_mem: Vec<Series> = Vec::new();
    for ((ns, pod, uid), (cpu, mem)) in &pods {
        let labels = format!(
            "namespace=\"{}\",pod=\"{}\"",
            escape_label(ns),
            escape_label(pod)
        );
        // The pod's own cgroup when the runtime reports it, as the kubelet's CRI stats do.
        let sandbox = by_uid.get(uid);
        let cpu = sandbox
            .and_then(|l| l.cpu.as_ref())
            .and_then(|c| Some((c.usage_core_nano_seconds.as_ref()?.value, c.timestamp)))
            .or(*cpu);
        let mem = sandbox
            .and_then(|l| l.memory.as_ref())
            .and_then(|m| Some((m.working_set_bytes.as_ref()?.value, m.timestamp)))
            .or(*mem);
        let (cpu, mem) = (&cpu, &mem);
        if let Some((v, t)) = cpu {
            pod_cpu.push((labels.clone(), *v as f64 / 1e9, Some(*t)));
        }
        if let Some((v, t)) = mem {
            pod_mem.push((labels, *v as f64, Some(*t)));
        }
    }
    let node_cpu: Vec<Series> = sample
        .map(|s| (String::new(), s.cpu_usage_ns as f64 / 1e9, Some(s.at_ns)))
        .into_iter()
        .collect();
    let node_mem: Vec<Series> = sample
        .map(|s| (String::new(), s.memory.working_set as f64, Some(s.at_ns)))
        .into_iter()
        .collect();
    let error = vec![(String::new(), if stats.is_some() { 0.0 } else { 1.0 }, None)];
    let families: [(&str, &str, &str, &[Series]); 9] = [
        (
            "container_cpu_usage_seconds_total",
            "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
            "counter",
            &container_cpu,
        ),
        (
            "container_memory_working_set_bytes",
            "[STABLE] Current working set of the container in bytes",
            "gauge",
            &container_mem,
        ),
        (
            "container_start_time_seconds",
            "[STABLE] Start time of the container since unix epoch in seconds",
            "gauge",
            &container_start,
        ),
        (
            "node_cpu_usage_seconds_total",
            "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
            "counter",
            &node_cpu,
        ),
        (
            "node_memory_working_set_bytes",
            "[STABLE] Current working set of the node in bytes",
            "gauge",
            &node_mem,
        ),
        (
            "pod_cpu_usage_seconds_total",
            "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
            "counter",
            &pod_cpu,
        ),
        (
            "pod_memory_working_set_bytes",
            "[STABLE] Current working set of the pod in bytes",
            "gauge",
            &pod_mem,
        ),
        (
            "resource_scrape_error",
            "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
            "gauge",
            &error,
        ),
        (
            "scrape_error",
            "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
            "gauge",
            &error,
        ),
    ];
    let mut out = String::new();
    for (name, help, kind, series) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        let mut series = series.to_vec();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, value, ts) in series {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            out.push_str(&format!("{name}{labels} {}", format_float(value)));
            if let Some(ns) = ts {
                out.push_str(&format!(" {}", ns.div_euclid(1_000_000)));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::stats::CgroupSample;

    fn stat(pod: &str, ctr: &str, ws: u64, cpu_ns: u64) -> api::ContainerStats {
        let mut a = api::ContainerAttributes::new();
        a.id = format!("id-{pod}-{ctr}");
        for (k, v) in [
            (POD_NAMESPACE, "ns"),
            (POD_NAME, pod),
            (POD_UID, "u"),
            (CONTAINER_NAME, ctr),
        ] {
            a.labels.insert(k.into(), v.into());
        }
        let mut s = api::ContainerStats::new();
        s.attributes = Some(a).into();
        let mut m = api::MemoryUsage::new();
        m.timestamp = 1_700_000_000_000_000_000;
        m.working_set_bytes = Some(api::UInt64Value {
            value: ws,
            ..Default::default()
        })
        .into();
        s.memory = Some(m).into();
        let mut c = api::CpuUsage::new();
        c.timestamp = 1_700_000_000_000_000_000;
        c.usage_core_nano_seconds = Some(api::UInt64Value {
            value: cpu_ns,
            ..Default::default()
        })
        .into();
        s.cpu = Some(c).into();
        s
    }

    #[test]
    fn pods_sum_their_containers() {
        let doc = summary(
            node_summary("vk-node", None, NodeRates::default()),
            &[stat("p", "a", 100, 5), stat("p", "b", 50, 7)],
            &[],
            &BTreeMap::from([("id-p-a".to_string(), 1_700_000_000_000_000_000)]),
        );
        assert_eq!(doc["node"]["nodeName"], "vk-node");
        let pod = &doc["pods"][0];
        assert_eq!(
            pod["podRef"],
            json!({"name": "p", "namespace": "ns", "uid": "u"})
        );
        assert_eq!(pod["memory"]["workingSetBytes"], 150);
        assert_eq!(pod["cpu"]["usageCoreNanoSeconds"], 12);
        assert_eq!(pod["containers"][0]["name"], "a");
        assert_eq!(pod["containers"][0]["startTime"], "2023-11-14T22:13:20Z");
        assert_eq!(pod["containers"][1]["memory"]["workingSetBytes"], 50);
        assert_eq!(pod["memory"]["time"], "2023-11-14T22:13:20Z");
    }

    fn host() -> HostSample {
        use crate::node::stats::{FsSample, InterfaceSample};
        HostSample {
            at_ns: 1_700_000_000_123_456_789,
            cpu_usage_ns: 357_354_910_000,
            boot_time_s: Some(1_699_000_000),
            memory: MemorySample {
                usage: 3000,
                working_set: 2000,
                rss: 1000,
                available: Some(14000),
                page_faults: 7,
                major_page_faults: 1,
            },
            fs: Some(FsSample {
                capacity: 100,
                available: 40,
                used: 55,
                inodes: 10,
                inodes_free: 4,
            }),
            interfaces: vec![
                InterfaceSample {
                    name: "docker0".into(),
                    ..Default::default()
                },
                InterfaceSample {
                    name: "eth0".into(),
                    rx_bytes: 5,
                    rx_errors: 0,
                    tx_bytes: 6,
                    tx_errors: 1,
                },
            ],
            rlimit: Some((4194304, 345)),
            daemon: Some((
                CgroupSample {
                    cpu_usage_ns: 7,
                    memory: MemorySample {
                        usage: 9,
                        working_set: 9,
                        rss: 9,
                        ..Default::default()
                    },
                },
                Some(1_699_500_000_000_000_000),
            )),
            pods_cgroup: Some(CgroupSample {
                cpu_usage_ns: 42,
                memory: MemorySample {
                    usage: 30,
                    working_set: 20,
                    rss: 10,
                    ..Default::default()
                },
            }),
        }
    }

    #[test]
    fn node_summary_has_the_kubelets_fields() {
        let n = node_summary(
            "vk-node",
            Some(&host()),
            NodeRates {
                node: Some(250_000_000),
                pods: None,
                daemon: Some(1000),
            },
        );
        assert_eq!(n["nodeName"], "vk-node");
        assert_eq!(n["startTime"], "2023-11-03T08:26:40Z");
        assert_eq!(
            n["cpu"],
            json!({"time": "2023-11-14T22:13:20Z", "usageNanoCores": 250_000_000u64, "usageCoreNanoSeconds": 357_354_910_000u64})
        );
        assert_eq!(n["memory"]["workingSetBytes"], 2000);
        assert_eq!(n["memory"]["availableBytes"], 14000);
        assert_eq!(n["memory"]["rssBytes"], 1000);
        assert_eq!(n["memory"]["usageBytes"], 3000);
        assert_eq!(n["network"]["name"], "eth0");
        assert_eq!(n["network"]["txErrors"], 1);
        assert_eq!(n["network"]["interfaces"].as_array().unwrap().len(), 2);
        assert_eq!(n["fs"]["inodesUsed"], 6);
        assert_eq!(n["fs"]["usedBytes"], 55);
        assert_eq!(
            n["rlimit"],
            json!({"time": "2023-11-14T22:13:20Z", "maxpid": 4194304, "curproc": 345})
        );
        let kubelet = &n["systemContainers"][0];
        assert_eq!(kubelet["name"], "kubelet");
        assert_eq!(kubelet["startTime"], "2023-11-09T03:20:00Z");
        assert_eq!(kubelet["cpu"]["usageNanoCores"], 1000);
        assert_eq!(kubelet["memory"]["workingSetBytes"], 9);
        let pods = &n["systemContainers"][1];
        assert_eq!(pods["name"], "pods");
        assert_eq!(pods["cpu"]["usageCoreNanoSeconds"], 42);
        assert!(pods["cpu"].get("usageNanoCores").is_none());
        assert!(pods["memory"].get("availableBytes").is_none());
        assert_eq!(
            node_summary("n", None, NodeRates::default()),
            json!({"nodeName": "n"})
        );
    }

    #[test]
    fn resource_metrics_are_the_kubelets_text() {
        let mut a = stat("p", "a", 23_658_496, 5_361_467_000);
        a.cpu.as_mut().unwrap().timestamp = 1_700_000_001_500_000_000;
        let b = stat("p", "b", 50, 7);
        let started = BTreeMap::from([("id-p-a".to_string(), 1_699_999_000_000_000_000)]);
        let text = resource_metrics(Some(&host()), Some(&[a, b]), &[], &started);
        let expected = "\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container=\"a\",namespace=\"ns\",pod=\"p\"} 5.361467 1700000001500
container_cpu_usage_seconds_total{container=\"b\",namespace=\"ns\",pod=\"p\"} 7e-09 1700000000000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container=\"a\",namespace=\"ns\",pod=\"p\"} 2.3658496e+07 1700000000000
container_memory_working_set_bytes{container=\"b\",namespace=\"ns\",pod=\"p\"} 50 1700000000000
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container=\"a\",namespace=\"ns\",pod=\"p\"} 1.699999e+09
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.35491 1700000000123
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 2000 1700000000123
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace=\"ns\",pod=\"p\"} 5.361467007 1700000001500
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace=\"ns\",pod=\"p\"} 2.3658546e+07 1700000000000
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_runtime_failure_is_a_scrape_error_with_the_node_still_reported() {
        let text = resource_metrics(Some(&host()), None, &[], &BTreeMap::new());
        assert!(text.contains("\nresource_scrape_error 1\n"), "{text}");
        assert!(text.contains("\nscrape_error 1\n"), "{text}");
        assert!(text.contains("\nnode_cpu_usage_seconds_total 357.35491 1700000000123\n"));
        assert!(!text.contains("container_cpu_usage_seconds_total{"));
    }

    fn sandbox(uid: &str, cpu_ns: u64, ws: u64, ts: i64) -> api::PodSandboxStats {
        let mut meta = api::PodSandboxMetadata::new();
        meta.uid = uid.into();
        let mut attrs = api::PodSandboxAttributes::new();
        attrs.metadata = Some(meta).into();
        let mut linux = api::LinuxPodSandboxStats::new();
        let mut c = api::CpuUsage::new();
        c.timestamp = ts;
        c.usage_core_nano_seconds = Some(api::UInt64Value {
            value: cpu_ns,
            ..Default::default()
        })
        .into();
        linux.cpu = Some(c).into();
        let mut m = api::MemoryUsage::new();
        m.timestamp = ts;
        m.working_set_bytes = Some(api::UInt64Value {
            value: ws,
            ..Default::default()
        })
        .into();
        linux.memory = Some(m).into();
        let mut n = api::NetworkUsage::new();
        n.timestamp = ts;
        let mut eth = api::NetworkInterfaceUsage::new();
        eth.name = "eth0".into();
        eth.rx_bytes = Some(api::UInt64Value {
            value: 42,
            ..Default::default()
        })
        .into();
        n.default_interface = Some(eth.clone()).into();
        n.interfaces = vec![eth];
        linux.network = Some(n).into();
        let mut p = api::ProcessUsage::new();
        p.process_count = Some(api::UInt64Value {
            value: 3,
            ..Default::default()
        })
        .into();
        linux.process = Some(p).into();
        let mut sb = api::PodSandboxStats::new();
        sb.attributes = Some(attrs).into();
        sb.linux = Some(linux).into();
        sb
    }

    #[test]
    fn pod_stats_come_from_the_newest_sandbox_of_the_pod_when_the_runtime_has_them() {
        let old = sandbox("u", 1, 1, 1_600_000_000_000_000_000);
        let new = sandbox("u", 9_000_000_000, 4096, 1_700_000_000_000_000_000);
        let other = sandbox("someone-else", 5, 5, 1_700_000_000_000_000_000);
        let doc = summary(
            node_summary("n", None, NodeRates::default()),
            &[stat("p", "a", 100, 5)],
            &[old, new.clone(), other],
            &BTreeMap::new(),
        );
        let pod = &doc["pods"][0];
        assert_eq!(pod["cpu"]["usageCoreNanoSeconds"], 9_000_000_000u64);
        assert_eq!(pod["memory"]["workingSetBytes"], 4096);
        assert_eq!(pod["network"]["name"], "eth0");
        assert_eq!(pod["network"]["rxBytes"], 42);
        assert_eq!(pod["network"]["interfaces"][0]["name"], "eth0");
        assert_eq!(pod["process_stats"]["process_count"], 3);
        assert_eq!(pod["containers"][0]["memory"]["workingSetBytes"], 100);
        let text = resource_metrics(
            None,
            Some(&[stat("p", "a", 100, 5)]),
            &[new],
            &BTreeMap::new(),
        );
        assert!(
            text.contains(
                "\npod_cpu_usage_seconds_total{namespace=\"ns\",pod=\"p\"} 9 1700000000000\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\npod_memory_working_set_bytes{namespace=\"ns\",pod=\"p\"} 4096 1700000000000\n"
            ),
            "{text}"
        );
        // No node sample: no node series, the rest still there.
        assert!(!text.contains("\nnode_cpu_usage_seconds_total "), "{text}");
    }

    #[test]
    fn a_pod_cgroup_sample_reads_like_sandbox_stats() {
        use crate::node::stats::InterfaceSample;
        let sample = PodCgroupSample {
            at_ns: 1_700_000_000_000_000_000,
            usage: CgroupSample {
                cpu_usage_ns: 2_000_000_000,
                memory: MemorySample {
                    usage: 300,
                    working_set: 200,
                    rss: 100,
                    ..Default::default()
                },
            },
            process_count: 4,
            interfaces: vec![InterfaceSample {
                name: "eth0".into(),
                rx_bytes: 9,
                ..Default::default()
            }],
        };
        let sb = pod_cgroup_stats("u", &sample, Some(5_000_000));
        let doc = summary(
            node_summary("n", None, NodeRates::default()),
            &[stat("p", "a", 100, 5)],
            &[sb],
            &BTreeMap::new(),
        );
        let pod = &doc["pods"][0];
        assert_eq!(
            pod["cpu"],
            json!({"time": "2023-11-14T22:13:20Z", "usageNanoCores": 5_000_000, "usageCoreNanoSeconds": 2_000_000_000u64})
        );
        assert_eq!(pod["memory"]["workingSetBytes"], 200);
        assert_eq!(pod["memory"]["usageBytes"], 300);
        assert_eq!(pod["network"]["rxBytes"], 9);
        assert_eq!(pod["process_stats"]["process_count"], 4);
    }
}
