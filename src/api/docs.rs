//! CRDT documents (Yjs): appending updates, loading state, tailing the log,
//! compaction, snapshots, and the y-websocket endpoint.

use super::auth::{Authorized, Read, Write};
use super::error::{ApiError, ApiResult};
use super::extract::{body_error, page_limit, JsonBody, Path, Query};
use super::openapi::{Data, Paged, Pagination};
use super::{data, AppState};
use crate::crdt::commit::Submitted;
use crate::crdt::{self, catch_up, compact, sync};
use crate::domain::*;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(append_updates))
        .routes(routes!(get_doc, put_doc, delete_doc))
        .routes(routes!(list_updates))
        .routes(routes!(compact_doc))
        .routes(routes!(list_snapshots))
        .routes(routes!(websocket))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct DocPath {
    /// Org id.
    org: String,
    /// Project id.
    project: String,
    /// Document id (created on its first update).
    doc: String,
}

impl DocPath {
    fn scope(&self) -> ApiResult<Scope> {
        validate::id("doc", &self.doc)?;
        Ok(Scope::new(&self.org, &self.project))
    }
}

fn base64_any(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .ok()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdatesBody {
    /// Yjs update v1 binaries, base64.
    updates: Vec<String>,
}

/// Where an append landed in the document's log.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Appended {
    pub doc: String,
    pub first_seq: i64,
    pub last_seq: i64,
}

/// The gateway the updates come from (`X-Strata-Origin`), cut to 256
/// characters.
pub(super) fn origin(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-strata-origin")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect())
}

/// One update as `application/octet-stream`, or several as base64 in JSON.
async fn read_updates(req: Request, s: &AppState) -> ApiResult<Vec<Vec<u8>>> {
    let is_json = super::extract::is_json(req.headers());
    if !is_json
        && super::extract::media_type(req.headers()).as_deref() != Some("application/octet-stream")
    {
        return Err(ApiError::UnsupportedMediaType(
            "send one Yjs update as application/octet-stream, or {\"updates\": [base64, ...]} as application/json".into(),
        ));
    }
    let updates = if is_json {
        let JsonBody(body) = JsonBody::<UpdatesBody>::from_request(req, s).await?;
        body.updates
            .iter()
            .enumerate()
            .map(|(i, u)| {
                base64_any(u)
                    .ok_or_else(|| ApiError::bad_request(format!("updates[{i}] is not base64")))
            })
            .collect::<ApiResult<Vec<_>>>()?
    } else {
        vec![Bytes::from_request(req, s)
            .await
            .map_err(body_error)?
            .to_vec()]
    };
    if updates.is_empty() {
        return Err(ApiError::bad_request("no updates given"));
    }
    for (i, u) in updates.iter().enumerate() {
        if u.len() > s.crdt.max_update_bytes {
            return Err(ApiError::PayloadTooLarge(s.crdt.max_update_bytes));
        }
        crdt::validate_update(u).map_err(|e| match updates.len() {
            1 => e,
            _ => DomainError::BadRequest(format!("updates[{i}]: {e}")),
        })?;
    }
    Ok(updates)
}

/// Append Yjs updates to a document's log (created on first update).
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/docs/{doc}/updates", tag = "docs",
    params(DocPath, ("X-Strata-Origin" = Option<String>, Header, description = "the gateway the updates come from")),
    request_body(description = "one Yjs update, or several as base64 in JSON",
        content(("application/octet-stream"), (UpdatesBody = "application/json"))),
    security(("api_key" = ["write"])),
    responses((status = 201, description = "durable", body = Data<Appended>),
        (status = 400, description = "bad_request: not a valid Yjs update; nothing stored")))]
