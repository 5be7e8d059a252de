//! The process's log: `tracing` events on standard error, as text (the
//! default) or one JSON object per line (`STRATA_LOG_FORMAT=json`), filtered
//! by `STRATA_LOG`. Both are read here, before the configuration, so that
//! its own errors can be logged; an unknown format stops the start.

use anyhow::bail;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one line per event, fields as `key=value`.
    Text,
    /// For log collectors: one JSON object per line, the event's fields at
    /// the top (`message`, ...) beside `timestamp`, `level` and `target`,
    /// and the spans it happened in (`span`: the innermost; `spans`: all),
    /// each with its fields (a request's `request_id`, `route`, `status`...).
    Json,
}

impl LogFormat {
    /// `STRATA_LOG_FORMAT`: `text` or `json`, in any case; unset or empty is text.
    pub fn parse(value: Option<&str>) -> anyhow::Result<Self> {
        let value = value.map(str::trim).unwrap_or_default();
        if value.is_empty() || value.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else if value.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else {
            bail!("STRATA_LOG_FORMAT must be json or text, got {value:?}")
        }
    }
}

/// Installs the process's subscriber as `STRATA_LOG` and
/// `STRATA_LOG_FORMAT` say (the binary calls it once, first).
pub fn init() -> anyhow::Result<()> {
    let format = LogFormat::parse(std::env::var("STRATA_LOG_FORMAT").ok().as_deref())?;
    let filter = EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => log.init(),
        LogFormat::Json => log
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::LogFormat;

    #[test]
    fn the_log_format_is_text_unless_json_is_asked_for() {
        assert_eq!(LogFormat::parse(None).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("")).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("Text")).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("JSON")).unwrap(), LogFormat::Json);
        let err = LogFormat::parse(Some("xml")).unwrap_err();
        assert!(err.to_string().contains("STRATA_LOG_FORMAT"), "{err}");
    }
}
