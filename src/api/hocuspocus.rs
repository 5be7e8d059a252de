//! `GET P/hocuspocus`: the Hocuspocus protocol (`@hocuspocus/provider`),
//! several documents on one WebSocket (codec: `crdt::hocuspocus`).
//!
//! Browsers cannot set headers, so each document is opened by its own
//! authentication message carrying a key, checked exactly as that key in an
//! `Authorization` header on this path would be (another org's key, or a
//! project the key does not reach: `not_found`, as a 404). Until then the
//! document's other messages are dropped unread. A write key opens it
//! `read-write`, a read key `readonly`.
//!
//! Per document, as the Hocuspocus server does: sync step 1 is answered
//! with step 2 from the store and the server's own step 1; a step 2 or an
//! update is checked, stored durably (`crdt::commit`), relayed, and only
//! then acknowledged with sync status `true`. A read-only document's
//! update gets `false`; its step 2 gets `true` only when it adds nothing.
//! Awareness goes to the document's other connections (y-websocket ones
//! too, through the `DocHub`) and back to the sender, which takes a socket
//! that stays silent for 30 s for a dead one. Stateless messages are
//! accepted and ignored (Strata has no server hooks); CLOSE ends that
//! document's session. A frame that is not a valid Hocuspocus message
//! closes the socket (1007), as on the y-websocket route.

use super::auth::{Authorized, Read, Write};
use super::docs::{close_frame, close_going_away, current_state, deliver, CLOSE_WAIT, IN_FLIGHT};
use super::error::{ApiError, ApiResult};
use super::extract::Path;
use super::AppState;
use crate::crdt::check::SyncMessage;
use crate::crdt::commit::Submitted;
use crate::crdt::{self, catch_up, hocuspocus as hp, sync};
use crate::domain::*;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, Extensions, HeaderValue, Uri};
use axum::response::Response;
use futures_util::stream::{FuturesOrdered, StreamExt};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Documents one socket may have open at once; past it, an authentication
/// is refused with `too_many_documents`.
pub const MAX_DOCUMENTS: usize = 256;
/// Relays waiting for the socket, all its documents together. When it is
/// full a document's relays lag behind, and the document is caught up from
/// the store instead (what it missed from the log, as one update).
const RELAY_QUEUE: usize = 256;
/// A socket that has authenticated no document by then is closed.
const AUTH_DEADLINE: Duration = Duration::from_secs(30);
/// Longer tokens are refused unread (keys are ~60 bytes, JWTs a few KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(hocuspocus))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct ProjectPath {
    /// Org id.
    org: String,
    /// Project id.
    project: String,
}

/// The Hocuspocus protocol: documents are named inside it and each is
/// opened by its authentication message, which carries the key. A key in
/// the `Authorization` header is optional and checked as on every route.
#[utoipa::path(get, path = "/v1/orgs/{org}/projects/{project}/hocuspocus", tag = "docs",
    params(ProjectPath),
    security((), ("api_key" = ["read"])),
    responses((status = 101, description = "WebSocket speaking the Hocuspocus protocol (`@hocuspocus/provider`); its sync status acknowledges an update once it is durable"),
        (status = 400, description = "bad_request: not a WebSocket upgrade")))]
async fn hocuspocus(
    State(s): State<AppState>,
    Path(p): Path<ProjectPath>,
    request: Request,
) -> ApiResult<Response> {
    let (mut parts, _) = request.into_parts();
    if parts.headers.contains_key(header::AUTHORIZATION) {
        Authorized::<Read>::from_request_parts(&mut parts, &s).await?;
    }
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &s)
        .await
        .map_err(|e| {
            ApiError::bad_request(format!(
                "this route takes a WebSocket upgrade: {}",
                e.body_text()
            ))
        })?;
    let mut extensions = parts.extensions.clone();
    // Each document's key is checked afresh: not the header's principal.
    extensions.remove::<super::auth::Principal>();
    let checks = Checks {
        uri: parts.uri.clone(),
        extensions,
        user_agent: parts.headers.get(header::USER_AGENT).cloned(),
    };
    let scope = Scope::new(p.org, p.project);
    let limit = s.crdt.max_update_bytes + hp::MAX_NAME_BYTES + 64;
    // As on the y-websocket route: a shutdown that drained this request
    // also waits for the session axum spawns after it.
    let held = s.lifecycle.hold();
    Ok(upgrade
        .max_message_size(limit)
        .read_buffer_size(super::docs::SOCKET_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let (relays, relayed) = mpsc::channel(RELAY_QUEUE);
            let session = Session {
                s,
                scope,
                checks,
                open: HashMap::new(),
                relays,
                authenticated: false,
                storing: Vec::new(),
            };
            session.run(socket, relayed).await;
            drop(held);
        }))
}

