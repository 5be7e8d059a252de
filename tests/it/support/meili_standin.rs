//! A protocol-level STAND-IN for Meilisearch, not Meilisearch: Meilisearch
//! cannot be installed on the test machines, so this small axum server
//! answers the documented endpoints that meilisearch-sdk calls for
//! `strata::search::meili`, with Meilisearch's request and answer shapes
//! (camelCase JSON, `202` task summaries, `GET /tasks/{uid}` going from
//! `enqueued` to `succeeded` or `failed` as a background worker processes
//! the queue in order, error bodies `{message, code, type, link}`).
//!
//! Served: `GET /health`; `GET /indexes/{uid}`, `POST /indexes`;
//! `PATCH /indexes/{uid}/settings`; `POST /indexes/{uid}/documents`
//! (add or replace), `.../documents/delete-batch`, `.../documents/delete`
//! (by filter), `.../documents/fetch`, `GET /indexes/{uid}/documents`
//! (a listing without filter); `POST /indexes/{uid}/search`
//! (`q`, `filter`, `limit`, `offset`, `showRankingScore`,
//! `attributesToRetrieve`); `GET /tasks/{uid}`. Every route but `/health`
//! needs `Authorization: Bearer <key>` when a key is set.
//!
//! What it models of the engine: filters of the form `attr = "value"` or
//! `attr = value` joined by `AND` (quoted values unescaped as Meilisearch
//! does), only on filterable attributes; typo tolerance with Meilisearch's
//! defaults (a word of 5 or more characters matches with one typo, of 9 or
//! more with two; an adjacent swap is one typo; the last query word also
//! matches as a prefix); the `last` matching strategy (documents that match
//! every word first, then those matching all but the last, ...); a ranking
//! score in [0, 1]. Not modelled: proximity, attribute and exactness
//! ranking, stemming-free tokenisation beyond letters and digits, facets.
//!
//! Switches for failure tests: [`MeiliStandin::set_down`] answers every
//! request 503 (as a load balancer before a stopped Meilisearch would);
//! [`MeiliStandin::fail_next_tasks`] makes the next tasks fail.

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub struct MeiliStandin {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MeiliStandin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Shared {
    key: Option<String>,
    down: AtomicBool,
    state: Mutex<Engine>,
    queue: mpsc::UnboundedSender<u32>,
}

#[derive(Default)]
struct Engine {
    indexes: BTreeMap<String, Idx>,
    tasks: Vec<TaskRecord>,
    /// The next this many tasks fail (a refused document, say).
    fail_next: usize,
}

struct Idx {
    primary_key: Option<String>,
    /// In insertion order of first addition, as Meilisearch's internal ids.
    docs: Vec<Map<String, Value>>,
    /// Where each document id is in `docs` (an upsert finds its slot in
    /// O(1): the feed benchmark loads a million documents).
    positions: HashMap<String, usize>,
    settings: Map<String, Value>,
    created_at: String,
}

impl Idx {
    fn new(primary_key: Option<String>) -> Self {
        Idx {
            primary_key,
            docs: Vec::new(),
            positions: HashMap::new(),
            settings: Map::new(),
            created_at: now(),
        }
    }

    /// Keeps the documents `keep` says to, then finds the rest again.
    fn retain(&mut self, keep: impl FnMut(&Map<String, Value>) -> bool) {
        self.docs.retain(keep);
        let pk = self.primary_key.clone().unwrap_or_default();
        self.positions = self
            .docs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                d.get(&pk)
                    .and_then(Value::as_str)
                    .map(|id| (id.to_owned(), i))
            })
            .collect();
    }
}

enum Op {
    CreateIndex {
        primary_key: Option<String>,
    },
    Settings(Map<String, Value>),
    AddDocuments {
        primary_key: Option<String>,
        docs: Vec<Value>,
    },
    DeleteIds(Vec<String>),
    DeleteFilter(String),
}

