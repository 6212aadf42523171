//! tmp
pub struct SubnetMostFree;
impl weft_policy_sdk::SubnetSelection for SubnetMostFree {
    fn configure(_s: &str) -> Result<Self, String> {
        Ok(SubnetMostFree)
    }
    fn select_subnet(
        &self,
        r: &weft_policy_sdk::subnet::EniRequest,
        _c: &[weft_policy_sdk::subnet::Candidate],
    ) -> weft_policy_sdk::subnet::Choice {
        weft_policy_sdk::subnet::Choice::UseSubnet(r.node_subnet_id.clone())
    }
}
weft_policy_sdk::export_subnet_selection!(SubnetMostFree);
