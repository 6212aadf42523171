//! Removals made to fail, for tests that teardown and GC go on past a
//! failure, or that what a teardown deletes itself is gone before the
//! veth's removal would take it along. A hook, not a real failure, because
//! none can be made: root deletes any veth, route, rule and address of a
//! namespace it owns, and what is already gone counts as removed. Without
//! the `testing` feature nothing is ever refused.

use super::{Plumbing, PlumbingError};

#[cfg(feature = "testing")]
impl Plumbing {
    /// Removing `what` fails from now on, as a refusal by the kernel would
    /// (`EPERM`). `what` is a veth's name (GC's removal of a leftover, a
    /// pod teardown's removal of its veth), an IP (the rules of a leftover
    /// pod address in GC, the rule of an ENI's primary IP in ENI teardown),
    /// or `DST/PREFIX` (a route of an ENI's table in ENI teardown).
    pub fn refuse_removal(&self, what: &str) {
        self.refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(what.to_owned());
    }

    pub(super) fn refused(&self, what: &str) -> Result<(), PlumbingError> {
        let refusals = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match refusals.contains(what) {
            true => Err(PlumbingError::io(
                format!("delete {what} (refused by the test)"),
                std::io::Error::from_raw_os_error(libc::EPERM),
            )),
            false => Ok(()),
        }
    }
}

#[cfg(not(feature = "testing"))]
impl Plumbing {
    pub(super) fn refused(&self, _what: &str) -> Result<(), PlumbingError> {
        Ok(())
    }
}
