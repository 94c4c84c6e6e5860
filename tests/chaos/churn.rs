//! Scenario **kill during churn**: pods are created, updated (a new image name, which the
//! kubelet answers with a new container) and deleted while the daemon is `SIGKILL`ed at a
//! random moment, then started again. 10 s after each restart it counts pods restarted
//! needlessly (a container of an untouched pod replaced), orphan sandboxes (of pods the API
//! server no longer has), duplicate sandboxes (two ready for one pod), pods whose status is
//! wrong (not Running and Ready, or an updated pod still in its old container) and deletions never
//! finished (the pod still in the API server).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use super::support::fake_apiserver::Res;
use super::{
    observe, pod_json, running_and_ready, runtime, uid_of, wait_all_running, Check, Ctx, Outcome,
    Rng, Stage, NS, SLEEPER,
};

#[derive(Default, Debug)]
struct Counts {
    needless_restarts: u64,
    orphan_sandboxes: u64,
    duplicate_sandboxes: u64,
    wrong_status: u64,
    missed_deletes: u64,
}

/// The image an updated pod moves to, and back: the same busybox under two names.
fn other_image(ctx: &Ctx, current: &str) -> String {
    let local = std::env::var("VKCRI_LOCAL_BUSYBOX_IMAGE").unwrap_or_default();
    if current == ctx.image && !local.is_empty() {
        local
    } else {
        ctx.image.clone()
    }
}