struct TaskRecord {
    uid: u32,
    index: String,
    kind: &'static str,
    op: Option<Op>,
    status: &'static str,
    details: Value,
    error: Value,
    enqueued_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl TaskRecord {
    fn summary(&self) -> Value {
        json!({"taskUid": self.uid, "indexUid": self.index, "status": self.status,
            "type": self.kind, "details": null, "enqueuedAt": self.enqueued_at})
    }

    fn full(&self) -> Value {
        let finished = self.finished_at.is_some();
        json!({"uid": self.uid, "indexUid": self.index, "status": self.status,
            "type": self.kind, "details": self.details, "error": self.error,
            "canceledBy": null,
            "duration": if finished { json!("PT0.001S") } else { Value::Null },
            "enqueuedAt": self.enqueued_at, "startedAt": self.started_at,
            "finishedAt": self.finished_at})
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn error(status: StatusCode, code: &str, kind: &str, message: impl Into<String>) -> Response {
    let body = error_body(code, kind, message);
    (status, Json(body)).into_response()
}

fn error_body(code: &str, kind: &str, message: impl Into<String>) -> Value {
    json!({"message": message.into(), "code": code, "type": kind,
        "link": format!("https://docs.meilisearch.com/errors#{code}")})
}

type Standin = Arc<Shared>;

impl MeiliStandin {
    /// Starts on a free loopback port; `key` is the master key to demand.
    pub async fn start(key: Option<&str>) -> MeiliStandin {
        let (queue, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            key: key.map(str::to_owned),
            down: AtomicBool::new(false),
            state: Mutex::default(),
            queue,
        });
        tokio::spawn(worker(shared.clone(), rx));
        let app = Router::new()
            .route("/indexes", post(create_index))
            .route("/indexes/{uid}", get(get_index))
            .route("/indexes/{uid}/settings", patch(update_settings))
            .route(
                "/indexes/{uid}/documents",
                post(add_documents).get(list_documents),
            )
            .route("/indexes/{uid}/documents/delete-batch", post(delete_batch))
            .route("/indexes/{uid}/documents/delete", post(delete_by_filter))
            .route("/indexes/{uid}/documents/fetch", post(fetch_documents))
            .route("/indexes/{uid}/search", post(search))
            .route("/tasks/{uid}", get(get_task))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), auth))
            .route(
                "/health",
                get(|| async { Json(json!({"status": "available"})) }),
            )
            .layer(axum::middleware::from_fn_with_state(shared.clone(), down))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MeiliStandin {
            url,
            shared,
            server,
        }
    }

    /// While down, every request is answered 503 without a Meilisearch body.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The next `n` tasks fail with an `invalid_document_fields` error.
    pub fn fail_next_tasks(&self, n: usize) {
        self.shared.state.lock().unwrap().fail_next = n;
    }

    /// Every document of an index (for assertions).
    pub fn documents(&self, index: &str) -> Vec<Map<String, Value>> {
        let state = self.shared.state.lock().unwrap();
        state
            .indexes
            .get(index)
            .map(|i| i.docs.clone())
            .unwrap_or_default()
    }

    /// The settings an index was given (for assertions).
    pub fn settings(&self, index: &str) -> Map<String, Value> {
        let state = self.shared.state.lock().unwrap();
        state
            .indexes
            .get(index)
            .map(|i| i.settings.clone())
            .unwrap_or_default()
    }
}

async fn down(State(s): State<Standin>, request: Request, next: Next) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    next.run(request).await
}

async fn auth(State(s): State<Standin>, request: Request, next: Next) -> Response {
    let Some(key) = &s.key else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match given {
        None => error(
            StatusCode::UNAUTHORIZED,
            "missing_authorization_header",
            "auth",
            "The Authorization header is missing. It must use the bearer authorization method.",
        ),
        Some(h) if h == format!("Bearer {key}") => next.run(request).await,
        Some(_) => error(
            StatusCode::FORBIDDEN,
            "invalid_api_key",
            "auth",
            "The provided API key is invalid.",
        ),
    }
}

/// Queues a task and answers its summary (202), as Meilisearch does.
fn enqueue(s: &Shared, index: &str, kind: &'static str, op: Op) -> Response {
    let mut state = s.state.lock().unwrap();
    let uid = state.tasks.len() as u32;
    let task = TaskRecord {
        uid,
        index: index.to_owned(),
        kind,
        op: Some(op),
        status: "enqueued",
        details: Value::Null,
        error: Value::Null,
        enqueued_at: now(),
        started_at: None,
        finished_at: None,
    };
    let summary = task.summary();
    state.tasks.push(task);
    drop(state);
    s.queue.send(uid).expect("the worker runs");
    (StatusCode::ACCEPTED, Json(summary)).into_response()
}

