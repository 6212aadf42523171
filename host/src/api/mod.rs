//! The agent API. Placeholder: filled by the API work.