fn image_of(p: &Value) -> String {
    p["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The updated pod runs a container started after the update (both names are one image, so
/// the image the runtime reports may be either).
fn replaced(p: &Value, old_container: &str) -> bool {
    p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .is_some_and(|id| !id.ends_with(old_container))
}

pub fn run(ctx: &Ctx) -> Result<Outcome, String> {
    let mut stage = Stage::new(ctx, "churn")?;
    let result = churn(ctx, &mut stage);
    stage.finish(ctx, "churn");
    result
}

fn churn(ctx: &Ctx, stage: &mut Stage) -> Result<Outcome, String> {
    let args = &ctx.args;
    let rt = runtime(&ctx.socket);
    let fake = &stage.fake;
    let d = &mut stage.daemon;
    let mut rng = Rng(args.seed | 1);
    let node = d.node.clone();
    let mut next = 0usize;
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut new_pod = |live: &mut BTreeSet<String>| {
        let name = format!("chaos-{next}");
        next += 1;
        fake.create_pod(pod_json(&name, &node, &ctx.image, SLEEPER));
        live.insert(name);
    };
    for _ in 0..args.churn_pods {
        new_pod(&mut live);
    }
    d.start(&ctx.socket)?;
    if wait_all_running(fake, &live, Duration::from_secs(180)).is_none() {
        return Err(format!("the first pods never all ran\n{}", d.log_tail()));
    }
    let mut total = Counts::default();
    let mut rounds = Vec::new();
    for kill in 0..args.kills {
        // Untouched pods and their containers before the churn.
        let before = observe(&rt, &node)?;
        let containers_before: BTreeMap<String, String> = live
            .iter()
            .filter_map(|n| fake.get_pod(NS, n))
            .map(|p| uid_of(&p))
            .filter_map(|u| before.containers.get(&u).map(|c| (u, c.clone())))
            .collect();
        // Churn: three pods go, one changes its image, three come; the kill lands somewhere.
        let mut deleted = Vec::new();
        for _ in 0..3 {
            let names: Vec<&String> = live.iter().collect();
            let victim = names[rng.below(names.len() as u64) as usize].clone();
            live.remove(&victim);
            if let Some(p) = fake.get_pod(NS, &victim) {
                deleted.push((victim.clone(), uid_of(&p)));
            }
            fake.delete_pod(NS, &victim, Some(1));
        }
        let names: Vec<&String> = live.iter().collect();
        let updated = names[rng.below(names.len() as u64) as usize].clone();
        let updated_uid = fake.get_pod(NS, &updated).map(|p| uid_of(&p));
        fake.modify(Res::Pods, NS, &updated, |p| {
            let image = other_image(ctx, &image_of(p));
            p["spec"]["containers"][0]["image"] = json!(image);
        });
        for _ in 0..3 {
            new_pod(&mut live);
        }
        let at = Duration::from_millis(rng.below(2500));
        std::thread::sleep(at);
        d.kill();
        d.start(&ctx.socket)?;
        std::thread::sleep(Duration::from_secs(10));
        // The counts, 10 s after the restart.
        let after = observe(&rt, &node)?;
        let api_uids: BTreeSet<String> =
            fake.list(Res::Pods, Some(NS)).iter().map(uid_of).collect();
        let mut c = Counts::default();
        for (uid, id) in &containers_before {
            if deleted.iter().any(|(_, u)| u == uid) || updated_uid.as_ref() == Some(uid) {
                continue;
            }
            if after.containers.get(uid).is_some_and(|now| now != id) {
                c.needless_restarts += 1;
            }
        }
        c.orphan_sandboxes = after
            .any_sandboxes
            .iter()
            .filter(|u| !api_uids.contains(*u))
            .count() as u64;
        c.duplicate_sandboxes = after.ready_sandboxes.values().filter(|n| **n > 1).count() as u64;
        let old_updated = updated_uid
            .as_ref()
            .and_then(|u| containers_before.get(u))
            .cloned()
            .unwrap_or_default();
        let wrong: Vec<Value> = live
            .iter()
            .filter_map(|n| match fake.get_pod(NS, n) {
                Some(p)
                    if running_and_ready(&p) && (*n != updated || replaced(&p, &old_updated)) =>
                {
                    None
                }
                Some(p) => Some(json!({
                    "pod": n,
                    "phase": p["status"]["phase"],
                    "image": image_of(&p),
                    "containers": p["status"]["containerStatuses"],
                })),
                None => Some(json!({"pod": n, "phase": "missing"})),
            })
            .collect();
        c.wrong_status = wrong.len() as u64;
        c.missed_deletes = deleted
            .iter()
            .filter(|(n, _)| fake.get_pod(NS, n).is_some())
            .count() as u64;
        eprintln!(
            "chaos: kill {} at +{} ms: restarts {}, orphans {}, duplicates {}, wrong status {}, missed deletes {}",
            kill + 1,
            at.as_millis(),
            c.needless_restarts,
            c.orphan_sandboxes,
            c.duplicate_sandboxes,
            c.wrong_status,
            c.missed_deletes
        );
        rounds.push(json!({
            "kill_after_ms": at.as_millis() as u64,
            "updated": updated,
            "needless_restarts": c.needless_restarts,
            "orphan_sandboxes": c.orphan_sandboxes,
            "duplicate_sandboxes": c.duplicate_sandboxes,
            "wrong_status": c.wrong_status,
            "missed_deletes": c.missed_deletes,
            "wrong": wrong,
        }));
        total.needless_restarts += c.needless_restarts;
        total.orphan_sandboxes += c.orphan_sandboxes;
        total.duplicate_sandboxes += c.duplicate_sandboxes;
        total.wrong_status += c.wrong_status;
        total.missed_deletes += c.missed_deletes;
        // Let the next round start from a settled node.
        wait_all_running(fake, &live, Duration::from_secs(60));
    }
    Ok(Outcome {
        title: format!(
            "kill during churn ({} kills, {} pods; each round 3 deleted, 1 updated, 3 created)",
            args.kills, args.churn_pods
        ),
        checks: vec![
            Check::zero("pods restarted needlessly", total.needless_restarts),
            Check::zero("orphan sandboxes", total.orphan_sandboxes),
            Check::zero("duplicate sandboxes", total.duplicate_sandboxes),
            Check::zero("status wrong 10 s after the restart", total.wrong_status),
            Check::zero("final deletes missed", total.missed_deletes),
        ],
        detail: json!({"kills": args.kills, "pods": args.churn_pods, "seed": args.seed, "rounds": rounds}),
    })
}