/// Processes tasks one at a time, in order, after they were answered.
async fn worker(s: Standin, mut rx: mpsc::UnboundedReceiver<u32>) {
    while let Some(uid) = rx.recv().await {
        // Let the client see `enqueued` first, like the real queue.
        tokio::task::yield_now().await;
        let mut state = s.state.lock().unwrap();
        let fail = state.fail_next > 0;
        state.fail_next = state.fail_next.saturating_sub(1);
        let (index, op) = {
            let t = &mut state.tasks[uid as usize];
            t.started_at = Some(now());
            (t.index.clone(), t.op.take().expect("processed once"))
        };
        let outcome = if fail {
            Err(error_body(
                "invalid_document_fields",
                "invalid_request",
                "The stand-in was told to fail this task.",
            ))
        } else {
            apply(&mut state, &index, op)
        };
        let t = &mut state.tasks[uid as usize];
        t.finished_at = Some(now());
        match outcome {
            Ok(details) => {
                t.status = "succeeded";
                t.details = details;
            }
            Err(e) => {
                t.status = "failed";
                t.error = e;
            }
        }
    }
}

fn apply(state: &mut Engine, index: &str, op: Op) -> Result<Value, Value> {
    match op {
        Op::CreateIndex { primary_key } => {
            if state.indexes.contains_key(index) {
                return Err(error_body(
                    "index_already_exists",
                    "invalid_request",
                    format!("Index `{index}` already exists."),
                ));
            }
            state
                .indexes
                .insert(index.to_owned(), Idx::new(primary_key.clone()));
            Ok(json!({"primaryKey": primary_key}))
        }
        Op::Settings(body) => {
            let idx = state
                .indexes
                .entry(index.to_owned())
                .or_insert_with(|| Idx::new(None));
            idx.settings.extend(body);
            Ok(Value::Null)
        }
        Op::AddDocuments { primary_key, docs } => {
            let idx = state
                .indexes
                .entry(index.to_owned())
                .or_insert_with(|| Idx::new(primary_key.clone()));
            let pk = idx
                .primary_key
                .get_or_insert_with(|| primary_key.unwrap_or_else(|| "id".into()))
                .clone();
            let mut checked = Vec::new();
            for doc in docs {
                let Value::Object(doc) = doc else {
                    return Err(error_body(
                        "malformed_payload",
                        "invalid_request",
                        "a document is not an object",
                    ));
                };
                let id = doc.get(&pk).and_then(Value::as_str).unwrap_or_default();
                let valid = !id.is_empty()
                    && id.len() <= 511
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(error_body(
                        "invalid_document_id",
                        "invalid_request",
                        format!("Document identifier `{id}` is invalid."),
                    ));
                }
                checked.push((id.to_owned(), doc));
            }
            let n = checked.len();
            for (id, doc) in checked {
                match idx.positions.get(&id) {
                    Some(&slot) => idx.docs[slot] = doc,
                    None => {
                        idx.positions.insert(id, idx.docs.len());
                        idx.docs.push(doc);
                    }
                }
            }
            Ok(json!({"receivedDocuments": n, "indexedDocuments": n}))
        }
        Op::DeleteIds(ids) => {
            let idx = found(state, index)?;
            let pk = idx.primary_key.clone().unwrap_or_default();
            let before = idx.docs.len();
            let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
            idx.retain(|d| {
                !d.get(&pk)
                    .and_then(Value::as_str)
                    .is_some_and(|id| ids.contains(id))
            });
            Ok(json!({"providedIds": ids.len(), "deletedDocuments": before - idx.docs.len()}))
        }
        Op::DeleteFilter(filter) => {
            let idx = found(state, index)?;
            let f = parse_filter(&filter, &idx.settings)?;
            let before = idx.docs.len();
            idx.retain(|d| !matches_filter(d, &f));
            Ok(json!({"deletedDocuments": before - idx.docs.len(), "originalFilter": filter}))
        }
    }
}

fn found<'a>(state: &'a mut Engine, index: &str) -> Result<&'a mut Idx, Value> {
    state.indexes.get_mut(index).ok_or_else(|| {
        error_body(
            "index_not_found",
            "invalid_request",
            format!("Index `{index}` not found."),
        )
    })
}

