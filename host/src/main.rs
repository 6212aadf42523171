//! `weftd`, the Weft node agent.

fn main() {
    eprintln!("weftd: not yet implemented");
    std::process::exit(1);
}
