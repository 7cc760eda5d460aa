//! lifeboat-daemon: lifeboat unattended. The scheduler ([`daemon`], deciding with [`plan`]) runs
//! each database's [`job`] on its schedule, under a lease in the repository; [`alerts`] tells
//! the channels what failed, shrank, went stale or recovered, remembering what it told
//! ([`alert_memory`]); [`metrics`] serves `/metrics` and `/healthz`; the [`verifier`] proves
//! the backups restore, rung by rung, on its own schedules; [`replication`] keeps the replicated
//! databases' changes flowing to the repository.

pub mod alert_memory;
pub mod alerts;
pub mod daemon;
pub mod drills;
pub mod job;
pub mod metrics;
pub mod plan;
pub mod replication;
pub mod verifier;