async fn append_updates(
    State(s): State<AppState>,
    _: Authorized<Write>,
    Path(p): Path<DocPath>,
    req: Request,
) -> ApiResult<Response> {
    let scope = p.scope()?;
    let origin = origin(req.headers());
    let updates = read_updates(req, &s).await?;
    let append = DocAppend {
        scope,
        doc: p.doc.clone(),
        updates,
        origin,
    };
    let (first, last) = s.commits.append(vec![append], 0).await?[0];
    Ok(data(
        StatusCode::CREATED,
        Appended {
            doc: p.doc,
            first_seq: first,
            last_seq: last,
        },
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StateParams {
    /// Base64 Yjs state vector: only what it lacks.
    state_vector: Option<String>,
    /// RFC 3339 time: the state as it was then.
    as_of: Option<String>,
}

/// The state as JSON (with `Accept: application/json`).
#[derive(Serialize, utoipa::ToSchema)]
struct DocState {
    doc: String,
    /// The last seq included.
    seq: i64,
    /// One Yjs update v1, base64.
    update: String,
}

/// The whole state as one Yjs update (or what a state vector lacks).
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/docs/{doc}", tag = "docs",
    params(DocPath, StateParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "the state as one Yjs update (JSON with Accept: application/json)",
            content(("application/octet-stream"), (Data<DocState> = "application/json")),
            headers(("X-Strata-Seq" = i64, description = "the last seq included"))),
        (status = 404, description = "not_found: never written"),
        (status = 410, description = "gone: the retained history no longer reaches as_of")))]
async fn get_doc(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<DocPath>,
    Query(q): Query<StateParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let scope = p.scope()?;
    let as_of = q
        .as_of
        .as_deref()
        .map(|t| validate::time("as_of", t))
        .transpose()?;
    // The state vector is checked before anything is loaded.
    let state_vector = match &q.state_vector {
        Some(sv) => {
            let sv = base64_any(sv)
                .ok_or_else(|| ApiError::bad_request("state_vector is not base64"))?;
            crdt::validate_state_vector(&sv)?;
            Some(sv)
        }
        None => None,
    };
    let log = s.store.doc_log(&scope, &p.doc, as_of.as_deref()).await?;
    let mut state = crdt::state(s.store.as_ref(), s.blobs.as_ref(), &scope, &p.doc, &log).await?;
    if let Some(sv) = state_vector {
        state = crdt::diff(state, sv).await?;
    }
    let seq = HeaderValue::from(log.last_seq);
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let mut response = if wants_json {
        data(
            StatusCode::OK,
            DocState {
                doc: p.doc,
                seq: log.last_seq,
                update: STANDARD.encode(&state),
            },
        )
    } else {
        ([(header::CONTENT_TYPE, "application/octet-stream")], state).into_response()
    };
    response.headers_mut().insert("x-strata-seq", seq);
    Ok(response)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PutDocBody {
    entity_id: Option<String>,
}

/// Create a document, or link it to the entity that owns it.
#[utoipa::path(put, path = "/v1/orgs/{org}/projects/{project}/docs/{doc}", tag = "docs",
    params(DocPath), request_body = PutDocBody, security(("api_key" = ["write"])),
    responses((status = 200, description = "the document", body = Data<DocInfo>),
        (status = 422, description = "unprocessable: no such entity")))]
async fn put_doc(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<DocPath>,
    JsonBody(body): JsonBody<PutDocBody>,
) -> ApiResult<Response> {
    let scope = p.scope()?;
    if let Some(e) = &body.entity_id {
        validate::id("entity_id", e)?;
    }
    let doc = s
        .store
        .put_doc(&scope, who.caller(), &p.doc, body.entity_id)
        .await?;
    Ok(data(StatusCode::OK, doc))
}

/// Erase a document, its log and its snapshots.
#[utoipa::path(delete, path = "/v1/orgs/{org}/projects/{project}/docs/{doc}", tag = "docs",
    params(DocPath), security(("api_key" = ["write"])), responses((status = 204, description = "deleted")))]
async fn delete_doc(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<DocPath>,
) -> ApiResult<StatusCode> {
    let scope = p.scope()?;
    let blobs = s.store.delete_doc(&scope, who.caller(), &p.doc).await?;
    s.hub.close(&scope, &p.doc);
    super::delete_blobs(&s, blobs).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TailParams {
    /// Only updates after this seq (exclusive; default 0).
    after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One update of the log.
#[derive(Serialize, utoipa::ToSchema)]
struct LoggedUpdate {
    seq: i64,
    /// Yjs update v1, base64.
    update: String,
    origin: Option<String>,
    at: String,
}

/// One snapshot of a document.
#[derive(Serialize, utoipa::ToSchema)]
struct SnapshotInfo {
    covers_seq: i64,
    covers_at: String,
    created_at: String,
    bytes: i64,
    sha256: String,
    /// `inline` or `blob:<key>`.
    location: String,
}

/// The log after a sequence number, for gateways to tail.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/docs/{doc}/updates", tag = "docs",
    params(DocPath, TailParams), security(("api_key" = ["read"])),
    responses((status = 200, description = "the log after `after`", body = Paged<LoggedUpdate>)))]
