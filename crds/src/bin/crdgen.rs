//! Prints the CustomResourceDefinitions as one multi-document YAML stream:
//! `cargo run -p switchyard-api --bin crdgen > crds/yaml/switchyard.dev.yaml`.
//! The committed copies are checked against this output by `tests/crd_yaml.rs`.

fn main() {
    print!("{}", switchyard_api::crd::yaml());
}
