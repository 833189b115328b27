//! CloudEvent `type` strings (docs/protocol.md §2).
//!
//! Format: `<group>.<version>.<resource>.<subresource>.<action>`. Parsing splits on `.`, needs at
//! least five segments; the last is the action, the one before the subresource (`spec` or
//! `status`), then resource and version; everything before is the group.

use std::fmt;

use crate::{Error, Result};

/// The only data type used for works: `io.open-cluster-management.works.v1alpha1.manifestbundles`.
pub const MANIFEST_BUNDLES: &str = "io.open-cluster-management.works.v1alpha1.manifestbundles";

/// The gRPC heartbeat event type (docs/protocol.md §7.1.3).
pub const HEARTBEAT: &str = "io.open-cluster-management.cloudevents.heartbeat";

/// Subresource of an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubResource {
    /// `spec`: source → agent.
    Spec,
    /// `status`: agent → source.
    Status,
}

impl SubResource {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            SubResource::Spec => "spec",
            SubResource::Status => "status",
        }
    }
}

/// Action of an event type (docs/protocol.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `create_request`
    Create,
    /// `update_request`
    Update,
    /// `delete_request`
    Delete,
    /// `resync_request`
    ResyncRequest,
    /// `resync_response`
    ResyncResponse,
    /// `watch_request` (an authorization verb only; never sent)
    Watch,
}

impl Action {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create_request",
            Action::Update => "update_request",
            Action::Delete => "delete_request",
            Action::ResyncRequest => "resync_request",
            Action::ResyncResponse => "resync_response",
            Action::Watch => "watch_request",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create_request" => Action::Create,
            "update_request" => Action::Update,
            "delete_request" => Action::Delete,
            "resync_request" => Action::ResyncRequest,
            "resync_response" => Action::ResyncResponse,
            "watch_request" => Action::Watch,
            _ => return None,
        })
    }
}

/// A parsed CloudEvent type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType {
    /// Data type: `<group>.<version>.<resource>`.
    pub data_type: String,
    /// `spec` or `status`.
    pub sub_resource: SubResource,
    /// The action.
    pub action: Action,
}

impl EventType {
    /// A `manifestbundles` event type with the given subresource and action.
    pub fn manifest_bundles(sub_resource: SubResource, action: Action) -> Self {
        EventType { data_type: MANIFEST_BUNDLES.to_owned(), sub_resource, action }
    }

    /// Parses a type string.
    ///
    /// # Errors
    /// [`Error::InvalidType`] when there are fewer than five segments, the subresource is not
    /// `spec`/`status`, or the action is unknown.
    pub fn parse(ty: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidType { ty: ty.to_owned(), reason };
        // From the right: the action, the subresource, then the data type (3 segments or more).
        let mut tail = ty.rsplitn(3, '.');
        let (Some(action), Some(sub_resource), Some(data_type)) = (tail.next(), tail.next(), tail.next())
        else {
            return Err(invalid("expected <group>.<version>.<resource>.<subresource>.<action>"));
        };
        if data_type.split('.').nth(2).is_none() {
            return Err(invalid("expected <group>.<version>.<resource>.<subresource>.<action>"));
        }
        let action = Action::parse(action).ok_or_else(|| invalid("unknown action"))?;
        let sub_resource = match sub_resource {
            "spec" => SubResource::Spec,
            "status" => SubResource::Status,
            _ => return Err(invalid("subresource must be spec or status")),
        };
        if data_type.split('.').any(str::is_empty) {
            return Err(invalid("empty segment"));
        }
        Ok(EventType { data_type: data_type.to_owned(), sub_resource, action })
    }

    /// True when the data type is [`MANIFEST_BUNDLES`].
    pub fn is_manifest_bundles(&self) -> bool {
        self.data_type == MANIFEST_BUNDLES
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.data_type, self.sub_resource.as_str(), self.action.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_every_wire_combination() {
        for suffix in [
            "spec.create_request",
            "spec.update_request",
            "spec.delete_request",
            "spec.resync_request",
            "spec.resync_response",
            "status.update_request",
            "status.resync_request",
            "status.resync_response",
        ] {
            let s = format!("{MANIFEST_BUNDLES}.{suffix}");
            let t = EventType::parse(&s).expect("valid");
            assert!(t.is_manifest_bundles());
            assert_eq!(t.to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_types() {
        assert!(EventType::parse("a.b.c.spec").is_err());
        assert!(EventType::parse(&format!("{MANIFEST_BUNDLES}.foo.create_request")).is_err());
        assert!(EventType::parse(&format!("{MANIFEST_BUNDLES}.spec.explode")).is_err());
        assert!(EventType::parse(HEARTBEAT).is_err());
        let reason = |ty: &str| match EventType::parse(ty) {
            Err(Error::InvalidType { reason, .. }) => reason,
            other => panic!("{ty}: {other:?}"),
        };
        assert_eq!(
            reason("b.c.spec.create_request"),
            "expected <group>.<version>.<resource>.<subresource>.<action>"
        );
        assert_eq!(reason("create_request"), "expected <group>.<version>.<resource>.<subresource>.<action>");
        assert_eq!(reason("a..c.spec.create_request"), "empty segment");
        assert_eq!(reason(".b.c.status.update_request"), "empty segment");
        assert_eq!(reason("a.b.c.spec."), "unknown action");
        assert_eq!(reason("a.b.c..create_request"), "subresource must be spec or status");
        let e = EventType::parse("x.y.z.status.update_request").expect("3-segment data type");
        assert_eq!(e.data_type, "x.y.z");
        assert!(!e.is_manifest_bundles());
    }
}
