//! Durations as people write them in lifeboat.toml (`"30s"`, `"90d"`), read with humantime.

use serde::{Deserialize, Deserializer};

/// `#[serde(default, with = "crate::duration::optional")]` on an `Option<Duration>` field.
pub mod optional {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration (say \"30s\", \"90d\"): {e}"
            ))
        })
    }
}
