//! What kube-apiserver v1.28's admission and defaulting do to a new Pod: `SetDefaults_Pod` and
//! friends (containers, probes and handlers, ports, env sources, volumes, requests from limits),
//! the ServiceAccount admission plugin's `kube-api-access-*` volume, the canonical form of
//! quantities, and the initial status.
//!
//! Owns: the defaulted shape of a stored pod, checked field for field against pods the real
//! server returned for `--dry-run=server` creates (fixtures 00f, 13a, 13b). Pure: JSON in place.

use serde_json::{json, Map, Value};

use super::store;

/// What admission and defaulting do to a new Pod (as in 00f, 13a, 13b).
pub fn default_pod(pod: &mut Value, inject_sa_volume: bool) {
    if !pod.get("spec").is_some_and(Value::is_object) {
        pod["spec"] = json!({});
    }
    let pod_is_mirror = pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some();
    let spec = &mut pod["spec"];
    let host_network = spec["hostNetwork"] == true;
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                default_container(c, host_network);
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        vols.iter_mut().for_each(default_volume);
    }
    if let Some(overhead) = spec.get_mut("overhead") {
        canonicalize_list(overhead);
    }
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    s.entry("restartPolicy").or_insert(json!("Always"));
    s.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    s.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    // The ServiceAccount admission plugin leaves mirror pods alone (13d2): no account, no
    // token volume.
    let mirror = pod_is_mirror;
    if !mirror {
        let sa = s
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        s.insert("serviceAccountName".into(), json!(sa));
        s.insert("serviceAccount".into(), json!(sa));
    }
    s.entry("securityContext").or_insert(json!({}));
    s.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    s.entry("priority").or_insert(json!(0));
    s.entry("enableServiceLinks").or_insert(json!(true));
    s.entry("preemptionPolicy")
        .or_insert(json!("PreemptLowerPriority"));
    let tolerations = s.entry("tolerations").or_insert(json!([]));
    if let Some(t) = tolerations.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !t
                .iter()
                .any(|x| x.get("key").and_then(Value::as_str) == Some(key))
            {
                t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    let automount = s
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        != Some(false);
    if inject_sa_volume && automount && !mirror {
        let vol_name = format!("kube-api-access-{}", store::random_suffix());
        let vols = s.entry("volumes").or_insert(json!([]));
        if let Some(v) = vols.as_array_mut() {
            // The admission plugin's token lives 3607 s (a user's projected token: 3600).
            v.push(json!({"name": vol_name, "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ], "defaultMode": 420}}));
        }
        for list in ["containers", "initContainers"] {
            if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    let mounts = c
                        .as_object_mut()
                        .map(|m| m.entry("volumeMounts").or_insert(json!([])));
                    if let Some(Value::Array(ms)) = mounts {
                        ms.push(json!({"name": vol_name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}));
                    }
                }
            }
        }
    }
    let qos = qos_class(s);
    pod["status"] = json!({"phase": "Pending", "qosClass": qos});
}

/// The QoS class (`GetPodQOS`): Guaranteed when every container has cpu and memory limits and
/// requests equal to them, BestEffort when none has any request or limit, else Burstable.
fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|l| spec.get(*l).and_then(Value::as_array).into_iter().flatten())
        .collect();
    let list = |c: &Value, which: &str| -> Map<String, Value> {
        c["resources"][which]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let compute = |m: &Map<String, Value>| {
        m.iter()
            .filter(|(k, _)| *k == "cpu" || *k == "memory")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Map<String, Value>>()
    };
    if containers
        .iter()
        .all(|c| compute(&list(c, "requests")).is_empty() && compute(&list(c, "limits")).is_empty())
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let (req, lim) = (compute(&list(c, "requests")), compute(&list(c, "limits")));
        lim.len() == 2 && req.iter().all(|(k, v)| lim.get(k) == Some(v)) && req.len() == 2
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn default_container(c: &mut Value, host_network: bool) {
    let Some(m) = c.as_object_mut() else {
        return;
    };
    let resources = m.entry("resources").or_insert(json!({}));
    for which in ["limits", "requests"] {
        if let Some(l) = resources.get_mut(which) {
            canonicalize_list(l);
        }
    }
    // Requests default to the limits, key by key.
    if let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() {
        if let Some(r) = resources.as_object_mut() {
            let requests = r.entry("requests").or_insert(json!({}));
            if let Some(req) = requests.as_object_mut() {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
    m.entry("terminationMessagePath")
        .or_insert(json!("/dev/termination-log"));
    m.entry("terminationMessagePolicy").or_insert(json!("File"));
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let last = image.rsplit('/').next().unwrap_or("");
    let latest = !last.contains(':') || image.ends_with(":latest");
    let policy = if latest && !image.contains('@') {
        "Always"
    } else {
        "IfNotPresent"
    };
    m.entry("imagePullPolicy").or_insert(json!(policy));
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(pm) = p.as_object_mut() {
                pm.entry("protocol").or_insert(json!("TCP"));
                // On the host's network a port is a host port.
                if host_network && pm.get("hostPort").is_none_or(|h| h == 0) {
                    if let Some(cp) = pm.get("containerPort").cloned() {
                        pm.insert("hostPort".into(), cp);
                    }
                }
            }
        }
    }
    if let Some(env) = m.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(from) = e.get_mut("valueFrom") {
                default_field_refs(from);
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).and_then(Value::as_object_mut) {
            default_handler(p);
            p.entry("timeoutSeconds").or_insert(json!(1));
            p.entry("periodSeconds").or_insert(json!(10));
            p.entry("successThreshold").or_insert(json!(1));
            p.entry("failureThreshold").or_insert(json!(3));
        }
    }
    if let Some(l) = m.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = l.get_mut(hook).and_then(Value::as_object_mut) {
                default_handler(h);
            }
        }
    }
}

