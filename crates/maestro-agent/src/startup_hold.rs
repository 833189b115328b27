//! The start-up hold (docs/protocol.md §6.1): a restarted agent does not create works from
//! plain specs until its first spec resync answer is complete.
//!
//! Brokers redeliver, late and (Pub/Sub) in no order, what a killed agent took; the restarted
//! agent remembers no deletion, so a late create or update of a bundle deleted meanwhile would
//! create its work again. The first spec resync answer after the start names every bundle the
//! store holds and every bundle deleted lately (docs/protocol.md §5.2, §5.6). So while the hold
//! lasts, a plain spec (a `create_request` or `update_request`, not a deletion) of a work the
//! agent does not hold is kept aside; once every event of the answer arrived
//! ([`maestro_api::ext::RESYNC_EVENTS`] of them) the kept specs are taken in order, after the
//! answer's deletions, which drop the late ones (the tombstone rule) and let new bundles
//! through. The clock-based rule of [`crate::intake`] cannot do this when the agent's clock is
//! behind the server's (found by the fault-injection suite, docs/reliability.md).
//!
//! The hold begins only for an agent that restored works from AppliedManifestWork records
//! stamped with a store identity (this project's server): it lists them at version 0, so the
//! answer is never empty and carries its event count. A fresh agent (nothing to remember) and
//! an agent of a Go server (no count) never hold. A hold ends at the latest
//! [`HOLD_LIMIT`] after the first subscription, or [`ANSWER_GAP`] after the answer's last
//! event when that is later; at most [`HOLD_MAX`] specs are kept, and an agent that dropped
//! more asks for one more spec resync.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use maestro_api::types::Action;
use maestro_api::{AttributesReader, Event, ext};
use maestro_transport::Subscribed;
use tokio::time::Instant;

use crate::agent::Shared;
use crate::intake::Intake;

/// How long after the answer's last event a hold whose answer is incomplete still lasts.
pub(crate) const ANSWER_GAP: Duration = Duration::from_secs(10);
/// The most specs kept aside; later ones are dropped, and a spec resync brings them.
pub(crate) const HOLD_MAX: usize = 10_000;
/// The most answers counted during one hold; events of further answers are not counted.
const ANSWERS_MAX: usize = 64;

/// The hold's state.
#[derive(Debug, Default)]
struct State {
    active: bool,
    /// How long the hold lasts after the first subscription, unless the answer is arriving.
    limit: Duration,
    /// The kept specs, in arrival order.
    held: Vec<(Event, Action)>,
    /// Specs dropped because [`HOLD_MAX`] were kept.
    dropped: usize,
    /// Per answer ([`ext::RESYNC_ANSWER`]; `""` without one): how many events it has, and the
    /// ids of those received (redeliveries count once). Each answer counts on its own: events
    /// of an earlier answer lost to a broken stream do not hold up a later one.
    answers: HashMap<String, (usize, HashSet<String>)>,
    last_answer: Option<Instant>,
    /// The CloudEvent ids of the spec resync requests this agent sent during the hold: an
    /// answer naming another request answered a predecessor (a killed agent) and is late.
    requests: HashSet<String>,
}

/// The start-up hold of one agent.
#[derive(Debug, Default)]
pub(crate) struct StartupHold {
    state: Mutex<State>,
}

/// What ending a hold hands back: the kept specs, and whether any were dropped.
type Released = (Vec<(Event, Action)>, bool);

