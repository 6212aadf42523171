//! Runs every fixture in `fixtures/` through the SDK's native harness.

use subnet_most_free::SubnetMostFree;

#[test]
fn fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let checked = weft_policy_sdk::testing::check_subnet_fixtures::<SubnetMostFree>(dir);
    assert!(checked >= 5, "only {checked} fixtures");
}
