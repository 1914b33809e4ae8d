//! RFC 3339 timestamps for error messages, from `humantime`, guarded for the instants it cannot write.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 10000-01-01T00:00:00Z: `humantime` writes four-digit years only.
const YEAR_10000: Duration = Duration::from_secs(253_402_300_800);

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC, whole seconds. An instant outside years 1970–9999 (a token's `exp` can
/// be anything) is described instead of written, never a panic.
pub(crate) fn format_utc(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Err(_) => "before 1970-01-01T00:00:00Z".to_owned(),
        Ok(since) if since >= YEAR_10000 => "after 9999-12-31T23:59:59Z".to_owned(),
        Ok(_) => humantime::format_rfc3339_seconds(t).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (59, "1970-01-01T00:00:59Z"),
            (86_399, "1970-01-01T23:59:59Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (253_402_300_800, "after 9999-12-31T23:59:59Z"),
            (u64::MAX / 2, "after 9999-12-31T23:59:59Z"),
        ];
        for (secs, want) in cases {
            let Some(t) = UNIX_EPOCH.checked_add(Duration::from_secs(secs)) else {
                continue;
            };
            assert_eq!(format_utc(t), want, "{secs}");
        }
        assert_eq!(
            format_utc(UNIX_EPOCH - Duration::from_secs(1)),
            "before 1970-01-01T00:00:00Z"
        );
    }
}
