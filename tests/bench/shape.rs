//! The pods the bench runs, the same for the floor and the daemon: the latency phases' pod (one
//! busybox container that exits on SIGTERM, with requests and limits, so it starts under its
//! pod's cpu quota as under the kubelet) and the scale series' pause-like pod (the pause image,
//! BestEffort, so that one machine holds hundreds).
//!
//! Owns the pod manifest and the names the bench's pods and cgroups go by.

use serde_json::{json, Value};

/// The parent of every pod cgroup the bench makes (the floor's and the daemons').
pub const CGROUP_ROOT: &str = "/vk-cri-bench";
pub const NS: &str = "default";
const SCRIPT: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

#[derive(Clone, Debug)]
pub struct PodShape {
    pub image: String,
    /// A busybox shell that waits for SIGTERM, with requests and limits; else the image's own
    /// entrypoint (pause), BestEffort.
    pub busybox: bool,
}

impl PodShape {
    pub fn busybox(image: &str) -> PodShape {
        PodShape {
            image: image.to_string(),
            busybox: true,
        }
    }

    pub fn pause(image: &str) -> PodShape {
        PodShape {
            image: image.to_string(),
            busybox: false,
        }
    }

    pub fn pod(&self, name: &str, node: &str) -> Value {
        let mut c = json!({
            "name": "c",
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
        });
        if self.busybox {
            c["command"] = json!(["sh", "-c", SCRIPT]);
            c["resources"] = json!({
                "requests": {"cpu": "10m", "memory": "16Mi"},
                "limits": {"cpu": "100m", "memory": "32Mi"}
            });
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "vk-cri-bench"}},
            "spec": {
                "nodeName": node,
                "terminationGracePeriodSeconds": 1,
                "tolerations": [{"operator": "Exists"}],
                "containers": [c]
            }
        })
    }
}
