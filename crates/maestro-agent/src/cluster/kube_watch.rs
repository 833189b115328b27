//! The kube-rs watchers of [`KubeCluster`](super::KubeCluster) for `feedbackScrapeType: Watch`
//! (docs/protocol.md §8.5): one `kube::runtime::watcher` per kind (group and resource) and
//! agent, on `Api::<DynamicObject>::all_with` (every namespace), with watch bookmarks on
//! (`watcher::Config::default`) and kube-rs's default backoff (800 ms doubling to 30 s,
//! jittered, reset after 120 s of health) between restarts after errors.
//!
//! Every object listed or re-listed (`InitApply`, after a start or a restart, so changes made
//! while the watch was down are not lost), added, modified (`Apply`) or deleted (`Delete`) is
//! delivered to the agent's [`ChangeSink`](super::ChangeSink) as a [`WatchKey`]; bookmarks
//! only move the watch's resourceVersion (kube-rs consumes them) and deliver nothing.

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::{ResourceMapping, WatchContext, WatchKey};

/// The kube-rs resource of `mapping`.
pub(super) fn api_resource(mapping: &ResourceMapping) -> ApiResource {
    ApiResource {
        group: mapping.group.clone(),
        version: mapping.version.clone(),
        api_version: mapping.api_version(),
        kind: mapping.kind.clone(),
        plural: mapping.resource.clone(),
    }
}

/// Spawns the watcher of `mapping`'s kind on the context's task tracker; it runs until the
/// context is cancelled.
pub(super) fn spawn(client: Client, mapping: &ResourceMapping, ctx: &WatchContext) {
    let api: Api<DynamicObject> = Api::all_with(client, &api_resource(mapping));
    let (mapping, ctx2) = (mapping.clone(), ctx.clone());
    ctx.tasks().spawn(run(api, mapping, ctx2));
}

/// The key of a watched object of `mapping`'s kind.
fn key_of(mapping: &ResourceMapping, o: &DynamicObject) -> WatchKey {
    let ns = if mapping.namespaced { o.namespace().unwrap_or_default() } else { String::new() };
    WatchKey::new(mapping, &ns, &o.name_any())
}

async fn run(api: Api<DynamicObject>, mapping: ResourceMapping, ctx: WatchContext) {
    let (group, resource) = (mapping.group.clone(), mapping.resource.clone());
    tracing::info!(%group, %resource, "watching for feedbackScrapeType Watch");
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(next) = ctx.cancel().run_until_cancelled(events.next()).await {
        match next {
            Some(Ok(Event::Apply(o) | Event::Delete(o) | Event::InitApply(o))) => {
                ctx.sink().changed(&key_of(&mapping, &o));
            }
            Some(Ok(Event::Init)) => tracing::debug!(%group, %resource, "watch (re)listing"),
            Some(Ok(Event::InitDone)) => tracing::debug!(%group, %resource, "watch listed"),
            // The backoff stream waits before the watcher's next attempt; the objects are
            // still polled meanwhile.
            Some(Err(e)) => {
                tracing::warn!(%group, %resource, error = %e, "watch failed; restarting with backoff")
            }
            None => break,
        }
    }
    tracing::debug!(%group, %resource, "watch stopped");
}