/// The upgrade request, for checking keys that come later in messages as
/// if each had come in its `Authorization` header (same path parameters,
/// client address and user agent; the same extractor decides).
struct Checks {
    uri: Uri,
    extensions: Extensions,
    user_agent: Option<HeaderValue>,
}

impl Checks {
    /// Whether `token` may read this project, and write to it.
    async fn authorize(&self, s: &AppState, token: &str) -> ApiResult<bool> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::Unauthorized);
        }
        let bearer =
            HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| ApiError::Unauthorized)?;
        let mut request = Request::new(());
        *request.uri_mut() = self.uri.clone();
        *request.extensions_mut() = self.extensions.clone();
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
        if let Some(agent) = &self.user_agent {
            request
                .headers_mut()
                .insert(header::USER_AGENT, agent.clone());
        }
        let (mut parts, ()) = request.into_parts();
        match Authorized::<Write>::from_request_parts(&mut parts, s).await {
            Ok(_) => Ok(true),
            // The principal is kept in `parts`: not authenticated twice.
            Err(ApiError::Forbidden(_)) => Authorized::<Read>::from_request_parts(&mut parts, s)
                .await
                .map(|_| false),
            Err(e) => Err(e),
        }
    }
}

/// The stable code of a refusal, sent as the permission-denied reason.
fn refusal(e: &ApiError) -> &'static str {
    match e {
        ApiError::Unauthorized | ApiError::BadToken(_) => "unauthorized",
        ApiError::Forbidden(_) => "forbidden",
        ApiError::RateLimited(_) => "rate_limited",
        ApiError::Domain(e) => {
            let (status, code) = e.status_and_code();
            if status >= 500 {
                tracing::warn!(error = %e, "a Hocuspocus authentication failed");
            }
            code
        }
        _ => "bad_request",
    }
}

/// One socket: its open documents and the relays waiting for it.
struct Session {
    s: AppState,
    scope: Scope,
    checks: Checks,
    /// By name as the client sends it (a session suffix included).
    open: HashMap<String, Open>,
    relays: mpsc::Sender<Relayed>,
    /// Some document was authenticated (the deadline no longer applies).
    authenticated: bool,
    /// Updates the frame being handled handed to the group commit, each
    /// with the sync status to send once it is durable; `run` moves them
    /// to its queue of writes in flight.
    storing: Vec<(Submitted, Vec<u8>)>,
}

