//! Slack incoming webhooks: the facts email gives, as one readable message (mrkdwn).

use super::{facts, Event};

pub fn body(e: &Event) -> Vec<u8> {
    let mut text = format!("*{}*", escape(&facts::subject(e)));
    for (label, value) in facts::facts(e) {
        text.push_str(&format!("\n*{}:* {}", escape(&label), escape(&value)));
    }
    let commands = facts::commands(e);
    if !commands.is_empty() {
        let shown: Vec<String> = commands
            .iter()
            .map(|c| format!("`{}`", escape(c)))
            .collect();
        text.push_str(&format!("\n*Investigate:* {}", shown.join("  ")));
    }
    serde_json::to_vec(&serde_json::json!({ "text": text })).expect("json")
}

/// Slack's three control characters, escaped as its docs ask.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
