//! Running `nft -j` inside the node's network namespace.
//!
//! The `nft` process is started from a thread that has entered the node
//! namespace (a child inherits its parent thread's namespaces), so its
//! netlink socket talks to the node's nftables, wherever the agent runs.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use nftables::schema::Nftables;

use super::super::error::PlumbingError;
use super::super::netns::{self, Netns};

/// Applies `doc` as one transaction (`nft -j -f -`): all of it or nothing.
pub(crate) async fn apply(ns: &Arc<Netns>, doc: &Nftables<'_>) -> Result<(), PlumbingError> {
    let input = serde_json::to_vec(doc)
        .map_err(|e| PlumbingError::io("encode the nftables rules", e.into()))?;
    netns::run_in(ns, move || run(&["-j", "-f", "-"], Some(&input)).map(drop)).await
}

/// Runs `nft <args>` with `stdin`; its standard output, or an error that
/// carries what `nft` said.
fn run(args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, PlumbingError> {
    let what = format!("nft {}", args.join(" "));
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            PlumbingError::io(
                format!("run {what} (is the nftables package installed?)"),
                e,
            )
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .map_err(|e| PlumbingError::io(format!("write the rules to {what}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| PlumbingError::io(format!("wait for {what}"), e))?;
    if !out.status.success() {
        return Err(PlumbingError::Nft {
            command: what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}