impl StartupHold {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Begins a hold lasting at most `limit` after the first subscription (at start, when
    /// works were restored from records of this project's server); zero: none.
    pub(crate) fn begin(&self, limit: Duration) {
        let mut state = self.state();
        state.active = !limit.is_zero();
        state.limit = limit;
    }

    /// Keeps `event` (a plain spec of a work not held) aside when the hold lasts; true when
    /// kept or dropped for good.
    pub(crate) fn keep(&self, event: &Event, action: Action) -> bool {
        let mut state = self.state();
        if !state.active {
            return false;
        }
        if state.held.len() < HOLD_MAX {
            state.held.push((event.clone(), action));
        } else {
            state.dropped += 1;
        }
        true
    }

    /// Notes the id of a spec resync request this agent sends (while the hold lasts).
    pub(crate) fn note_request(&self, id: &str) {
        let mut state = self.state();
        if state.active && state.requests.len() < ANSWERS_MAX {
            state.requests.insert(id.to_owned());
        }
    }

    /// True for an event of a resync answer to a request this agent did not send while the
    /// hold lasts (a predecessor's: late), when the hold lasts and the answer names its
    /// request ([`ext::RESYNC_ANSWER`]).
    pub(crate) fn answers_another(&self, event: &Event) -> bool {
        let state = self.state();
        state.active
            && ext::get_str(event, ext::RESYNC_ANSWER).is_some_and(|answer| !state.requests.contains(&answer))
    }

    /// Notes `event` when it belongs to a spec resync answer (it carries
    /// [`ext::RESYNC_EVENTS`]); returns what the hold kept once the answer is complete.
    pub(crate) fn answer_event(&self, event: &Event) -> Option<Released> {
        let mut state = self.state();
        if !state.active {
            return None;
        }
        let total = ext::get_str(event, ext::RESYNC_EVENTS)?.trim().parse::<usize>().ok()?;
        let answer = ext::get_str(event, ext::RESYNC_ANSWER).unwrap_or_default();
        if !answer.is_empty() && !state.requests.contains(&answer) {
            return None; // a predecessor's answer: says nothing of this agent's start
        }
        state.last_answer = Some(Instant::now());
        if state.answers.len() >= ANSWERS_MAX && !state.answers.contains_key(&answer) {
            return None;
        }
        let (expected, ids) = state.answers.entry(answer).or_insert_with(|| (total, HashSet::new()));
        ids.insert(event.id().to_owned());
        let complete = ids.len() >= *expected;
        complete.then(|| release(&mut state))
    }

    /// When the hold ends by time, counted from the first subscription at `since`; `None`
    /// once it ended.
    fn deadline(&self, since: Instant) -> Option<Instant> {
        deadline_of(&self.state(), since)
    }

    /// Ends the hold when its deadline (see [`StartupHold::deadline`]) has passed, in one step
    /// with the check: an answer completing meanwhile cannot be released twice.
    fn end_if_due(&self, since: Instant) -> Option<Released> {
        let mut state = self.state();
        let due = deadline_of(&state, since).is_some_and(|at| at <= Instant::now());
        due.then(|| release(&mut state))
    }

    /// Ends the hold now, handing back what it kept.
    #[cfg(test)]
    fn end(&self) -> Released {
        release(&mut self.state())
    }
}

fn deadline_of(state: &State, since: Instant) -> Option<Instant> {
    state.active.then(|| {
        let limit = since + state.limit;
        state.last_answer.map_or(limit, |last| limit.max(last + ANSWER_GAP))
    })
}

fn release(state: &mut State) -> Released {
    let taken = (std::mem::take(&mut state.held), state.dropped > 0);
    *state = State::default();
    taken
}

/// Takes the kept specs as if they had just arrived (the hold has ended); asks for one more
/// spec resync when some were dropped.
pub(crate) fn replay(shared: &Arc<Shared>, (held, dropped): Released) {
    tracing::info!(consumer = %shared.config.consumer, kept = held.len(), dropped,
        "start-up hold ended; taking the specs kept aside");
    let intake = Intake::new(shared.clone());
    for (event, action) in held {
        if let Err(e) = intake.spec(&event, action) {
            tracing::debug!(id = event.id(), error = %e, "a spec kept aside was refused");
        }
    }
    if dropped {
        shared.resync_owed.notify_one();
    }
}

/// Ends a hold that lasted too long (see the module doc); returns at once when there is none.
pub(crate) async fn run(shared: Arc<Shared>, mut subscribed: Subscribed) {
    if shared.hold.deadline(Instant::now()).is_none() {
        return;
    }
    let first = shared.cancel.run_until_cancelled(async { subscribed.wait_for(|n| *n > 0).await.is_ok() });
    if first.await != Some(true) {
        return;
    }
    let since = Instant::now();
    while let Some(at) = shared.hold.deadline(since) {
        if shared.cancel.run_until_cancelled(tokio::time::sleep_until(at)).await.is_none() {
            return;
        }
        if let Some(released) = shared.hold.end_if_due(since) {
            tracing::warn!(consumer = %shared.config.consumer,
                "start-up hold: the spec resync answer did not complete in time; ending the hold");
            replay(&shared, released);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maestro_api::{EventBuilder, EventBuilderV10};

    const LIMIT: Duration = Duration::from_secs(30);

    fn answer_event(id: &str, answer: &str, total: usize) -> Event {
        let mut ev = event(id, Some(total));
        ext::set_str(&mut ev, ext::RESYNC_ANSWER, answer);
        ev
    }

    fn event(id: &str, total: Option<usize>) -> Event {
        let mut ev = EventBuilderV10::new()
            .id(id)
            .source("test")
            .ty("io.open-cluster-management.works.v1alpha1.manifestbundles.spec.resync_response")
            .build()
            .expect("event");
        if let Some(n) = total {
            ext::set_str(&mut ev, ext::RESYNC_EVENTS, n.to_string());
        }
        ev
    }

    #[test]
    fn an_inactive_hold_keeps_nothing() {
        let hold = StartupHold::default();
        assert!(!hold.keep(&event("a", None), Action::Create));
        assert!(hold.answer_event(&event("r1", Some(1))).is_none());
        hold.begin(Duration::ZERO);
        assert!(!hold.keep(&event("a", None), Action::Create), "a zero limit turns it off");
    }

    #[test]
    fn the_answer_releases_the_kept_specs_once_every_event_arrived() {
        let hold = StartupHold::default();
        hold.begin(LIMIT);
        assert!(hold.keep(&event("late", None), Action::Update));
        assert!(hold.answer_event(&event("r1", Some(2))).is_none());
        assert!(hold.answer_event(&event("r1", Some(2))).is_none(), "a redelivery counts once");
        assert!(hold.answer_event(&event("plain", None)).is_none(), "not part of an answer");
        let (held, dropped) = hold.answer_event(&event("r2", Some(2))).expect("complete");
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].0.id(), "late");
        assert!(!dropped);
        assert!(!hold.keep(&event("new", None), Action::Create), "the hold ended");
    }

    /// An earlier answer that lost events (a broken stream) does not hold up a later one
    /// whose events all arrived, though their stored events share ids.
    #[test]
    fn each_answer_counts_on_its_own() {
        let hold = StartupHold::default();
        hold.begin(LIMIT);
        hold.note_request("a1");
        hold.note_request("a2");
        assert!(hold.answer_event(&answer_event("spec-1", "a1", 3)).is_none());
        assert!(hold.answer_event(&answer_event("spec-2", "a1", 3)).is_none());
        assert!(hold.answer_event(&answer_event("spec-1", "a2", 3)).is_none());
        assert!(hold.answer_event(&answer_event("spec-2", "a2", 3)).is_none());
        assert!(hold.answer_event(&answer_event("delete-a2", "a2", 3)).is_some(), "a2 is complete");
    }

    /// An answer to a request this agent did not send (its predecessor's, delivered late)
    /// neither ends the hold nor counts; its events are told apart.
    #[test]
    fn a_predecessors_answer_does_not_end_the_hold() {
        let hold = StartupHold::default();
        hold.begin(LIMIT);
        hold.note_request("mine");
        let late = answer_event("spec-1", "theirs", 1);
        assert!(hold.answers_another(&late));
        assert!(hold.answer_event(&late).is_none(), "not ours");
        let own = answer_event("spec-1", "mine", 1);
        assert!(!hold.answers_another(&own));
        assert!(hold.answer_event(&own).is_some());
        assert!(!hold.answers_another(&late), "the hold ended");
    }

    #[test]
    fn the_deadline_waits_for_an_answer_still_arriving() {
        let hold = StartupHold::default();
        let since = Instant::now();
        assert_eq!(hold.deadline(since), None);
        hold.begin(LIMIT);
        assert_eq!(hold.deadline(since), Some(since + LIMIT));
        assert!(hold.answer_event(&event("r1", Some(5))).is_none());
        let at = hold.deadline(since).expect("active");
        assert!(at >= since + LIMIT);
        assert!(at >= Instant::now() + ANSWER_GAP - Duration::from_secs(1));
        let (_, dropped) = hold.end();
        assert!(!dropped);
        assert_eq!(hold.deadline(since), None);
    }

    #[test]
    fn specs_beyond_the_cap_are_dropped_and_reported() {
        let hold = StartupHold::default();
        hold.begin(LIMIT);
        for i in 0..=HOLD_MAX {
            assert!(hold.keep(&event(&i.to_string(), None), Action::Create));
        }
        let (held, dropped) = hold.end();
        assert_eq!(held.len(), HOLD_MAX);
        assert!(dropped);
    }
}
