//! The executor: the threads and I/O that make the runtime match the pure pod core's decisions.
//!
//! One pod, in order: [`worker`] (one worker per pod UID, the newest update wins, the pod's
//! timer) calls [`sync::RuntimeSyncer`] (the kubelet's SyncPod as named steps: observe → plan
//! → kill → volumes → sandbox → containers → status), which asks `crate::pod::plan` what to do,
//! calls CRI through `crate::cri::Runtime`, sets up volumes through [`volumes::VolumeManager`]
//! and reports through `crate::report::PodReporter`. Beside it: [`pleg`] (the relister that
//! pokes workers when the runtime changes and feeds [`cache`]), [`cgroups`] (pod cgroups removed
//! after the pod) and [`index`] (the pods this node was given, for the kubelet API's `/pods`).
//!
//! Layering: this module imports the pure core (`crate::pod`), the edges (`cri`, `kube`,
//! `report`, `volume`, `clock`) and the prober; nothing below it imports it.

pub mod cache;
pub mod cgroups;
pub mod index;
pub mod pleg;
pub mod repeats;
pub mod sync;
pub mod volumes;
pub mod worker;
