//! lifeboat-daemon: running lifeboat unattended. Today: alerts (`alerts`), which one-shot
//! commands send too. The scheduler, leases and metrics of issue 12 come here next.

pub mod alerts;
