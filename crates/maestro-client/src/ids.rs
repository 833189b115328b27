//! Resource ids (docs/protocol.md §9).

use uuid::Uuid;

/// The group-resource part of the id seed: `manifestworks.work.open-cluster-management.io`.
pub const MANIFESTWORKS_GROUP_RESOURCE: &str = "manifestworks.work.open-cluster-management.io";

/// The resource id sdk-go's ManifestWork source client (and Maestro's grpcsource) give a work:
/// UUIDv5 in the OID namespace of
/// `"<source_id>-manifestworks.work.open-cluster-management.io-<consumer>-<name>"`.
///
/// Deterministic: the same source, consumer and work name always give the same id, which is
/// how a work is found again by name.
pub fn resource_id(source_id: &str, consumer: &str, name: &str) -> String {
    let seed = format!("{source_id}-{MANIFESTWORKS_GROUP_RESOURCE}-{consumer}-{name}");
    Uuid::new_v5(&Uuid::NAMESPACE_OID, seed.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_independently_computed_uuid_v5() {
        // python3: uuid.uuid5(uuid.NAMESPACE_OID,
        //   'maestro-cli-manifestworks.work.open-cluster-management.io-cluster1-web')
        assert_eq!(resource_id("maestro-cli", "cluster1", "web"), "5062a30d-4915-5591-82e2-c7aa7a9de678");
        assert_eq!(resource_id("mw-client-example", "c1", "work-1"), "888f3526-4f59-5cc8-8632-077f0c6184b6");
        assert_ne!(resource_id("a", "c1", "w"), resource_id("b", "c1", "w"));
    }
}
