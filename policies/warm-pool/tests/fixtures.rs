//! Runs every fixture in `fixtures/` through the SDK's native harness.

use warm_pool::WarmPool;

#[test]
fn fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let checked = weft_policy_sdk::testing::check_pool_fixtures::<WarmPool>(dir);
    assert!(checked >= 8, "only {checked} fixtures");
}