async fn list_updates(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<DocPath>,
    Query(q): Query<TailParams>,
) -> ApiResult<Response> {
    let scope = p.scope()?;
    let limit = page_limit(q.limit, 100, 1000)?;
    let after = q.after.unwrap_or(0);
    let updates = s
        .store
        .list_doc_updates(&scope, &p.doc, after, limit)
        .await?;
    let next = (updates.len() == limit)
        .then(|| updates.last().map(|u| u.seq.to_string()))
        .flatten();
    let data = updates
        .into_iter()
        .map(|u| LoggedUpdate {
            seq: u.seq,
            update: STANDARD.encode(&u.bytes),
            origin: u.origin,
            at: u.at,
        })
        .collect();
    Ok(axum::Json(Paged {
        data,
        pagination: Pagination {
            next_cursor: next,
            limit,
        },
    })
    .into_response())
}

/// Compact now: fold the log into a snapshot.
#[utoipa::path(post, path = "/v1/orgs/{org}/projects/{project}/docs/{doc}/compact", tag = "docs",
    params(DocPath), security(("api_key" = ["write"])),
    responses((status = 200, description = "the snapshot made", body = Data<compact::Compacted>),
        (status = 409, description = "conflict: the document is being compacted; retry")))]
async fn compact_doc(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<DocPath>,
) -> ApiResult<Response> {
    let scope = p.scope()?;
    s.store.get_doc(&scope, &p.doc).await?;
    let _lease = s.store.lease_doc(&scope, &p.doc).await?.ok_or_else(|| {
        DomainError::Conflict(format!("document {} is being compacted; retry", p.doc))
    })?;
    let done = compact::compact(
        s.store.as_ref(),
        s.blobs.as_ref(),
        &s.crdt,
        who.caller(),
        &scope,
        &p.doc,
        &|_| Ok(()),
    )
    .await?;
    Ok(data(StatusCode::OK, done))
}

/// The document's snapshots, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/docs/{doc}/snapshots", tag = "docs",
    params(DocPath), security(("api_key" = ["read"])),
    responses((status = 200, description = "every snapshot, newest first (one page)", body = Paged<SnapshotInfo>)))]
async fn list_snapshots(
    State(s): State<AppState>,
    _: Authorized<Read>,
    Path(p): Path<DocPath>,
) -> ApiResult<Response> {
    let scope = p.scope()?;
    let snapshots = s.store.list_snapshots(&scope, &p.doc).await?;
    let data: Vec<_> = snapshots
        .into_iter()
        .map(|sn| SnapshotInfo {
            location: match &sn.data {
                SnapshotData::Inline(_) => "inline".to_string(),
                SnapshotData::Blob(key) => format!("blob:{key}"),
            },
            covers_seq: sn.covers_seq,
            covers_at: sn.covers_at,
            created_at: sn.created_at,
            bytes: sn.size,
            sha256: sn.sha256,
        })
        .collect();
    let limit = data.len().max(1);
    Ok(axum::Json(Paged {
        data,
        pagination: Pagination {
            next_cursor: None,
            limit,
        },
    })
    .into_response())
}

/// y-websocket sync (step 1, step 2, update) and awareness relay. The key may
/// come as `?token=` here, since browsers cannot set headers.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/docs/{doc}/ws", tag = "docs",
    params(DocPath, ("token" = Option<String>, Query, description = "the API key, for browsers (with the upgrade only)")),
    security(("api_key" = ["write"])),
    responses((status = 101, description = "WebSocket speaking the y-websocket protocol"),
        (status = 400, description = "bad_request: not a WebSocket upgrade (or a bad path)")))]
async fn websocket(
    State(s): State<AppState>,
    who: Authorized<Write>,
    Path(p): Path<DocPath>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!(
            "this route takes a WebSocket upgrade: {}",
            e.body_text()
        ))
    })?;
    let scope = p.scope()?;
    s.store.get_project(&scope.org, &scope.project).await?;
    let caller = who.caller().clone();
    let limit = s.crdt.max_update_bytes + 64;
    // axum spawns the session after the upgrade, once this request has
    // ended; counting it from here on means a shutdown that drained this
    // request also waits for the session.
    let held = s.lifecycle.hold();
    Ok(upgrade
        .max_message_size(limit)
        .read_buffer_size(SOCKET_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            serve_socket(s, scope, p.doc, caller, socket).await;
            drop(held);
        }))
}

