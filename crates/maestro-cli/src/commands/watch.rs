//! `watch`: status changes of one work, of a consumer's works or of every work of this source,
//! live from the source gRPC subscription ([`SourceClient::watch`]), with a REST resync on
//! start and on every reconnect.
//!
//! The subscription replays no history, so each (re)connection first opens the stream, then
//! lists the matching works over REST and prints those whose state changed since last printed
//! (works that disappeared are printed as deleted), then follows the stream; updates that
//! arrive during the listing wait in the stream, so none is missed. When the stream ends or
//! fails, `watch` says so on stderr and reconnects after a capped exponential delay.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use maestro_api::payload::Condition;
use maestro_client::types::condition_text;
use maestro_client::{
    BundleFilter, ClientError, ResourceBundle, SourceClient, StatusStream, StatusUpdate, resource_id,
};
use maestro_transport::retry;
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::{OutputFormat, WatchArgs};
use crate::commands::Context;

/// The first reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A stream that stayed open this long resets the reconnect delay to [`BACKOFF_MIN`].
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Runs `watch` until interrupted, or until `--timeout` (then exit 0).
///
/// # Errors
/// Connection errors, and a failing first REST listing or first subscription (other than a
/// transient one); later failures are reported on stderr and retried. Output errors.
pub(crate) async fn run(ctx: &Context, args: &WatchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let watch = watch(ctx, args, out);
    match args.timeout {
        Some(t) => tokio::time::timeout(t, watch).await.unwrap_or(Ok(())),
        None => watch.await,
    }
}

/// Which works are watched.
#[derive(Debug, Clone)]
struct Scope {
    /// This source's id.
    source: String,
    /// Only this consumer's works.
    consumer: Option<String>,
    /// Only the work of this name (with `consumer`).
    name: Option<String>,
}

impl Scope {
    /// The REST filter listing the watched works.
    fn filter(&self) -> BundleFilter {
        BundleFilter {
            consumer: self.consumer.clone(),
            source: Some(self.source.clone()),
            name: self.name.clone(),
            ..Default::default()
        }
    }

    /// True when work `name` on `consumer` is watched.
    fn admits(&self, consumer: &str, name: &str) -> bool {
        self.consumer.as_ref().is_none_or(|c| c == consumer) && self.name.as_ref().is_none_or(|n| n == name)
    }

    /// False when update `u` alone shows it is for a work not watched (another consumer,
    /// or not the one watched work).
    fn may_watch(&self, u: &StatusUpdate) -> bool {
        if let Some(c) = &self.consumer
            && !u.consumer.is_empty()
            && u.consumer != *c
        {
            return false;
        }
        match (&self.consumer, &self.name) {
            (Some(c), Some(n)) => u.resource_id == resource_id(&self.source, c, n),
            _ => true,
        }
    }
}

/// The state of one work as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkState {
    /// Resource id.
    id: String,
    /// Consumer.
    consumer: String,
    /// Work name (the resource id when it could not be learnt).
    name: String,
    /// Spec version, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    /// The version the agent last reported status for; `None` before any status.
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_version: Option<i64>,
    /// Deletion was requested.
    deleting: bool,
    /// The work is gone (or the agent reported `Deleted`=True).
    deleted: bool,
    /// Work-level conditions.
    conditions: Vec<Condition>,
}

impl WorkState {
    /// Work `name` on `consumer` with id `id`, with nothing else known.
    fn named(id: &str, consumer: &str, name: &str) -> Self {
        WorkState {
            id: id.to_owned(),
            consumer: consumer.to_owned(),
            name: name.to_owned(),
            version: None,
            observed_version: None,
            deleting: false,
            deleted: false,
            conditions: Vec::new(),
        }
    }

    /// The state of bundle `b` as read over REST.
    fn from_bundle(b: &ResourceBundle) -> Self {
        WorkState {
            id: b.id.clone(),
            consumer: b.consumer_name.clone(),
            name: b.name.clone(),
            version: Some(b.version),
            observed_version: b.status.as_ref().map(|s| s.observed_version),
            deleting: b.is_deleting(),
            deleted: false,
            conditions: b.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
        }
    }

