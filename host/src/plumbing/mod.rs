//! Pod and ENI networking. Placeholder: filled by the plumbing work.
