//! The generic webhook: exactly the runbook's fields at the top level, anything more under
//! `details`.

use super::Event;

pub fn body(e: &Event) -> Vec<u8> {
    let mut doc = serde_json::json!({
        "event": e.kind.name(),
        "message": e.message,
        "timestamp": e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "source": e.source,
    });
    if !e.details.is_null() {
        doc["details"] = e.details.clone();
    }
    serde_json::to_vec(&doc).expect("json")
}