    /// The state after status update `u`, on top of what was known of the work (`None`:
    /// nothing; the name is then the resource id).
    fn from_update(u: &StatusUpdate, known: Option<&WorkState>) -> Self {
        let version = known.and_then(|k| k.version).map_or(u.resource_version, |v| v.max(u.resource_version));
        WorkState {
            id: u.resource_id.clone(),
            consumer: known.map_or_else(|| u.consumer.clone(), |k| k.consumer.clone()),
            name: known.map_or_else(|| u.resource_id.clone(), |k| k.name.clone()),
            version: Some(version),
            observed_version: Some(u.resource_version),
            deleting: known.is_some_and(|k| k.deleting),
            deleted: u.is_deleted(),
            conditions: u.status.conditions.clone(),
        }
    }

    /// One line: `c1/web version 2 (observed 2): Applied=True, Available=False [R: m]`,
    /// `c1/web version 1: no status reported`, or `c1/web deleted`.
    fn text(&self) -> String {
        let work = format!("{}/{}", self.consumer, self.name);
        if self.deleted {
            return format!("{work} deleted");
        }
        let version = self.version.map(|v| format!(" version {v}")).unwrap_or_default();
        let deleting = if self.deleting { ", deleting" } else { "" };
        let Some(observed) = self.observed_version else {
            return format!("{work}{version}{deleting}: no status reported");
        };
        let conditions = if self.conditions.is_empty() {
            "no conditions".to_owned()
        } else {
            self.conditions.iter().map(condition_text).collect::<Vec<_>>().join(", ")
        };
        format!("{work}{version} (observed {observed}){deleting}: {conditions}")
    }
}

/// One printed change in `-o json` / `-o yaml`: the state with when and how it was seen.
#[derive(Serialize)]
struct Change<'a> {
    /// When it was printed (RFC 3339).
    time: String,
    /// `stream` (the gRPC subscription) or `resync` (the REST listing).
    via: &'a str,
    /// The state.
    #[serde(flatten)]
    state: &'a WorkState,
}

/// The watch: what was printed last per work, and where to print.
struct Watcher<'o> {
    /// The source client.
    client: SourceClient,
    /// The watched works.
    scope: Scope,
    /// The state last printed, by resource id.
    printed: HashMap<String, WorkState>,
    /// Works the stream reported that REST shows are not watched (another consumer or name).
    ignored: HashSet<String>,
    /// The output format.
    format: OutputFormat,
    /// Where changes go.
    out: &'o mut dyn Write,
}