fn not_found(index: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "index_not_found",
        "invalid_request",
        format!("Index `{index}` not found."),
    )
}

async fn create_index(State(s): State<Standin>, Json(body): Json<Value>) -> Response {
    let Some(uid) = body["uid"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_index_uid",
            "invalid_request",
            "Missing field `uid`",
        );
    };
    let primary_key = body["primaryKey"].as_str().map(str::to_owned);
    enqueue(&s, uid, "indexCreation", Op::CreateIndex { primary_key })
}

async fn get_index(State(s): State<Standin>, Path(uid): Path<String>) -> Response {
    let state = s.state.lock().unwrap();
    match state.indexes.get(&uid) {
        Some(i) => Json(json!({"uid": uid, "primaryKey": i.primary_key,
            "createdAt": i.created_at, "updatedAt": i.created_at}))
        .into_response(),
        None => not_found(&uid),
    }
}

async fn update_settings(
    State(s): State<Standin>,
    Path(uid): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Response {
    enqueue(&s, &uid, "settingsUpdate", Op::Settings(body))
}

async fn add_documents(
    State(s): State<Standin>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    let docs = match body {
        Value::Array(a) => a,
        one @ Value::Object(_) => vec![one],
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "malformed_payload",
                "invalid_request",
                "The payload is not an array of documents.",
            )
        }
    };
    let primary_key = q.get("primaryKey").cloned();
    enqueue(
        &s,
        &uid,
        "documentAdditionOrUpdate",
        Op::AddDocuments { primary_key, docs },
    )
}

async fn delete_batch(
    State(s): State<Standin>,
    Path(uid): Path<String>,
    Json(ids): Json<Vec<Value>>,
) -> Response {
    let ids = ids
        .into_iter()
        .map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect();
    enqueue(&s, &uid, "documentDeletion", Op::DeleteIds(ids))
}

async fn delete_by_filter(
    State(s): State<Standin>,
    Path(uid): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let Some(filter) = body["filter"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_document_filter",
            "invalid_request",
            "Missing field `filter`",
        );
    };
    // Checked when asked, as Meilisearch does for syntax errors.
    if let Err(e) = parse_filter(filter, &Map::new()) {
        return (StatusCode::BAD_REQUEST, Json(e)).into_response();
    }
    enqueue(
        &s,
        &uid,
        "documentDeletion",
        Op::DeleteFilter(filter.into()),
    )
}

async fn fetch_documents(
    State(s): State<Standin>,
    Path(uid): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let state = s.state.lock().unwrap();
    let Some(idx) = state.indexes.get(&uid) else {
        return not_found(&uid);
    };
    let filter = match body["filter"]
        .as_str()
        .map(|f| parse_filter(f, &idx.settings))
    {
        None => Vec::new(),
        Some(Ok(f)) => f,
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, Json(e)).into_response(),
    };
    let offset = body["offset"].as_u64().unwrap_or(0) as usize;
    let limit = body["limit"].as_u64().unwrap_or(20) as usize;
    let fields: Option<Vec<String>> = body["fields"].as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    });
    let matching: Vec<_> = idx
        .docs
        .iter()
        .filter(|d| matches_filter(d, &filter))
        .collect();
    let results: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| Value::Object(only(d, fields.as_deref())))
        .collect();
    Json(json!({"results": results, "offset": offset, "limit": limit, "total": matching.len()}))
        .into_response()
}

/// `GET .../documents?offset=&limit=&fields=a,b` (no filter: the SDK
/// sends a filtered listing to `/documents/fetch`).
async fn list_documents(
    State(s): State<Standin>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut body = json!({});
    for key in ["offset", "limit"] {
        if let Some(n) = q.get(key).and_then(|v| v.parse::<u64>().ok()) {
            body[key] = json!(n);
        }
    }
    if let Some(fields) = q.get("fields") {
        body["fields"] = json!(fields.split(',').collect::<Vec<_>>());
    }
    fetch_documents(State(s), Path(uid), Json(body)).await
}

async fn get_task(State(s): State<Standin>, Path(uid): Path<u32>) -> Response {
    let state = s.state.lock().unwrap();
    match state.tasks.get(uid as usize) {
        Some(t) => Json(t.full()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "task_not_found",
            "invalid_request",
            format!("Task `{uid}` not found."),
        ),
    }
}

