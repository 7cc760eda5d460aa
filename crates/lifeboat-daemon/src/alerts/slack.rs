//! Slack incoming webhooks: the same facts, as a readable message.

use super::Event;

pub fn body(e: &Event) -> Vec<u8> {
    let text = format!(
        "*lifeboat: {}* ({})\n{}\n{}",
        e.kind.name(),
        e.source,
        e.message,
        e.at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    serde_json::to_vec(&serde_json::json!({ "text": text })).expect("json")
}
