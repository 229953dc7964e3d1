//! The local end-to-end suite of stockpulse (`e2e/local.sh`): the whole system on one
//! machine without Docker. The suite itself is the `stockpulse-e2e-local` binary
//! (`src/main.rs`); [`kubelet`] is the process kubelet that runs the operator's Deployments
//! as local processes (`stockpulse-process-kubelet`); [`rbac`] compares the RBAC the
//! operator's requests needed with what its install manifest grants.

pub mod kubelet;
pub mod rbac;
