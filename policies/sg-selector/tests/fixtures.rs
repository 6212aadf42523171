//! Runs every fixture in `fixtures/` through the SDK's native harness.

use sg_selector::SgSelector;

#[test]
fn fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let checked = weft_policy_sdk::testing::check_security_fixtures::<SgSelector>(dir);
    assert!(checked >= 5, "only {checked} fixtures");
}