/// An httpGet's path `/` and scheme HTTP, a grpc check's service `""`.
fn default_handler(h: &mut Map<String, Value>) {
    if let Some(g) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        g.entry("path").or_insert(json!("/"));
        g.entry("scheme").or_insert(json!("HTTP"));
    }
    if let Some(g) = h.get_mut("grpc").and_then(Value::as_object_mut) {
        g.entry("service").or_insert(json!(""));
    }
}

/// A fieldRef's apiVersion `v1`, a resourceFieldRef's divisor `"0"` (a zero quantity, which the
/// kubelet reads as 1).
fn default_field_refs(from: &mut Value) {
    if let Some(f) = from.get_mut("fieldRef").and_then(Value::as_object_mut) {
        f.entry("apiVersion").or_insert(json!("v1"));
    }
    if let Some(r) = from
        .get_mut("resourceFieldRef")
        .and_then(Value::as_object_mut)
    {
        match r
            .get("divisor")
            .and_then(Value::as_str)
            .map(canonical_quantity)
        {
            Some(Some(c)) => {
                r.insert("divisor".into(), json!(c));
            }
            Some(None) => {}
            None => {
                r.insert("divisor".into(), json!("0"));
            }
        }
    }
}

fn default_volume(v: &mut Value) {
    let Some(m) = v.as_object_mut() else {
        return;
    };
    const SOURCES: [&str; 9] = [
        "emptyDir",
        "hostPath",
        "configMap",
        "secret",
        "downwardAPI",
        "projected",
        "persistentVolumeClaim",
        "nfs",
        "ephemeral",
    ];
    if !m.keys().any(|k| k != "name") && !SOURCES.iter().any(|s| m.contains_key(*s)) {
        m.insert("emptyDir".into(), json!({}));
    }
    if let Some(e) = m.get_mut("emptyDir").and_then(Value::as_object_mut) {
        if let Some(size) = e.get("sizeLimit").and_then(Value::as_str) {
            if let Some(c) = canonical_quantity(size) {
                e.insert("sizeLimit".into(), json!(c));
            }
        }
    }
    if let Some(h) = m.get_mut("hostPath").and_then(Value::as_object_mut) {
        h.entry("type").or_insert(json!(""));
    }
    for kind in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(src) = m.get_mut(kind).and_then(Value::as_object_mut) {
            src.entry("defaultMode").or_insert(json!(420));
        }
    }
    default_downward_items(m.get_mut("downwardAPI"));
    if let Some(sources) = m
        .get_mut("projected")
        .and_then(|p| p.get_mut("sources"))
        .and_then(Value::as_array_mut)
    {
        for s in sources {
            if let Some(t) = s
                .get_mut("serviceAccountToken")
                .and_then(Value::as_object_mut)
            {
                t.entry("expirationSeconds").or_insert(json!(3600));
            }
            default_downward_items(s.get_mut("downwardAPI"));
        }
    }
}

