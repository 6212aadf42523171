//! Moments on the node's boot clock: `CLOCK_BOOTTIME` with the kernel's
//! boot id. Unlike wall-clock time it never steps (NTP, an operator, a
//! hypervisor resume), it counts time suspended, and every process of the
//! node reads the same clock, so the plugin and `weftd` can order what
//! each of them did. The boot id tells which boot a moment belongs to: the
//! clock starts again at zero on every boot.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io;
use std::sync::OnceLock;

/// Where the kernel tells the current boot's id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// One moment of one boot of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootInstant {
    /// The boot, as the kernel's boot id (a UUID) read as a number.
    #[serde(serialize_with = "boot_id_out", deserialize_with = "boot_id_in")]
    pub boot_id: u128,
    /// `CLOCK_BOOTTIME` in nanoseconds.
    pub boottime_ns: u64,
}

impl BootInstant {
    /// Now. Fails only where `/proc` is not mounted.
    pub fn now() -> io::Result<BootInstant> {
        let boot_id = current_boot_id()?;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec it is given.
        #[allow(unsafe_code, reason = "std has no CLOCK_BOOTTIME")]
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        Ok(BootInstant {
            boot_id,
            boottime_ns: secs.saturating_mul(1_000_000_000).saturating_add(nanos),
        })
    }

    /// Whether `self` is later than `other`, `current_boot` being the id
    /// of the boot the node runs now. Within one boot the clock decides.
    /// Of two boots, the current one is the later; of two earlier boots the
    /// order is unknown and `self` counts as earlier: what happened in an
    /// earlier boot belongs to network namespaces that died with it.
    pub fn is_after(&self, other: &BootInstant, current_boot: u128) -> bool {
        if self.boot_id == other.boot_id {
            self.boottime_ns > other.boottime_ns
        } else {
            self.boot_id == current_boot
        }
    }
}

/// The id of the boot the node runs now (read once per process: a
/// process does not outlive its boot).
pub fn current_boot_id() -> io::Result<u128> {
    static CURRENT: OnceLock<u128> = OnceLock::new();
    if let Some(id) = CURRENT.get() {
        return Ok(*id);
    }
    let text = std::fs::read_to_string(BOOT_ID)?;
    let id = parse_boot_id(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{BOOT_ID} holds {text:?}, not a UUID"),
        )
    })?;
    Ok(*CURRENT.get_or_init(|| id))
}

fn parse_boot_id(text: &str) -> Option<u128> {
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    (hex.len() == 32)
        .then(|| u128::from_str_radix(&hex, 16).ok())
        .flatten()
}

fn boot_id_out<S: Serializer>(id: &u128, s: S) -> Result<S::Ok, S::Error> {
    let hex = format!("{id:032x}");
    s.serialize_str(&format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

fn boot_id_in<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    let text = String::deserialize(d)?;
    parse_boot_id(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("boot id {text:?} is not a UUID")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_this_boot_and_moves_forward_and_round_trips() {
        let first = BootInstant::now().unwrap();
        let then = BootInstant::now().unwrap();
        assert_eq!(first.boot_id, current_boot_id().unwrap());
        assert!(!first.is_after(&then, first.boot_id));
        let json = serde_json::to_string(&first).unwrap();
        let id = std::fs::read_to_string(BOOT_ID).unwrap();
        assert!(json.contains(id.trim()), "{json} names boot {id}");
        assert_eq!(serde_json::from_str::<BootInstant>(&json).unwrap(), first);
        assert!(serde_json::from_str::<BootInstant>(r#"{"bootId":"x","boottimeNs":1}"#).is_err());
    }

    #[test]
    fn the_current_boot_is_later_than_any_other() {
        let at = |boot_id, boottime_ns| BootInstant {
            boot_id,
            boottime_ns,
        };
        let current = 7;
        assert!(at(current, 5).is_after(&at(current, 4), current));
        assert!(!at(current, 4).is_after(&at(current, 4), current));
        // The clock restarts at every boot: a small value of this boot is
        // later than a large one of an earlier boot, and not the other way.
        assert!(at(current, 1).is_after(&at(6, 9_000), current));
        assert!(!at(6, 9_000).is_after(&at(current, 1), current));
        // Two earlier boots: unknown, counted as earlier.
        assert!(!at(5, 9).is_after(&at(6, 1), current));
        assert!(!at(6, 1).is_after(&at(5, 9), current));
    }
}
