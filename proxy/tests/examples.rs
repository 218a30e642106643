//! Every example config in `examples/` parses and validates: the docs cannot rot.

use std::path::Path;
use switchyard_api::RoutingSnapshot;

#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains("apiVersion:") {
                continue; // Kubernetes manifests, checked by charts/test.sh
            }
            let snap: RoutingSnapshot =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            snap.validate()
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected the standalone and fleet examples");
}
