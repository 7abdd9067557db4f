//! Kubernetes enrichment (placeholder module root while the parts land).
pub mod index;
