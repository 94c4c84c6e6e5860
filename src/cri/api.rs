//! The CRI runtime v1 protocol, generated at build time from `proto/api.proto` (see `build.rs`),
//! and the relist's slim view of two of its calls (`proto/relist.proto`, [`relist`]).
//!
//! Owns nothing but the generated code: the message types (used across the crate to describe
//! sandboxes and containers) and, in [`grpc`], the grpcio stubs that only `cri::client` may use.

#![allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unused_imports,
    unused_results
)]
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals, unused)]
#![allow(rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/cri/api.rs"));

/// grpcio client stubs for `RuntimeService` and `ImageService`.
pub(crate) mod grpc {
    #![allow(clippy::all, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/cri/api_grpc.rs"));
}

/// The relist's slim view of `ListPodSandbox` and `ListContainers` (`proto/relist.proto`):
/// only the ids, the pod's name, uid and namespace, and the states; the rest of each object
/// is skipped unread.
pub mod relist {
    #![allow(
        clippy::all,
        clippy::pedantic,
        missing_docs,
        unused_imports,
        unused_results
    )]
    #![allow(non_camel_case_types, non_snake_case, non_upper_case_globals, unused)]
    #![allow(rustdoc::all)]
    include!(concat!(env!("OUT_DIR"), "/relist/relist.rs"));

    /// grpcio client stubs for the two calls.
    pub(crate) mod grpc {
        #![allow(clippy::all, dead_code)]
        include!(concat!(env!("OUT_DIR"), "/relist/relist_grpc.rs"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message as _;

    fn labels(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_relist_reads_the_full_sandbox_list_off_the_wire() {
        let full = ListPodSandboxResponse {
            items: vec![
                PodSandbox {
                    id: "sb-1".into(),
                    metadata: Some(PodSandboxMetadata {
                        name: "web".into(),
                        uid: "u-1".into(),
                        namespace: "default".into(),
                        attempt: 2,
                        ..Default::default()
                    })
                    .into(),
                    state: PodSandboxState::SANDBOX_NOTREADY.into(),
                    created_at: 1_700_000_000_000_000_000,
                    labels: labels(&[("io.kubernetes.pod.uid", "u-1"), ("app", "web")]),
                    annotations: labels(&[("kubernetes.io/config.source", "api")]),
                    runtime_handler: "runc".into(),
                    ..Default::default()
                },
                PodSandbox {
                    id: "sb-2".into(),
                    state: PodSandboxState::SANDBOX_READY.into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let bytes = full.write_to_bytes().expect("encode");
        let slim = relist::RelistPodSandboxResponse::parse_from_bytes(&bytes).expect("decode");
        assert_eq!(slim.items.len(), 2);
        let (a, b) = (&slim.items[0], &slim.items[1]);
        assert_eq!(a.id, "sb-1");
        assert_eq!(a.state, PodSandboxState::SANDBOX_NOTREADY as i32);
        let m = a.metadata.as_ref().expect("metadata");
        assert_eq!(
            (&*m.name, &*m.uid, &*m.namespace),
            ("web", "u-1", "default")
        );
        assert_eq!(
            (&*b.id, b.state),
            ("sb-2", PodSandboxState::SANDBOX_READY as i32)
        );
        assert!(b.metadata.is_none());
    }

    #[test]
    fn the_relist_reads_the_full_container_list_off_the_wire() {
        let full = ListContainersResponse {
            containers: vec![Container {
                id: "c-1".into(),
                pod_sandbox_id: "sb-1".into(),
                metadata: Some(ContainerMetadata {
                    name: "app".into(),
                    attempt: 3,
                    ..Default::default()
                })
                .into(),
                image: Some(ImageSpec {
                    image: "busybox:1".into(),
                    ..Default::default()
                })
                .into(),
                image_ref: "sha256:abc".into(),
                state: ContainerState::CONTAINER_EXITED.into(),
                created_at: 42,
                labels: labels(&[("io.kubernetes.pod.uid", "u-1")]),
                annotations: labels(&[("io.kubernetes.container.restartCount", "3")]),
                image_id: "sha256:def".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = full.write_to_bytes().expect("encode");
        let slim = relist::RelistContainersResponse::parse_from_bytes(&bytes).expect("decode");
        assert_eq!(slim.containers.len(), 1);
        let c = &slim.containers[0];
        assert_eq!(
            (&*c.id, &*c.pod_sandbox_id, c.state),
            ("c-1", "sb-1", ContainerState::CONTAINER_EXITED as i32)
        );
    }

    #[test]
    fn the_relist_requests_are_the_full_requests_on_the_wire() {
        let owner = labels(&[("vk-cri.io/node", "n")]);
        let sandboxes = relist::RelistPodSandboxRequest {
            filter: Some(relist::RelistPodSandboxFilter {
                label_selector: owner.clone(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let full =
            ListPodSandboxRequest::parse_from_bytes(&sandboxes.write_to_bytes().expect("encode"))
                .expect("decode");
        let filter = full.filter.as_ref().expect("filter");
        assert_eq!(filter.label_selector, owner);
        assert!(filter.id.is_empty() && filter.state.is_none());

        let containers = relist::RelistContainersRequest {
            filter: Some(relist::RelistContainerFilter {
                label_selector: owner.clone(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let full =
            ListContainersRequest::parse_from_bytes(&containers.write_to_bytes().expect("encode"))
                .expect("decode");
        let filter = full.filter.as_ref().expect("filter");
        assert_eq!(filter.label_selector, owner);
        assert!(filter.pod_sandbox_id.is_empty() && filter.id.is_empty());
    }
}