fn only(doc: &Map<String, Value>, fields: Option<&[String]>) -> Map<String, Value> {
    match fields {
        Some(fields) if !fields.iter().any(|f| f == "*") => doc
            .iter()
            .filter(|(k, _)| fields.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => doc.clone(),
    }
}

// ---- filters ----

/// `attr = value` conditions: any group (OR) whose conditions all hold (AND).
type Filter = Vec<Vec<(String, String)>>;

/// Parses `attr = "v" AND attr = v OR ...` (AND binding tighter, as in
/// Meilisearch). Values are quoted strings (a backslash takes the next
/// character literally, as Meilisearch's parser reads `\"` and `\\`) or
/// bare words; an attribute must be filterable when `settings` name any.
/// OR is understood although the adapter never sends it, so a value that
/// escaped its quotes would be read as the injection it is. Anything else
/// (NOT, parentheses, other operators) is refused, as Meilisearch refuses
/// syntax it cannot read.
fn parse_filter(text: &str, settings: &Map<String, Value>) -> Result<Filter, Value> {
    let bad = |why: &str| {
        error_body(
            "invalid_search_filter",
            "invalid_request",
            format!("{why} in filter `{text}`"),
        )
    };
    let filterable: Vec<&str> = settings
        .get("filterableAttributes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = vec![Vec::new()];
    let mut rest = text.trim_start();
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        let (attr, after) = rest.split_at(end);
        if attr.is_empty() {
            return Err(bad("expected an attribute"));
        }
        if !settings.is_empty() && !filterable.contains(&attr) {
            return Err(bad(&format!("attribute `{attr}` is not filterable")));
        }
        let after = after.trim_start();
        let Some(after) = after.strip_prefix('=') else {
            return Err(bad("expected `=`"));
        };
        let after = after.trim_start();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, c @ ('"' | '\\'))) => value.push(c),
                        _ => return Err(bad("bad escape")),
                    },
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let Some(i) = close else {
                return Err(bad("unclosed quote"));
            };
            (value, &quoted[i + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || "_-.".contains(c)))
                .unwrap_or(after.len());
            if end == 0 {
                return Err(bad("expected a value"));
            }
            (after[..end].to_owned(), &after[end..])
        };
        out.last_mut()
            .expect("one group at least")
            .push((attr.to_owned(), value));
        let after = after.trim_start();
        if after.is_empty() {
            return Ok(out);
        }
        let next = if let Some(next) = after.strip_prefix("AND") {
            next
        } else if let Some(next) = after.strip_prefix("OR") {
            out.push(Vec::new());
            next
        } else {
            return Err(bad("expected AND or OR"));
        };
        if !next.starts_with(char::is_whitespace) {
            return Err(bad("expected a space after AND or OR"));
        }
        rest = next.trim_start();
    }
}

fn matches_filter(doc: &Map<String, Value>, filter: &Filter) -> bool {
    let holds = |(attr, value): &(String, String)| match doc.get(attr) {
        Some(Value::String(s)) => s == value,
        Some(Value::Number(n)) => n.to_string() == *value,
        _ => false,
    };
    filter.is_empty() || filter.iter().any(|group| group.iter().all(holds))
}

