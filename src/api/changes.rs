//! The project's change feed: every entity and relationship change in
//! change-sequence order, as pages or as server-sent events that stay open.

use super::auth::{Authorized, Read};
use super::entities::ProjectPath;
use super::error::{ApiError, ApiResult};
use super::extract::{page_limit, Path, Query};
use super::openapi::{Paged, Pagination};
use super::AppState;
use crate::domain::{Change, Scope};
use crate::lifecycle::Lifecycle;
use crate::store::DynStore;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio_util::task::task_tracker::TaskTrackerToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How often an open event stream looks for new changes when it has none.
/// Polling the feed (not a local signal) also carries other daemons' writes.
const POLL: Duration = Duration::from_millis(250);
/// Changes read per query by an event stream.
const STREAM_BATCH: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(changes))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesParams {
    /// Only changes after this change sequence (exclusive; default 0, the
    /// oldest change retained).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// The `next_cursor` of the previous page (the same as `after`).
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The project's changes in change-sequence order. With `Accept:
/// text/event-stream`, server-sent events (`id:` = seq, one JSON change per
/// event) that stay open and carry new changes as they commit, resumable
/// with `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/changes", tag = "changes",
    params(ProjectPath, ChangesParams,
        ("Last-Event-ID" = Option<String>, Header,
            description = "Resume after this change sequence (event streams send it back on reconnect).")),
    security(("api_key" = ["read"])),
    responses((status = 200, description = "changes after `after`, oldest first",
        content(
            (Paged<Change> = "application/json"),
            (String = "text/event-stream", example = "id: 42\ndata: {\"seq\":42,\"kind\":\"entity\",\"id\":\"a\",\"op\":\"update\",\"version\":3,\"at\":\"2026-12-03T10:00:00.000000Z\"}\n\n"),
        )),
        (status = 410, description = "gone: changes after `after` are no longer retained; start again from 0")))]
async fn changes(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<ProjectPath>,
    Query(q): Query<ChangesParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let scope = p.scope();
    let limit = page_limit(q.limit, 100, 1000)?;
    let after = start(&q, &headers)?;
    // The first page answers for the project (404) before a stream opens.
    let page = s.store.list_changes(&scope, after, limit).await?;
    if wants_events(&headers) {
        let tail = Tail {
            store: s.store.clone(),
            scope,
            after: page.last().map_or(after, |c| c.seq),
            pending: page.into(),
            life: s.lifecycle.clone(),
            _held: s.lifecycle.hold(),
        };
        let events = futures_util::stream::unfold(tail, Tail::next).map(Ok::<_, Infallible>);
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let next_cursor = (page.len() == limit)
        .then(|| page.last().map(|c| c.seq.to_string()))
        .flatten();
    Ok(axum::Json(Paged {
        data: page,
        pagination: Pagination { next_cursor, limit },
    })
    .into_response())
}

/// Where the feed starts: `Last-Event-ID`, else `cursor`, else `after`.
fn start(q: &ChangesParams, headers: &HeaderMap) -> Result<i64, ApiError> {
    let parse = |what: &str, text: &str| {
        text.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::bad_request(format!("{what} must be a change sequence")))
    };
    if let Some(id) = headers.get("last-event-id") {
        let text = id
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID must be a change sequence"))?;
        return parse("Last-Event-ID", text);
    }
    if let Some(cursor) = &q.cursor {
        return parse("cursor", cursor);
    }
    match q.after {
        Some(after) if after < 0 => Err(ApiError::bad_request("after must not be negative")),
        after => Ok(after.unwrap_or(0)),
    }
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// An open event stream: changes read but not sent yet, and where to read
/// on. Counted on the daemon's lifecycle; it ends when shutdown begins, or
/// when the feed can no longer be read (the project was deleted).
struct Tail {
    store: DynStore,
    scope: Scope,
    after: i64,
    pending: VecDeque<Change>,
    life: Lifecycle,
    _held: TaskTrackerToken,
}

impl Tail {
    async fn next(mut self) -> Option<(Event, Tail)> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                let data = serde_json::to_string(&change).expect("changes serialise");
                let event = Event::default().id(change.seq.to_string()).data(data);
                return Some((event, self));
            }
            if self.life.is_cancelled() {
                return None;
            }
            let found = self
                .store
                .list_changes(&self.scope, self.after, STREAM_BATCH)
                .await
                .ok()?;
            match found.last() {
                Some(last) => {
                    self.after = last.seq;
                    self.pending.extend(found);
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = self.life.cancelled() => return None,
                    }
                }
            }
        }
    }
}