/// An authenticated document of a socket.
struct Open {
    doc: String,
    writer: bool,
    /// Its connection in the hub: relays from it are not sent back to it.
    id: u64,
    forwarder: AbortHandle,
    /// Once it synced: every update through this seq is in the state it was
    /// sent or has been relayed to it.
    position: Option<i64>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

/// What a document's forwarder passes to its socket.
enum Relayed {
    /// A y-websocket message from another connection of the document.
    Message {
        name: Arc<str>,
        id: u64,
        seq: Option<i64>,
        message: Arc<Vec<u8>>,
    },
    /// Relays were lost while the queue was full.
    Lagged { name: Arc<str>, id: u64 },
    /// The document was deleted: its sequence numbers start over.
    Deleted { name: Arc<str>, id: u64 },
}

/// Passes a document's relays from the hub to its socket's queue; ends
/// when aborted (the document closed) or when the socket is gone.
fn forward(
    mut hub: broadcast::Receiver<sync::Relay>,
    name: Arc<str>,
    id: u64,
    queue: mpsc::Sender<Relayed>,
) -> AbortHandle {
    tokio::spawn(async move {
        loop {
            let relayed = match hub.recv().await {
                Ok(r) if r.from == id => continue,
                Ok(r) => Relayed::Message {
                    name: name.clone(),
                    id,
                    seq: r.seq,
                    message: r.message,
                },
                Err(RecvError::Lagged(_)) => Relayed::Lagged {
                    name: name.clone(),
                    id,
                },
                Err(RecvError::Closed) => {
                    let _ = queue.send(Relayed::Deleted { name, id }).await;
                    return;
                }
            };
            if queue.send(relayed).await.is_err() {
                return;
            }
        }
    })
    .abort_handle()
}

impl Session {
    async fn run(mut self, mut socket: WebSocket, mut relayed: mpsc::Receiver<Relayed>) {
        let lifecycle = self.s.lifecycle.clone();
        let stalled = self.s.crdt.stalled_reader;
        // Sync statuses waiting for their updates to be durable, in order.
        let mut in_flight = FuturesOrdered::new();
        let deadline = tokio::time::sleep(AUTH_DEADLINE);
        tokio::pin!(deadline);
        loop {
            // As on the y-websocket route, a message being handled (an
            // update being stored) finishes before a shutdown is noticed.
            let outcome = tokio::select! {
                biased;
                _ = lifecycle.cancelled() => {
                    // Updates handed over are stored anyway: say so.
                    while let Some(Ok(status)) = in_flight.next().await {
                        if !deliver(&mut socket, status, CLOSE_WAIT).await {
                            return;
                        }
                    }
                    close_going_away(socket).await;
                    return;
                }
                Some(stored) = in_flight.next(), if !in_flight.is_empty() => stored.map(|status| vec![status]),
                _ = &mut deadline, if !self.authenticated => {
                    let frame = CloseFrame {
                        code: 1008,
                        reason: "no document was authenticated in time".into(),
                    };
                    let _ = tokio::time::timeout(CLOSE_WAIT, socket.send(WsMessage::Close(Some(frame)))).await;
                    return;
                }
                incoming = socket.recv(), if in_flight.len() < IN_FLIGHT => match incoming {
                    Some(Ok(WsMessage::Binary(bytes))) => self.handle(&bytes).await,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                },
                // Never None: the session holds a sender.
                Some(r) = relayed.recv() => self.relayed(r).await,
            };
            for (stored, status) in self.storing.drain(..) {
                in_flight.push_back(async move { stored.await.map(|_| status) });
            }
            match outcome {
                Ok(replies) => {
                    for reply in replies {
                        if !deliver(&mut socket, reply, stalled).await {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "closing a Hocuspocus socket after a bad message");
                    let close = WsMessage::Close(Some(close_frame(&e)));
                    let _ = tokio::time::timeout(CLOSE_WAIT, socket.send(close)).await;
                    return;
                }
            }
        }
    }

    /// One client frame: the answers to send, in order.
    async fn handle(&mut self, bytes: &[u8]) -> DomainResult<Vec<Vec<u8>>> {
        let frame = hp::decode(bytes)
            .map_err(|e| DomainError::BadRequest(format!("not a valid Hocuspocus message: {e}")))?;
        let (name, body) = match frame {
            hp::Frame::Pong => return Ok(Vec::new()),
            hp::Frame::Doc { name, body } => (name, body),
        };
        if let hp::Body::Auth { token } = body {
            return Ok(vec![self.authenticate(name, token).await]);
        }
        if !self.open.contains_key(name) {
            // Not authenticated (or refused): dropped unread.
            return Ok(Vec::new());
        }
        match body {
            hp::Body::Yjs { yjs, message } => self.yjs(name, yjs, message).await,
            hp::Body::Close => {
                self.open.remove(name);
                Ok(vec![hp::close(name, "provider_initiated")])
            }
            hp::Body::Stateless { .. } | hp::Body::Auth { .. } => Ok(Vec::new()),
        }
    }

    /// An authentication message: the document opens, or stays closed with
    /// the refusal's code. A second one for an open document starts it over.
    async fn authenticate(&mut self, name: &str, token: &str) -> Vec<u8> {
        self.open.remove(name);
        let doc = hp::document_id(name);
        let writer = match self.admit(doc, token).await {
            Ok(writer) => writer,
            Err(code) => return hp::permission_denied(name, code),
        };
        let id = self.s.hub.connection_id();
        let hub = self.s.hub.subscribe(&self.scope, doc);
        let forwarder = forward(hub, name.into(), id, self.relays.clone());
        self.open.insert(
            name.to_owned(),
            Open {
                doc: doc.to_owned(),
                writer,
                id,
                forwarder,
                position: None,
            },
        );
        self.authenticated = true;
        hp::authenticated(name, !writer)
    }

    /// Whether the key opens the document, and for writing; else the code.
    async fn admit(&self, doc: &str, token: &str) -> Result<bool, &'static str> {
        validate::id("doc", doc).map_err(|_| "bad_request")?;
        if self.open.len() >= MAX_DOCUMENTS {
            return Err("too_many_documents");
        }
        let writer = self
            .checks
            .authorize(&self.s, token)
            .await
            .map_err(|e| refusal(&e))?;
        self.s
            .store
            .get_project(&self.scope.org, &self.scope.project)
            .await
            .map_err(|e| refusal(&ApiError::Domain(e)))?;
        Ok(writer)
    }

