//! A component of the `pool-sizing-history` world, the one the SDK built
//! before `pool-sizing-timed`: the host must keep serving it, with the
//! history but no timing. It answers with what it was given.

wit_bindgen::generate!({
    path: "../../wit",
    world: "weft:policy/pool-sizing-history",
    generate_all,
});

/// The history-world policy.
struct HistoryWorld;

impl Guest for HistoryWorld {
    fn configure(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn size_pool_with_history(state: PoolState, history: Vec<Minute>) -> PoolDecision {
        let adds: u32 = history.iter().map(|m| m.adds).sum();
        PoolDecision {
            changes: Vec::new(),
            create: Vec::new(),
            release: Vec::new(),
            reason: format!(
                "history: {} minutes, {adds} ADDs, {} in the last minute",
                history.len(),
                state.activity.adds_last_minute
            ),
        }
    }
}

export!(HistoryWorld);
