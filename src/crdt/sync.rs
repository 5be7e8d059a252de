//! The y-websocket protocol (incoming messages through the bounded check,
//! outgoing ones through yrs's codec), and the hub
//! that relays updates and awareness between the connections of a document
//! on this daemon.

use super::check::{self, CheckError, SyncMessage};
use crate::domain::Scope;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use yrs::sync::Message;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::StateVector;

/// A message for the other connections of a document.
#[derive(Clone, Debug)]
pub struct Relay {
    /// The connection it came from (0: not a WebSocket), so it is not echoed.
    pub from: u64,
    /// A stored update's sequence number (none for awareness): where a
    /// connection that falls behind resumes from the log.
    pub seq: Option<i64>,
    pub message: Arc<Vec<u8>>,
}

type Room = (String, String, String);

/// Relays a document's connections may fall behind before they are
/// caught up from the store instead (each room allocates its queue whole:
/// a small one keeps idle documents cheap).
pub const RELAY_QUEUE: usize = 256;

/// Rooms of live connections, one per document; cheap to share.
#[derive(Default)]
pub struct DocHub {
    rooms: Mutex<HashMap<Room, broadcast::Sender<Relay>>>,
    next_connection: std::sync::atomic::AtomicU64,
}

fn room(scope: &Scope, doc: &str) -> Room {
    (scope.org.clone(), scope.project.clone(), doc.to_owned())
}

impl DocHub {
    pub fn connection_id(&self) -> u64 {
        1 + self
            .next_connection
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn subscribe(&self, scope: &Scope, doc: &str) -> broadcast::Receiver<Relay> {
        let mut rooms = self.rooms.lock().expect("hub lock");
        rooms
            .entry(room(scope, doc))
            .or_insert_with(|| broadcast::channel(RELAY_QUEUE).0)
            .subscribe()
    }

    /// Documents with live connections on this daemon, and those
    /// connections (for `/metrics`).
    pub fn live(&self) -> (u64, u64) {
        let rooms = self.rooms.lock().expect("hub lock");
        rooms
            .values()
            .map(|sender| sender.receiver_count() as u64)
            .filter(|n| *n > 0)
            .fold((0, 0), |(docs, conns), n| (docs + 1, conns + n))
    }

    /// Ends the document's room: its connections hear the document is gone
    /// (a document made again under its id starts its seqs over, which
    /// their log positions would take for updates already sent).
    pub fn close(&self, scope: &Scope, doc: &str) {
        self.rooms
            .lock()
            .expect("hub lock")
            .remove(&room(scope, doc));
    }

    /// Sends to every other connection of the document, if any.
    pub fn publish(&self, scope: &Scope, doc: &str, relay: Relay) {
        self.publish_all(scope, doc, || vec![relay]);
    }

    /// Sends relays, made only when the document has connections here.
    pub fn publish_all(&self, scope: &Scope, doc: &str, relays: impl FnOnce() -> Vec<Relay>) {
        let mut rooms = self.rooms.lock().expect("hub lock");
        let key = room(scope, doc);
        if let Some(sender) = rooms.get(&key) {
            for relay in relays() {
                if sender.send(relay).is_err() {
                    // No receiver left: the room is empty.
                    rooms.remove(&key);
                    return;
                }
            }
        }
    }
}

/// What an incoming WebSocket message asks of the server.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// Sync step 1: send what this state vector lacks.
    StateVector(Vec<u8>),
    /// Sync step 2 or update: persist, then relay.
    Update(Vec<u8>),
    /// Awareness (or a query for it): relay as is.
    Relay,
    /// Auth and custom messages: nothing to do.
    Ignore,
    /// Strata's durable acknowledgements asked for (true) or stopped.
    DurableAcks(bool),
}

/// The message type of Strata's durable acknowledgements, beside
/// y-protocols' 0-3: a client sends `[100, 1]` to ask for them (`[100, 0]`
/// stops them); then each update it sends is answered, once durable, with
/// `[100, varUint(seq)]`, the sequence number the update got, in the order
/// the updates were sent. Plain clients never ask, so never see one.
pub const MESSAGE_DURABLE_ACK: u8 = 100;

/// Decodes one client message; every payload has passed the bounded check.
pub fn decode(bytes: &[u8]) -> Result<Incoming, CheckError> {
    if let [MESSAGE_DURABLE_ACK, rest @ ..] = bytes {
        return match rest {
            [0] => Ok(Incoming::DurableAcks(false)),
            [1] => Ok(Incoming::DurableAcks(true)),
            [] => Err(CheckError::Truncated),
            [mode] => Err(CheckError::UnknownTag(
                "durable acknowledgement mode",
                *mode,
            )),
            [_, more @ ..] => Err(CheckError::TrailingBytes(more.len())),
        };
    }
    Ok(match check::sync_message(bytes)? {
        SyncMessage::Step1(sv) => Incoming::StateVector(sv.to_vec()),
        SyncMessage::Step2(u) | SyncMessage::Update(u) => Incoming::Update(u.to_vec()),
        SyncMessage::Awareness | SyncMessage::QueryAwareness => Incoming::Relay,
        SyncMessage::Auth => Incoming::Ignore,
    })
}

/// The acknowledgement that an update is durable with sequence `seq`.
pub fn durable_ack(seq: i64) -> Vec<u8> {
    use yrs::encoding::write::Write;
    let mut out = vec![MESSAGE_DURABLE_ACK];
    out.write_var(seq.max(0) as u64);
    out
}

pub fn step1(state_vector: &[u8]) -> Vec<u8> {
    let sv = StateVector::decode_v1(state_vector).unwrap_or_default();
    Message::Sync(yrs::sync::SyncMessage::SyncStep1(sv)).encode_v1()
}

pub fn step2(update: Vec<u8>) -> Vec<u8> {
    Message::Sync(yrs::sync::SyncMessage::SyncStep2(update)).encode_v1()
}

pub fn update(update: Vec<u8>) -> Vec<u8> {
    Message::Sync(yrs::sync::SyncMessage::Update(update)).encode_v1()
}

/// The state vector of a state (an update covering everything).
pub fn state_vector_of(state: &[u8]) -> Vec<u8> {
    super::fold::state_vector_of(state).unwrap_or_else(|_| StateVector::default().encode_v1())
}

/// True for the empty update (nothing to persist).
pub fn is_empty_update(update: &[u8]) -> bool {
    update == [0, 0]
}