    /// Sync and awareness of an open document.
    async fn yjs(
        &mut self,
        name: &str,
        yjs: &[u8],
        message: SyncMessage<'_>,
    ) -> DomainResult<Vec<Vec<u8>>> {
        let open = &self.open[name];
        match message {
            SyncMessage::Step1(sv) => {
                crdt::validate_state_vector(sv)?;
                let (s, scope) = (&self.s, &self.scope);
                let (state, seq) =
                    catch_up::whole(s.store.as_ref(), s.blobs.as_ref(), scope, &open.doc).await?;
                let open = self.open.get_mut(name).expect("open");
                open.position = Some(open.position.map_or(seq, |p| p.max(seq)));
                let ours = sync::state_vector_of(&state);
                let missing = crdt::diff(state, sv.to_vec()).await?;
                // The server's step 1 makes the client send its step 2,
                // whose acknowledgement the provider waits for.
                Ok(vec![
                    hp::wrap(name, &sync::step2(missing)),
                    hp::wrap(name, &sync::step1(&ours)),
                ])
            }
            SyncMessage::Step2(update) | SyncMessage::Update(update) => {
                if update.len() > self.s.crdt.max_update_bytes {
                    return Err(DomainError::BadRequest(format!(
                        "an update exceeds {} bytes",
                        self.s.crdt.max_update_bytes
                    )));
                }
                crdt::validate_update(update)?;
                let saved = if open.writer {
                    if let Some(stored) = self.persist(open, update).await? {
                        self.storing.push((stored, hp::sync_status(name, true)));
                        return Ok(Vec::new());
                    }
                    true
                } else {
                    // As Hocuspocus does for read-only connections.
                    matches!(message, SyncMessage::Step2(_))
                        && (sync::is_empty_update(update) || {
                            let state = current_state(&self.s, &self.scope, &open.doc).await?;
                            crdt::adds_nothing(state, update.to_vec()).await?
                        })
                };
                Ok(vec![hp::sync_status(name, saved)])
            }
            SyncMessage::Awareness => {
                self.publish(open, yjs.to_vec());
                Ok(vec![hp::wrap(name, yjs)])
            }
            SyncMessage::QueryAwareness => {
                self.publish(open, yjs.to_vec());
                Ok(Vec::new())
            }
            // Type 2 is read as a Hocuspocus auth message, never here.
            SyncMessage::Auth => Ok(Vec::new()),
        }
    }

    /// Hands an update to the group commit, which stores then relays it;
    /// None for the empty update (nothing to store).
    async fn persist(&self, open: &Open, update: &[u8]) -> DomainResult<Option<Submitted>> {
        if sync::is_empty_update(update) {
            return Ok(None);
        }
        let append = DocAppend {
            scope: self.scope.clone(),
            doc: open.doc.clone(),
            updates: vec![update.to_vec()],
            origin: Some(origin_of(open.id)),
        };
        Ok(Some(self.s.commits.submit(vec![append], open.id).await?))
    }

    fn publish(&self, open: &Open, message: Vec<u8>) {
        let relay = sync::Relay {
            from: open.id,
            seq: None,
            message: Arc::new(message),
        };
        self.s.hub.publish(&self.scope, &open.doc, relay);
    }

    /// A relay for one of the socket's documents, re-addressed to it.
    async fn relayed(&mut self, relayed: Relayed) -> DomainResult<Vec<Vec<u8>>> {
        let (name, id) = match &relayed {
            Relayed::Message { name, id, .. }
            | Relayed::Lagged { name, id }
            | Relayed::Deleted { name, id } => (name, *id),
        };
        // A relay for a document closed (or reopened) since is dropped.
        let Some(open) = self.open.get_mut(&**name).filter(|o| o.id == id) else {
            return Ok(Vec::new());
        };
        match &relayed {
            Relayed::Message { message, seq, .. } => match (open.position, *seq) {
                // Sent already, in a state or a catch-up.
                (Some(position), Some(seq)) if seq <= position => Ok(Vec::new()),
                (position, seq) => {
                    if let (Some(_), Some(seq)) = (position, seq) {
                        open.position = Some(seq);
                    }
                    Ok(vec![hp::wrap(name, message)])
                }
            },
            Relayed::Deleted { .. } => {
                self.open.remove(&**name);
                Ok(vec![hp::close(name, "the document was deleted")])
            }
            Relayed::Lagged { .. } => {
                let (s, scope) = (&self.s, &self.scope);
                let (store, blobs) = (s.store.as_ref(), s.blobs.as_ref());
                let caught =
                    catch_up::catch_up(store, blobs, scope, &open.doc, open.position).await?;
                open.position = Some(caught.through);
                let update = caught.update.map(|u| hp::wrap(name, &sync::update(u)));
                Ok(update.into_iter().collect())
            }
        }
    }
}

/// The origin a document's updates from this socket are stored with.
fn origin_of(connection: u64) -> String {
    format!("hocuspocus:{connection}")
}