// ---- search ----

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Meilisearch's default typo budget by word length (in characters).
fn typo_budget(word: &str) -> usize {
    match word.chars().count() {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Optimal string alignment distance: insert, delete, substitute, or swap
/// two adjacent characters, each one typo.
fn distance(a: &[char], b: &[char]) -> usize {
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The fewest typos with which `query` matches some word of the document
/// (as a prefix too when it is the query's last word), if any.
fn best_match(query: &str, doc_words: &[Vec<char>], prefix: bool) -> Option<usize> {
    let q: Vec<char> = query.chars().collect();
    let budget = typo_budget(query);
    doc_words
        .iter()
        .filter_map(|w| {
            let whole = distance(&q, w);
            let start = if prefix && w.len() > q.len() {
                distance(&q, &w[..q.len()])
            } else {
                whole
            };
            Some(whole.min(start)).filter(|t| *t <= budget)
        })
        .min()
}

fn searchable_text(doc: &Map<String, Value>, settings: &Map<String, Value>) -> String {
    let attrs: Vec<&str> = settings
        .get("searchableAttributes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| vec!["*"]);
    let mut out = String::new();
    for (k, v) in doc {
        if attrs.contains(&"*") || attrs.contains(&k.as_str()) {
            if let Value::String(s) = v {
                out.push_str(s);
                out.push(' ');
            }
        }
    }
    out
}

async fn search(
    State(s): State<Standin>,
    Path(uid): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let state = s.state.lock().unwrap();
    let Some(idx) = state.indexes.get(&uid) else {
        return not_found(&uid);
    };
    let filter = match &body["filter"] {
        Value::Null => Vec::new(),
        Value::String(f) => match parse_filter(f, &idx.settings) {
            Ok(f) => f,
            Err(e) => return (StatusCode::BAD_REQUEST, Json(e)).into_response(),
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_search_filter",
                "invalid_request",
                "the stand-in reads string filters only",
            )
        }
    };
    let query = words(body["q"].as_str().unwrap_or_default());
    let limit = body["limit"].as_u64().unwrap_or(20) as usize;
    let offset = body["offset"].as_u64().unwrap_or(0) as usize;
    let fields: Option<Vec<String>> = body["attributesToRetrieve"].as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    });
    // (words matched, typos, insertion rank) per matching document.
    let mut ranked = Vec::new();
    for (rank, doc) in idx.docs.iter().enumerate() {
        if !matches_filter(doc, &filter) {
            continue;
        }
        if query.is_empty() {
            ranked.push((0, 0, rank));
            continue;
        }
        let doc_words: Vec<Vec<char>> = words(&searchable_text(doc, &idx.settings))
            .iter()
            .map(|w| w.chars().collect())
            .collect();
        // The `last` strategy: the longest run of leading query words that
        // all match (the last one as a prefix when no word was dropped).
        for keep in (1..=query.len()).rev() {
            let matched: Option<Vec<usize>> = query[..keep]
                .iter()
                .enumerate()
                .map(|(i, w)| best_match(w, &doc_words, i + 1 == query.len()))
                .collect();
            if let Some(typos) = matched {
                ranked.push((keep, typos.iter().sum(), rank));
                break;
            }
        }
    }
    ranked.sort_by_key(|&(kept, typos, rank)| (std::cmp::Reverse(kept), typos, rank));
    let total_words = query.len().max(1) as f64;
    let hits: Vec<Value> = ranked
        .iter()
        .skip(offset)
        .take(limit)
        .map(|&(kept, typos, rank)| {
            let mut hit = only(&idx.docs[rank], fields.as_deref());
            if body["showRankingScore"] == json!(true) {
                let words = if query.is_empty() {
                    1.0
                } else {
                    kept as f64 / total_words
                };
                let typo = 1.0 - typos as f64 / (total_words * 3.0);
                hit.insert("_rankingScore".into(), json!(words * typo));
            }
            Value::Object(hit)
        })
        .collect();
    Json(
        json!({"hits": hits, "query": body["q"], "processingTimeMs": 0,
        "limit": limit, "offset": offset, "estimatedTotalHits": ranked.len()}),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_budgets_follow_meilisearch_defaults() {
        let w = |s: &str| vec![s.chars().collect::<Vec<_>>()];
        assert_eq!(best_match("vehicel", &w("vehicle"), false), Some(1));
        assert_eq!(best_match("cra", &w("car"), false), None);
        assert_eq!(best_match("vehic", &w("vehicle"), true), Some(0));
        assert_eq!(
            best_match("transprotatoin", &w("transportation"), false),
            Some(2)
        );
    }

    #[test]
    fn quoted_filter_values_are_unescaped() {
        let f = parse_filter(r#"tenant = "a\"b\\" AND type = t"#, &Map::new()).unwrap();
        assert_eq!(f[0][0], ("tenant".into(), r#"a"b\"#.into()));
        assert_eq!(f[0][1], ("type".into(), "t".into()));
        let f = parse_filter(r#"tenant = "a" AND type = t OR tenant = "b""#, &Map::new());
        assert_eq!(f.unwrap().len(), 2);
        assert!(parse_filter(r#"NOT tenant = "a""#, &Map::new()).is_err());
        assert!(parse_filter(r#"(tenant = "a")"#, &Map::new()).is_err());
    }
}
