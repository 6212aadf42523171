//! ENIs that must go but have not: deletes that failed (retried with their
//! journal intent still open) and leaked ENIs of the cluster (collected at
//! start and then periodically, like the Amazon VPC CNI's leaked-ENI
//! cleanup).

use super::driver::Driver;

impl Driver {
    /// Retries every delete that failed; a success closes its intent and
    /// takes the ENI out of the pool.
    pub(super) async fn retry_deletes(&mut self) {
        for (intent, eni) in std::mem::take(&mut self.undeleted) {
            let result = self.cloud.delete_eni(&eni.id).await;
            self.counted("delete-eni", &result);
            match result {
                Ok(()) => {
                    tracing::info!(eni = %eni.id, op = %intent.id, "ENI deleted on retry");
                    self.released(&eni.id, &intent);
                }
                Err(error) => {
                    tracing::warn!(eni = %eni.id, %error, "ENI still not deleted; retrying later");
                    self.undeleted.push((intent, eni));
                }
            }
        }
    }

    /// Deletes the cluster's leaked ENIs (detached, tagged for this
    /// cluster, older than the cloud's minimum age); each deletion is
    /// counted as pool event `collect-leaked-eni`.
    pub(super) async fn collect_leaked(&mut self) {
        match self.cloud.delete_leaked_enis().await {
            Ok(deleted) => {
                for eni_id in deleted {
                    tracing::info!(eni = %eni_id, "leaked ENI deleted");
                    self.shared.metrics.pool("collect-leaked-eni", "ok");
                    // A delete this agent was retrying is done too.
                    if let Some(at) = self.undeleted.iter().position(|(_, e)| e.id == eni_id) {
                        let (intent, _) = self.undeleted.remove(at);
                        self.released(&eni_id, &intent);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "leaked-ENI collection failed; retrying at the next period");
                self.shared
                    .metrics
                    .pool("collect-leaked-eni", error.outcome());
            }
        }
    }
}
