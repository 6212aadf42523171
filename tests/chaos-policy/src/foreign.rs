//! A pool-sizing component that also imports `evil:net/socket`, which no
//! host grants: the host must refuse it at load, naming the import.

wit_bindgen::generate!({
    path: "../../wit",
    inline: r#"
        package evil:net;

        /// An interface outside the policy contract.
        interface socket {
            /// Opens a connection; a policy must never get this.
            connect: func(host: string, port: u16) -> result<u32, string>;
        }

        world foreign-import {
            include weft:policy/pool-sizing@0.1.0;
            import socket;
        }
    "#,
    world: "evil:net/foreign-import",
    generate_all,
});

/// The foreign-importing policy.
struct Foreign;

impl Guest for Foreign {
    fn configure(_settings: String) -> Result<(), String> {
        // Using the import keeps it in the component (unused imports are
        // dropped when the component is assembled).
        evil::net::socket::connect("203.0.113.1", 443).map(drop)
    }

    fn size_pool(_state: PoolState) -> PoolDecision {
        PoolDecision {
            changes: Vec::new(),
            create: Vec::new(),
            release: Vec::new(),
            reason: "foreign".into(),
        }
    }
}

export!(Foreign);
