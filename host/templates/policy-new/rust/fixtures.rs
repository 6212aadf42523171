//! Runs every fixture in `fixtures/` natively, without Wasm.

#[test]
fn fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let checked = weft_policy_sdk::testing::{{check_fn}}::<{{crate}}::{{type}}>(dir);
    assert!(checked > 0);
}
