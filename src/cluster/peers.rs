//! `RaftService` clients of other members, one per address, kept for
//! reuse: admin calls forwarded to the leader, and a transfer's
//! `StartElection`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::ClusterError;
use crate::proto::raft_service_client::RaftServiceClient;
use crate::raft::network::MAX_MESSAGE_BYTES;
use crate::security::peer::{Dialer, PeerChannel};

#[derive(Clone)]
pub struct Peers {
    dialer: Dialer,
    clients: Arc<Mutex<HashMap<String, RaftServiceClient<PeerChannel>>>>,
}

impl Peers {
    pub fn new(dialer: Dialer) -> Self {
        Self {
            dialer,
            clients: Default::default(),
        }
    }

    /// The client of the node at `addr` (host:port).
    pub fn client(&self, addr: &str) -> Result<RaftServiceClient<PeerChannel>, ClusterError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(addr) {
            return Ok(client.clone());
        }
        let ch = self
            .dialer
            .channel(addr)
            .map_err(|e| ClusterError::Internal(format!("bad peer address {addr:?}: {e}")))?;
        let client = RaftServiceClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }
}
