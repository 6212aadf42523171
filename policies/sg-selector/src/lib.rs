//! tmp
pub struct SgSelector;
impl weft_policy_sdk::SecurityGroups for SgSelector {
    fn configure(_s: &str) -> Result<Self, String> {
        weft_policy_sdk::log::info("hi");
        Ok(SgSelector)
    }
    fn select_security_groups(
        &self,
        r: &weft_policy_sdk::security::Request,
    ) -> Result<Vec<String>, String> {
        Ok(r.node_security_groups.clone())
    }
}
weft_policy_sdk::export_security_groups!(SgSelector);
