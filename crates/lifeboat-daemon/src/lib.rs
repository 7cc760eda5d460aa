//! lifeboat-daemon: running lifeboat unattended. Today: alerts (`alerts`), which one-shot
//! commands send too, and the daemon's `/metrics` and `/healthz` (`metrics`). The scheduler and
//! leases of issue 12 come here next.

pub mod alerts;
pub mod metrics;
