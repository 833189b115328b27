//! Snowflake sequence ids (docs/protocol.md §6.2): `bwmarrin/snowflake` layout, epoch
//! 1288834974657 ms, 41-bit milliseconds | 10-bit node | 12-bit step, sent as a decimal string.

use std::cmp::Ordering;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// The snowflake epoch, milliseconds since the Unix epoch.
pub const EPOCH_MS: i64 = 1_288_834_974_657;
/// The node id every Go agent uses.
pub const AGENT_NODE: i64 = 1;
const NODE_BITS: u32 = 10;
const STEP_BITS: u32 = 12;
const STEP_MASK: i64 = (1 << STEP_BITS) - 1;
const NODE_MASK: i64 = (1 << NODE_BITS) - 1;

/// A thread-safe snowflake id generator.
#[derive(Debug)]
pub struct Generator {
    node: i64,
    /// Added to the system clock, ms.
    clock_offset_ms: i64,
    state: Mutex<(i64, i64)>,
}

impl Generator {
    /// A generator for `node` (0..=1023; agents use [`AGENT_NODE`]).
    pub fn new(node: i64) -> Self {
        Generator::with_clock_offset(node, 0)
    }

    /// A generator for `node` whose clock is the system clock plus `clock_offset_ms` (negative:
    /// behind). For fault injection: an agent whose clock is skewed (docs/reliability.md).
    pub fn with_clock_offset(node: i64, clock_offset_ms: i64) -> Self {
        Generator { node: node & NODE_MASK, clock_offset_ms, state: Mutex::new((0, 0)) }
    }

    /// The next id: strictly greater than every id this generator returned before.
    pub fn next_id(&self) -> i64 {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = now_ms().saturating_add(self.clock_offset_ms).max(EPOCH_MS);
        if now < st.0 {
            now = st.0; // clock went backwards: stay monotonic
        }
        if now == st.0 {
            st.1 = (st.1 + 1) & STEP_MASK;
            if st.1 == 0 {
                // step exhausted in this millisecond: borrow the next one
                now += 1;
            }
        } else {
            st.1 = 0;
        }
        st.0 = now;
        ((now - EPOCH_MS) << (NODE_BITS + STEP_BITS)) | (self.node << STEP_BITS) | st.1
    }

    /// [`Generator::next_id`] as the decimal string sent on the wire.
    pub fn next_string(&self) -> String {
        self.next_id().to_string()
    }
}

impl Default for Generator {
    fn default() -> Self {
        Generator::new(AGENT_NODE)
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(EPOCH_MS)
}

/// The parts of a snowflake id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// Milliseconds since [`EPOCH_MS`].
    pub time: i64,
    /// Node id.
    pub node: i64,
    /// Step within the millisecond.
    pub step: i64,
}

/// Parses a decimal snowflake id.
///
/// # Errors
/// [`Error::InvalidSequenceId`] when not a non-negative decimal integer.
pub fn parse(id: &str) -> Result<Parts> {
    let n: i64 = id
        .parse()
        .map_err(|_| Error::InvalidSequenceId { id: id.to_owned(), reason: "not a decimal integer" })?;
    if n < 0 {
        return Err(Error::InvalidSequenceId { id: id.to_owned(), reason: "negative" });
    }
    Ok(Parts { time: n >> (NODE_BITS + STEP_BITS), node: (n >> STEP_BITS) & NODE_MASK, step: n & STEP_MASK })
}

/// Parses `id` and checks that its time is at most `max_skew_ms` after `now_ms` (both in
/// milliseconds since the Unix epoch): a sequence id from the future would make every later
/// real one look stale.
///
/// # Errors
/// [`Error::InvalidSequenceId`] when `id` does not parse or is too far in the future.
pub fn check_not_future(id: &str, now_ms: i64, max_skew_ms: i64) -> Result<Parts> {
    let parts = parse(id)?;
    if parts.time.saturating_add(EPOCH_MS) > now_ms.saturating_add(max_skew_ms) {
        return Err(Error::InvalidSequenceId { id: id.to_owned(), reason: "its time is in the future" });
    }
    Ok(parts)
}

/// True when `new` is strictly newer than `last` (docs/protocol.md §6.2): an empty `last` is older
/// than anything; node ids must match; compare time, then step; equal is not newer.
///
/// # Errors
/// [`Error::InvalidSequenceId`] when either id does not parse or the node ids differ.
pub fn is_newer(new: &str, last: Option<&str>) -> Result<bool> {
    let Some(last) = last.filter(|l| !l.is_empty()) else { return Ok(true) };
    let a = parse(new)?;
    let b = parse(last)?;
    if a.node != b.node {
        return Err(Error::InvalidSequenceId {
            id: new.to_owned(),
            reason: "node id differs from the stored one",
        });
    }
    Ok(match a.time.cmp(&b.time) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.step > b.step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_monotonic_and_carry_node_one() {
        let g = Generator::default();
        let mut last = g.next_string();
        for _ in 0..10_000 {
            let id = g.next_string();
            assert!(is_newer(&id, Some(&last)).expect("same node"));
            assert_eq!(parse(&id).expect("parse").node, AGENT_NODE);
            last = id;
        }
    }

    #[test]
    fn a_clock_offset_moves_the_ids_time() {
        let minute = 60_000i64;
        let before = now_ms();
        let behind =
            parse(&Generator::with_clock_offset(AGENT_NODE, -5 * minute).next_string()).expect("parse");
        let ahead =
            parse(&Generator::with_clock_offset(AGENT_NODE, 5 * minute).next_string()).expect("parse");
        let after = now_ms();
        assert!((before - 5 * minute..=after - 5 * minute).contains(&(behind.time + EPOCH_MS)));
        assert!((before + 5 * minute..=after + 5 * minute).contains(&(ahead.time + EPOCH_MS)));
    }

    #[test]
    fn ids_from_the_future_are_refused() {
        let now = now_ms();
        let id = Generator::default().next_string();
        assert!(check_not_future(&id, now, 0).is_ok() || check_not_future(&id, now + 1, 0).is_ok());
        let hour = 3_600_000i64;
        let future = ((now + hour - EPOCH_MS) << 22) | (1 << 12);
        assert!(check_not_future(&future.to_string(), now, 600_000).is_err());
        assert!(check_not_future(&future.to_string(), now, 2 * hour).is_ok());
        assert!(check_not_future(&i64::MAX.to_string(), now, 600_000).is_err(), "the largest id");
        assert!(check_not_future("12x", now, 600_000).is_err());
    }

    #[test]
    fn comparison_rules() {
        // a known Go-generated id: node 1
        let t = (1_000i64 << 22) | (1 << 12) | 5;
        let later = (1_001i64 << 22) | (1 << 12);
        assert!(is_newer(&later.to_string(), Some(&t.to_string())).expect("ok"));
        assert!(!is_newer(&t.to_string(), Some(&t.to_string())).expect("ok"), "equal is stale");
        assert!(is_newer(&t.to_string(), None).expect("ok"));
        assert!(is_newer(&t.to_string(), Some("")).expect("ok"));
        let other_node = (1_001i64 << 22) | (2 << 12);
        assert!(is_newer(&other_node.to_string(), Some(&t.to_string())).is_err());
        assert!(is_newer("abc", Some(&t.to_string())).is_err());
    }
}
