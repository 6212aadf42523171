//! Entry points of the `cargo fuzz` targets in `fuzz/cni/`: each takes
//! arbitrary input, must never panic, and checks what must hold of whatever
//! parses. Compiled under `cargo fuzz` (`--cfg fuzzing`) and for this
//! crate's tests, which replay the committed corpora (`fuzz/cni/corpus/`).

use crate::api::{AddRequest, CheckRequest, DelRequest, GcRequest};
use crate::args::CniArgs;
use crate::netconf::{self, NetConf};
use crate::result::NetworkResult;
use crate::version::CniVersion;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The network configuration on the plugin's stdin, read as every command
/// reads it (`prevResult` and the GC attachments included).
pub fn netconf(stdin: &[u8]) {
    let Ok(obj) = netconf::parse_object(stdin) else {
        return;
    };
    let _ = netconf::version_hint(&obj);
    let Ok(conf) = NetConf::from_object(obj) else {
        return;
    };
    if let Ok(Some(prev)) = conf.prev_result() {
        render_everywhere(&prev);
    }
    let _ = conf.valid_attachments();
}

/// `CNI_ARGS` from the environment (any bytes the OS allows).
pub fn cni_args(raw: &[u8]) {
    let _ = CniArgs::parse(&String::from_utf8_lossy(raw));
}

/// A result (a `prevResult`, or weftd's answer) rendered in every version,
/// alone and chained onto itself.
pub fn result(bytes: &[u8]) {
    let Ok(result) = serde_json::from_slice::<NetworkResult>(bytes) else {
        return;
    };
    render_everywhere(&result);
    render_everywhere(&result.clone().chained_onto(result));
}

/// What `weft` prints must be JSON that reads back as a result.
fn render_everywhere(result: &NetworkResult) {
    for version in CniVersion::ALL {
        let rendered = result.render(version);
        if let Err(e) = serde_json::from_str::<NetworkResult>(&rendered) {
            panic!("the {version:?} rendering does not read back ({e}): {rendered}");
        }
    }
}

/// A request body as weftd's API decodes it: whatever decodes must encode
/// (as the plugin does) to the same request.
pub fn api_request(body: &[u8]) {
    round_trip::<AddRequest>(body);
    round_trip::<DelRequest>(body);
    round_trip::<CheckRequest>(body);
    round_trip::<GcRequest>(body);
}

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<T>(body) else {
        return;
    };
    let encoded = serde_json::to_vec(&request).expect("a decoded request encodes");
    let again: T = serde_json::from_slice(&encoded).expect("an encoded request decodes");
    assert_eq!(again, request, "the request changed on the way");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A fuzz target: its corpus directory and the function it runs.
    type Target = (&'static str, fn(&[u8]));

    #[test]
    fn the_committed_corpora_replay_without_a_failure() {
        let targets: [Target; 4] = [
            ("netconf", netconf),
            ("cni_args", cni_args),
            ("result", result),
            ("api_request", api_request),
        ];
        for (target, run) in targets {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/cni/corpus")
                .join(target);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let mut count = 0;
            for entry in entries {
                run(&std::fs::read(entry.expect("entry").path()).expect("input"));
                count += 1;
            }
            assert!(count > 0, "{} is empty", dir.display());
        }
    }
}
