//! Errors of the policy runtime and the failure kinds they are counted by.

use std::fmt;

/// The three decisions a policy can make; each is one WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decision {
    /// World `pool-sizing`.
    PoolSizing,
    /// World `subnet-selection`.
    SubnetSelection,
    /// World `security-groups`.
    SecurityGroups,
}

impl Decision {
    /// Every decision, in a fixed order.
    pub(crate) const ALL: [Decision; 3] = [
        Decision::PoolSizing,
        Decision::SubnetSelection,
        Decision::SecurityGroups,
    ];

    /// The WIT world name, also the `decision` metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::PoolSizing => "pool-sizing",
            Decision::SubnetSelection => "subnet-selection",
            Decision::SecurityGroups => "security-groups",
        }
    }

    /// The name of the world's decision function export.
    pub(crate) fn export_name(self) -> &'static str {
        match self {
            Decision::PoolSizing => "size-pool",
            Decision::SubnetSelection => "select-subnet",
            Decision::SecurityGroups => "select-security-groups",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a policy failed; each kind is an `outcome` label of the
/// `weft_policy_decisions` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The module could not be read, compiled, linked or configured.
    Load,
    /// The policy trapped (a panic, `unreachable`, an out-of-bounds access).
    Trap,
    /// The policy ran past its deadline and was interrupted.
    Deadline,
    /// The policy tried to grow its memory past its cap.
    Memory,
    /// The policy answered something the host cannot act on.
    InvalidOutput,
    /// A security-groups policy refused the pod with its own message.
    Refused,
}

impl FailureKind {
    /// The metrics `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Load => "load",
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::InvalidOutput => "invalid-output",
            FailureKind::Refused => "refused",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FailureKind::Load => "failed to load",
            FailureKind::Trap => "trapped",
            FailureKind::Deadline => "exceeded its deadline",
            FailureKind::Memory => "exceeded its memory limit",
            FailureKind::InvalidOutput => "returned an invalid decision",
            FailureKind::Refused => "refused the request",
        };
        f.write_str(text)
    }
}

/// A policy failed. The message names the policy and says what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The policy's configured name.
    pub policy: String,
    /// The decision (world), when known: a module that failed to load may
    /// not have revealed it.
    pub decision: Option<Decision>,
    /// What went wrong.
    pub kind: FailureKind,
    /// Details, e.g. the trap message or the rejected output.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decision {
            Some(decision) => write!(f, "{decision} policy `{}`", self.policy)?,
            None => write!(f, "policy `{}`", self.policy)?,
        }
        write!(f, " {}: {}", self.kind, self.message)
    }
}

impl PolicyError {
    /// Builds an error.
    pub(crate) fn new(
        policy: &str,
        decision: Option<Decision>,
        kind: FailureKind,
        message: impl Into<String>,
    ) -> Self {
        PolicyError {
            policy: policy.to_owned(),
            decision,
            kind,
            message: message.into(),
        }
    }
}

/// Why the policies could not be set up or reloaded. Either way the
/// policies in force (if any) are unchanged.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The `[policies]` configuration is invalid; says which field.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The new module failed to load or configure.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}