impl Watcher<'_> {
    /// Prints `state` unless it is what was printed last for the work.
    fn emit(&mut self, state: WorkState, via: &str) -> anyhow::Result<()> {
        if self.printed.get(&state.id) == Some(&state) {
            return Ok(());
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self.format {
            OutputFormat::Json => {
                let line = serde_json::to_string(&Change { time, via, state: &state })?;
                writeln!(self.out, "{line}")?;
            }
            OutputFormat::Yaml => {
                let doc = serde_yaml_ng::to_string(&Change { time, via, state: &state })?;
                write!(self.out, "---\n{doc}")?;
            }
            OutputFormat::Table | OutputFormat::Name | OutputFormat::Wide => {
                writeln!(self.out, "{time} {}", state.text())?;
            }
        }
        self.out.flush()?;
        self.printed.insert(state.id.clone(), state);
        Ok(())
    }

    /// Prints the listed `bundles` that changed, and the printed works missing from the
    /// listing as deleted.
    fn resync(&mut self, bundles: &[ResourceBundle]) -> anyhow::Result<()> {
        let listed: HashSet<&str> = bundles.iter().map(|b| b.id.as_str()).collect();
        for b in bundles {
            self.emit(WorkState::from_bundle(b), "resync")?;
        }
        let mut gone: Vec<WorkState> = self
            .printed
            .values()
            .filter(|s| !s.deleted && !listed.contains(s.id.as_str()))
            .map(|s| WorkState { deleted: true, ..s.clone() })
            .collect();
        gone.sort_by(|a, b| (&a.consumer, &a.name).cmp(&(&b.consumer, &b.name)));
        for state in gone {
            self.emit(state, "resync")?;
        }
        Ok(())
    }

    /// What is known of the work of update `u`: printed before, or read over REST, or (for
    /// the one watched work) its name; `Some(None)` when nothing is, `None` when the work is
    /// not watched (remembered in [`Watcher::ignored`]).
    async fn known(&mut self, u: &StatusUpdate) -> Option<Option<WorkState>> {
        if let Some(state) = self.printed.get(&u.resource_id) {
            return Some(Some(state.clone()));
        }
        if self.ignored.contains(&u.resource_id) || !self.scope.may_watch(u) {
            return None;
        }
        match self.client.rest().find_bundle(&u.resource_id).await {
            Ok(Some(b)) if self.scope.admits(&b.consumer_name, &b.name) => {
                Some(Some(WorkState::from_bundle(&b)))
            }
            Ok(Some(_)) => {
                self.ignored.insert(u.resource_id.clone());
                None
            }
            // Gone already, or unreadable: printed under its id, or the watched work's name.
            Ok(None) | Err(_) => match (&self.scope.consumer, &self.scope.name) {
                (Some(c), Some(n)) => Some(Some(WorkState::named(&u.resource_id, c, n))),
                _ => Some(None),
            },
        }
    }

    /// Prints the change of update `u` if its work is watched.
    async fn update(&mut self, u: &StatusUpdate) -> anyhow::Result<()> {
        let Some(known) = self.known(u).await else { return Ok(()) };
        self.emit(WorkState::from_update(u, known.as_ref()), "stream")
    }

    /// Follows `stream` until it ends or fails; returns how it ended, for the reconnect
    /// notice. Undecodable events are warned about and skipped.
    ///
    /// # Errors
    /// Output errors only.
    async fn follow(&mut self, mut stream: StatusStream) -> anyhow::Result<String> {
        loop {
            match std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
                None => return Ok("ended".into()),
                Some(Err(e @ ClientError::InvalidResponse { .. })) => {
                    eprintln!("warning: skipping a status event: {e}");
                }
                Some(Err(e)) => return Ok(format!("failed: {e}")),
                Some(Ok(u)) => self.update(&u).await?,
            }
        }
    }
}

/// The reconnect delays: [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`], jittered (the project's
/// one backoff, [`maestro_transport::retry::exponential`]).
fn reconnect_delays() -> impl Iterator<Item = Duration> {
    retry::delays(retry::exponential(BACKOFF_MIN, BACKOFF_MAX), BACKOFF_MAX)
}

/// Subscribes, resyncs and follows, reconnecting forever.
async fn watch(ctx: &Context, args: &WatchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = ctx.source().await?;
    let scope =
        Scope { source: ctx.source_id.clone(), consumer: args.consumer.clone(), name: args.name.clone() };
    let mut w =
        Watcher { client, scope, printed: HashMap::new(), ignored: HashSet::new(), format: ctx.output, out };
    let mut backoff = reconnect_delays();
    let mut first = true;
    loop {
        let opened = Instant::now();
        let stream = match w.client.watch().await {
            Err(e) if first && !e.is_transient() => {
                return Err(anyhow::Error::new(e).context("subscribing to status updates"));
            }
            other => other,
        };
        match w.client.rest().all_bundles(&w.scope.filter()).await {
            Ok(bundles) => w.resync(&bundles)?,
            Err(e) if first => return Err(anyhow::Error::new(e).context("listing the watched works")),
            Err(e) => eprintln!("warning: REST resync failed: {e}"),
        }
        first = false;
        let ended = match stream {
            Ok(stream) => w.follow(stream).await?,
            Err(e) => format!("could not be opened: {e}"),
        };
        if opened.elapsed() >= HEALTHY_AFTER {
            backoff = reconnect_delays();
        }
        // Whole milliseconds: what the message shows is what is waited.
        let next = backoff.next().unwrap_or(BACKOFF_MAX);
        let delay = Duration::from_millis(u64::try_from(next.as_millis()).unwrap_or(u64::MAX));
        eprintln!(
            "watch: status stream {ended}; reconnecting in {} (with a REST resync)",
            humantime::format_duration(delay)
        );
        tokio::time::sleep(delay).await;
    }
}
