//! Paths of the policy components built for `wasm32-wasip2` by this crate's
//! build script, for the host's tests: the three default policies (with
//! their fixture directories) and the misbehaving `weft-chaos-policy`
//! builds.
//!
//! Every constant is an absolute path that exists once this crate has been
//! built. No `.wasm` is committed: `cargo test` builds them.
//!
//! ```
//! let bytes = std::fs::read(weft_test_artifacts::WARM_POOL).unwrap();
//! assert_eq!(&bytes[..4], b"\0asm");
//! ```

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    /// Component binaries start with the Wasm magic and the component
    /// layer's version word (`0x0d 0x00 0x01 0x00`), unlike core modules.
    #[test]
    fn every_artifact_is_a_component() {
        for path in [
            WARM_POOL,
            SUBNET_MOST_FREE,
            SG_SELECTOR,
            CHAOS_POOL,
            CHAOS_SUBNET,
            CHAOS_SG,
            CHAOS_FOREIGN_IMPORT,
        ] {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                &bytes[..8],
                b"\0asm\x0d\0\x01\0",
                "{path} is not a component"
            );
        }
    }

    #[test]
    fn chaos_builds_differ() {
        let read = |p: &str| std::fs::read(p).unwrap();
        assert_ne!(read(CHAOS_POOL), read(CHAOS_SUBNET));
        assert_ne!(read(CHAOS_SUBNET), read(CHAOS_SG));
        assert_ne!(read(CHAOS_POOL), read(CHAOS_FOREIGN_IMPORT));
    }

    #[test]
    fn fixture_dirs_hold_fixtures() {
        for dir in [
            WARM_POOL_FIXTURES,
            SUBNET_MOST_FREE_FIXTURES,
            SG_SELECTOR_FIXTURES,
        ] {
            let count = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
                })
                .count();
            assert!(count > 0, "{dir} has no fixtures");
        }
    }
}
