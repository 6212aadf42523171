//! The pool datastore. Placeholder: filled by the IPAM work.