/// The field references of a downwardAPI volume's or projected source's items.
fn default_downward_items(source: Option<&mut Value>) {
    if let Some(items) = source
        .and_then(|d| d.get_mut("items"))
        .and_then(Value::as_array_mut)
    {
        items.iter_mut().for_each(default_field_refs);
    }
}

/// What decoding a pod into the typed v1 object and encoding it back does to its status, as the
/// real server stores every write (13c3, 13c4): a container status replaced by a partial one gets
/// its non-optional fields (`state`, `lastState`, `ready`, `restartCount`, `image`, `imageID`), a
/// condition its `lastProbeTime`/`lastTransitionTime` (null when unset), and `podIP` stays
/// authoritative over `podIPs` (v1→internal conversion: when they differ, `podIPs` becomes
/// `[podIP]`; internal→v1: `podIP` is `podIPs[0]`).
pub fn normalize_pod_status(pod: &mut Value) {
    let Some(st) = pod.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    for list in [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ] {
        if let Some(cs) = st.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                for (k, v) in [
                    ("state", json!({})),
                    ("lastState", json!({})),
                    ("ready", json!(false)),
                    ("restartCount", json!(0)),
                    ("image", json!("")),
                    ("imageID", json!("")),
                ] {
                    c.entry(k).or_insert(v);
                }
            }
        }
    }
    if let Some(cs) = st.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            c.entry("lastProbeTime").or_insert(Value::Null);
            c.entry("lastTransitionTime").or_insert(Value::Null);
        }
    }
    let pod_ip = st
        .get("podIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let first = st
        .get("podIPs")
        .and_then(Value::as_array)
        .and_then(|l| l.first())
        .and_then(|i| i.get("ip"))
        .and_then(Value::as_str)
        .map(str::to_string);
    match first {
        Some(f) if !pod_ip.is_empty() && f != pod_ip => {
            st.insert("podIPs".into(), json!([{ "ip": pod_ip }]));
        }
        None if !pod_ip.is_empty() => {
            st.insert("podIPs".into(), json!([{ "ip": pod_ip }]));
        }
        Some(f) if pod_ip.is_empty() => {
            st.insert("podIP".into(), json!(f));
        }
        _ => {}
    }
}

/// Every quantity of a resource list in its canonical form.
fn canonicalize_list(list: &mut Value) {
    if let Some(m) = list.as_object_mut() {
        for v in m.values_mut() {
            if let Some(c) = v.as_str().and_then(canonical_quantity) {
                *v = json!(c);
            }
        }
    }
}

const DECIMAL: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
const BINARY: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];

