//! Snapshot versions, computed the same way by the operator (which publishes a snapshot) and
//! the proxies (which report the one they applied on `GET /config`), so the operator can count
//! the proxies that run the current snapshot.

use crate::RoutingSnapshot;

/// FNV-1a 64 over the canonical JSON form: stable across processes and machines.
pub fn content_hash(snapshot: &RoutingSnapshot) -> u64 {
    let bytes = serde_json::to_vec(snapshot).expect("a snapshot serializes");
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The version a proxy reports for `snapshot` as it parsed it: `<snapshot.version>-<hash>`, or
/// the hash alone for an unversioned snapshot. The hash covers the version field too, so two
/// snapshots with the same label but different content never look alike.
pub fn version_of(snapshot: &RoutingSnapshot) -> String {
    let hash = content_hash(snapshot);
    match &snapshot.version {
        Some(v) => format!("{v}-{hash:016x}"),
        None => format!("{hash:016x}"),
    }
}

/// Whether a proxy that reports `reported` runs the published snapshot `published` (whose
/// `version` the operator set to its content version). Exact when both sides use
/// [`version_of`]; the prefix keeps the comparison right if the two sides ever serialize a
/// field differently (the operator's label is itself a content hash).
pub fn is_applied(reported: &str, published: &RoutingSnapshot) -> bool {
    if reported == version_of(published) {
        return true;
    }
    match &published.version {
        Some(v) => reported
            .strip_prefix(v.as_str())
            .is_some_and(|rest| rest.starts_with('-')),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_carries_label_and_content_hash() {
        let mut s = RoutingSnapshot::default();
        let plain = version_of(&s);
        assert_eq!(plain.len(), 16);
        assert_eq!(plain, format!("{:016x}", content_hash(&s)));
        s.version = Some("abc".into());
        let v = version_of(&s);
        assert!(v.starts_with("abc-"), "{v}");
        assert_ne!(&v[4..], plain, "the label is part of the hashed content");
        assert!(is_applied(&v, &s));
        assert!(is_applied("abc-0000000000000000", &s));
        assert!(!is_applied("abcd-0000000000000000", &s));
        assert!(!is_applied(&plain, &s));
    }
}