/// A socket's read buffer: small, since most sockets idle and messages are
/// small (a larger one grows its own buffer). tungstenite's default of
/// 128 KiB made two thirds of an idle document's memory.
pub(super) const SOCKET_READ_BUFFER: usize = 4096;

pub(super) async fn current_state(s: &AppState, scope: &Scope, doc: &str) -> DomainResult<Vec<u8>> {
    Ok(
        catch_up::whole(s.store.as_ref(), s.blobs.as_ref(), scope, doc)
            .await?
            .0,
    )
}

/// Updates a socket (y-websocket or Hocuspocus) may have in flight,
/// handed to the group commit but not yet acknowledged, before it stops
/// reading its client: enough for groups of many updates per commit, few
/// enough to bound its memory.
pub(super) const IN_FLIGHT: usize = 64;

async fn serve_socket(
    s: AppState,
    scope: Scope,
    doc: String,
    _caller: Caller,
    mut socket: WebSocket,
) {
    let me = s.hub.connection_id();
    let mut relays = s.hub.subscribe(&scope, &doc);
    let lifecycle = s.lifecycle.clone();
    let stalled = s.crdt.stalled_reader;
    // Durable acknowledgements, once the client asks for them.
    let mut acks = false;
    // Its updates being stored, answered in the order sent.
    let mut in_flight = FuturesOrdered::new();
    // Every update through this seq has been relayed to the client or is in
    // the state it syncs from (relays began before that state was read).
    let mut position = match catch_up::whole(s.store.as_ref(), s.blobs.as_ref(), &scope, &doc).await
    {
        Ok((state, seq)) => {
            let hello = sync::step1(&sync::state_vector_of(&state));
            if !deliver(&mut socket, hello, stalled).await {
                return;
            }
            seq
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot load a document for a WebSocket");
            return;
        }
    };
    loop {
        let reply = tokio::select! {
            biased;
            _ = lifecycle.cancelled() => {
                // Updates handed over are stored anyway: acknowledge them.
                while let Some(stored) = in_flight.next().await {
                    let (Ok(seq), true) = stored else { continue };
                    if !deliver(&mut socket, sync::durable_ack(seq), CLOSE_WAIT).await {
                        return;
                    }
                }
                close_going_away(socket).await;
                return;
            }
            Some(stored) = in_flight.next(), if !in_flight.is_empty() => match stored {
                (Ok(seq), acked) => acked.then(|| sync::durable_ack(seq)),
                (Err(e), _) => {
                    refuse(socket, e).await;
                    return;
                }
            },
            incoming = socket.recv(), if in_flight.len() < IN_FLIGHT => {
                let bytes = match incoming {
                    Some(Ok(WsMessage::Binary(b))) => b,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                match handle(&s, &scope, &doc, me, &bytes).await {
                    Ok(Handled::Reply(reply)) => Some(reply),
                    Ok(Handled::Storing(outcome)) => {
                        // Acknowledged if asked for when it was sent.
                        let acked = acks;
                        in_flight.push_back(async move {
                            (outcome.await.map(|seqs| seqs[0].1), acked)
                        });
                        None
                    }
                    Ok(Handled::DurableAcks(on)) => {
                        acks = on;
                        None
                    }
                    Ok(Handled::Nothing) => None,
                    Err(e) => {
                        refuse(socket, e).await;
                        return;
                    }
                }
            }
            relay = relays.recv() => match relay {
                Ok(r) => match r.seq {
                    // Sent already, in a catch-up.
                    Some(seq) if seq <= position => None,
                    seq => {
                        position = seq.unwrap_or(position);
                        (r.from != me).then(|| r.message.to_vec())
                    }
                },
                Err(RecvError::Lagged(missed)) => {
                    // Its queue overflowed while it was busy: what it missed
                    // from the log instead (or the whole state, if far behind).
                    // The client stays connected.
                    tracing::debug!(missed, "catching a lagging WebSocket up from the store");
                    let (store, blobs) = (s.store.as_ref(), s.blobs.as_ref());
                    match catch_up::catch_up(store, blobs, &scope, &doc, Some(position)).await {
                        Ok(c) => {
                            position = c.through;
                            c.update.map(sync::step2)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot catch a lagging WebSocket up");
                            refuse(socket, e).await;
                            return;
                        }
                    }
                }
                // The document was deleted: its sequence numbers start over.
                Err(RecvError::Closed) => {
                    let frame = axum::extract::ws::CloseFrame {
                        code: 1000,
                        reason: "the document was deleted".into(),
                    };
                    let close = socket.send(WsMessage::Close(Some(frame)));
                    let _ = tokio::time::timeout(CLOSE_WAIT, close).await;
                    return;
                }
            }
        };
        if let Some(reply) = reply {
            if !deliver(&mut socket, reply, stalled).await {
                return;
            }
        }
    }
}

/// The origin a socket's updates are stored with.
fn origin_of(connection: u64) -> String {
    format!("ws:{connection}")
}

/// Closes a connection after a refused message (or a failed store), saying
/// why: it alone is closed.
async fn refuse(mut socket: WebSocket, e: DomainError) {
    tracing::debug!(error = %e, "closing a WebSocket after a refused message");
    let close = WsMessage::Close(Some(close_frame(&e)));
    let _ = tokio::time::timeout(CLOSE_WAIT, socket.send(close)).await;
}

/// How long a close frame may wait for a client that does not read.
pub(super) const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends a message, unless the client has stopped reading: a send that
/// cannot finish within `stalled` is given up, and the connection with it.
/// False when the connection is over.
pub(super) async fn deliver(
    socket: &mut WebSocket,
    message: Vec<u8>,
    stalled: std::time::Duration,
) -> bool {
    let send = socket.send(WsMessage::Binary(message.into()));
    match tokio::time::timeout(stalled, send).await {
        Ok(sent) => sent.is_ok(),
        Err(_) => {
            tracing::info!(?stalled, "closing a WebSocket whose client stopped reading");
            false
        }
    }
}

/// Closes for a daemon shutting down: 1001 (going away), then waits a
/// moment for the client's close to end the handshake cleanly. Messages
/// arriving meanwhile are not handled.
pub(super) async fn close_going_away(mut socket: WebSocket) {
    let frame = axum::extract::ws::CloseFrame {
        code: 1001,
        reason: "the server is shutting down".into(),
    };
    let close = tokio::time::timeout(CLOSE_WAIT, socket.send(WsMessage::Close(Some(frame))));
    if !matches!(close.await, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A close frame for a refused message: 1007 (invalid payload) for bad
/// input, 1011 otherwise; the reason is cut to the 123 bytes a frame allows.
pub(super) fn close_frame(e: &DomainError) -> axum::extract::ws::CloseFrame {
    let (code, mut reason) = match e {
        DomainError::BadRequest(m) => (1007, m.clone()),
        // Storage faults are logged, never sent.
        _ => (1011, "internal error".to_string()),
    };
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    reason.truncate(cut);
    axum::extract::ws::CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// What one client message led to.
enum Handled {
    Nothing,
    /// An answer for the client.
    Reply(Vec<u8>),
    /// Its update is being stored: durable with the seq answered.
    Storing(Submitted),
    /// Durable acknowledgements asked for or stopped.
    DurableAcks(bool),
}

/// One client message.
async fn handle(
    s: &AppState,
    scope: &Scope,
    doc: &str,
    me: u64,
    bytes: &[u8],
) -> DomainResult<Handled> {
    let incoming = sync::decode(bytes)
        .map_err(|e| DomainError::BadRequest(format!("not a valid y-websocket message: {e}")))?;
    match incoming {
        sync::Incoming::StateVector(sv) => {
            crdt::validate_state_vector(&sv)?;
            let state = current_state(s, scope, doc).await?;
            Ok(Handled::Reply(sync::step2(crdt::diff(state, sv).await?)))
        }
        sync::Incoming::Update(update) => {
            if sync::is_empty_update(&update) {
                return Ok(Handled::Nothing);
            }
            crdt::validate_update(&update)?;
            // Relayed once durable, by the committer.
            let append = DocAppend {
                scope: scope.clone(),
                doc: doc.to_owned(),
                updates: vec![update],
                origin: Some(origin_of(me)),
            };
            Ok(Handled::Storing(s.commits.submit(vec![append], me).await?))
        }
        sync::Incoming::Relay => {
            let relay = sync::Relay {
                from: me,
                seq: None,
                message: Arc::new(bytes.to_vec()),
            };
            s.hub.publish(scope, doc, relay);
            Ok(Handled::Nothing)
        }
        sync::Incoming::Ignore => Ok(Handled::Nothing),
        sync::Incoming::DurableAcks(on) => Ok(Handled::DurableAcks(on)),
    }
}