/// The string a quantity is stored as (apimachinery's `ParseQuantity` then `String()`): the
/// input itself when it is already canonical (`100m`, `1e9`, `64Mi` stay), else the canonical
/// form (`0.5` → `500m`, `1000m` → `1`, `1024Ki` → `1Mi`, `1.5Gi` → `1536Mi`). `None` for what
/// this model does not cover (values beyond 64 bits, below a nano): the input is kept then.
pub fn canonical_quantity(s: &str) -> Option<String> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{int}{frac}");
    let mantissa: i128 = digits.parse().ok()?;
    let mantissa = if negative { -mantissa } else { mantissa };
    if let Some((_, shift)) = BINARY.iter().find(|(b, _)| *b == suffix) {
        // value = mantissa / 10^len(frac) * 2^shift
        let scaled = mantissa.checked_mul(1i128 << shift)?;
        let div = 10i128.checked_pow(frac.len() as u32)?;
        if frac.is_empty() && digits.as_bytes()[0] != b'0' && shift % 10 == 0 && mantissa & 7 != 0 {
            return Some(s.to_string());
        }
        if scaled % div != 0 || (scaled / div).abs() < 1024 {
            // Not a whole number of bytes, or under 1Ki: shown as a decimal quantity.
            return decimal_canonical(scaled, 0, div, false);
        }
        let mut value = scaled / div;
        let mut unit = 0;
        while unit < BINARY.len() && value % 1024 == 0 && value != 0 {
            value /= 1024;
            unit += 1;
        }
        let suffix = if unit == 0 { "" } else { BINARY[unit - 1].0 };
        return Some(format!("{value}{suffix}"));
    }
    let (exp, exponent_form) = if let Some((_, e)) = DECIMAL.iter().find(|(d, _)| *d == suffix) {
        (*e, false)
    } else if let Some(e) = suffix.strip_prefix(['e', 'E']) {
        (e.parse::<i32>().ok()?, true)
    } else {
        return None;
    };
    let scale = exp - frac.len() as i32;
    if scale < -9 {
        return None;
    }
    if scale % 3 == 0 && !digits.ends_with("000") && digits.as_bytes()[0] != b'0' {
        return Some(s.to_string());
    }
    decimal_canonical(mantissa, scale, 1, exponent_form)
}

/// `mantissa × 10^scale / div` with the exponent a multiple of three and no trailing zeros
/// beyond it, as a suffix or an `eN` exponent.
fn decimal_canonical(mantissa: i128, scale: i32, div: i128, exponent_form: bool) -> Option<String> {
    let (mut m, mut scale) = (mantissa, scale);
    // Divide out `div` (a power of ten) by lowering the scale.
    let mut d = div;
    while d > 1 {
        d /= 10;
        scale -= 1;
    }
    if m == 0 {
        return Some("0".into());
    }
    while m % 10 == 0 {
        m /= 10;
        scale += 1;
    }
    let e = scale.div_euclid(3) * 3;
    if e < -9 {
        return None;
    }
    let m = m.checked_mul(10i128.checked_pow((scale - e) as u32)?)?;
    let suffix = if exponent_form {
        if e == 0 {
            String::new()
        } else {
            format!("e{e}")
        }
    } else {
        match DECIMAL.iter().find(|(_, x)| *x == e) {
            Some((s, _)) => s.to_string(),
            None => format!("e{e}"),
        }
    };
    Some(format!("{m}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_stored_in_the_real_servers_canonical_form() {
        for (input, stored) in [
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("100m", "100m"),
            ("1", "1"),
            ("1000m", "1"),
            ("1e9", "1e9"),
            ("64Mi", "64Mi"),
            ("1Gi", "1Gi"),
            ("1024Ki", "1Mi"),
            ("1.5Gi", "1536Mi"),
            ("0", "0"),
            ("1500", "1500"),
            ("2000", "2k"),
            ("0.5Ki", "512"),
            ("32Mi", "32Mi"),
            ("16Mi", "16Mi"),
        ] {
            assert_eq!(
                canonical_quantity(input).as_deref(),
                Some(stored),
                "{input}"
            );
        }
    }

    #[test]
    fn pod_defaults_follow_00f() {
        let mut pod = json!({"metadata": {"name": "p1"}, "spec": {"nodeName": "vk-node",
            "containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80}]}],
            "volumes": [{"name": "conf", "configMap": {"name": "cm-used"}}]}});
        default_pod(&mut pod, true);
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["spec"]["volumes"][0]["configMap"]["defaultMode"], 420);
        let projected = &pod["spec"]["volumes"][1];
        assert!(projected["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-api-access-"));
        assert_eq!(
            projected["projected"]["sources"][1]["configMap"]["name"],
            "kube-root-ca.crt"
        );
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
    }
}
