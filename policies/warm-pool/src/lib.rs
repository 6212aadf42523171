//! tmp
pub struct WarmPool;
impl weft_policy_sdk::PoolSizing for WarmPool {
    fn configure(_s: &str) -> Result<Self, String> {
        Ok(WarmPool)
    }
    fn size_pool(
        &self,
        _s: &weft_policy_sdk::pool::PoolState,
    ) -> weft_policy_sdk::pool::PoolDecision {
        Default::default()
    }
}
weft_policy_sdk::export_pool_sizing!(WarmPool);
