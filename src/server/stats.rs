//! `/stats/summary` in the kubelet's JSON shape (`stats/v1alpha1.Summary`) from CRI
//! `ListContainerStats`: per container cpu (`usageCoreNanoSeconds`, `usageNanoCores`) and memory
//! (`workingSetBytes`, `usageBytes`, `rssBytes`, `pageFaults`, `majorPageFaults`), per pod the
//! sums of its containers. Pure: it builds the document from what the runtime returned.
//!
//! Owns: the summary document. Must not call the runtime.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::cri::api;
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

/// The summary for `node` from its containers' stats and their start times (container id →
/// nanoseconds since the epoch).
pub fn summary(
    node: &str,
    stats: &[api::ContainerStats],
    started: &BTreeMap<String, i64>,
) -> Value {
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
        .map(|((namespace, name, uid), (containers, cpu, memory))| {
            json!({
                "podRef": {"name": name, "namespace": namespace, "uid": uid},
                "containers": containers,
                "cpu": cpu,
                "memory": memory,
            })
        })
        .collect();
    json!({"node": {"nodeName": node}, "pods": pods})
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "vk-node",
            &[stat("p", "a", 100, 5), stat("p", "b", 50, 7)],
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
}
