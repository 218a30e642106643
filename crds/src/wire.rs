//! Names the operator writes and the proxies read in cluster mode: one definition, so the two
//! sides cannot drift apart.

/// The ConfigMap key holding the YAML routing snapshot.
pub const SNAPSHOT_KEY: &str = "snapshot.yaml";
/// The key of the client key set (a YAML list in the snapshot's `keys` format: name, sha256,
/// routes, limits), in the user's Secret and in the credentials Secret alike; the proxies
/// merge it into the snapshot they serve.
pub const CLIENT_KEYS_KEY: &str = "keys.yaml";
/// On the snapshot ConfigMap while client keys are on (value [`CLIENT_KEYS_REQUIRED`]): a
/// proxy refuses a snapshot that comes without its keys, so a deleted credentials Secret or
/// an empty list never opens the fleet.
pub const CLIENT_KEYS_ANNOTATION: &str = "switchyard.dev/client-keys";
pub const CLIENT_KEYS_REQUIRED: &str = "required";
