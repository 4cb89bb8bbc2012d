//! `RaftService` clients of other members, one per address, kept for
//! reuse: admin calls forwarded to the leader, and a transfer's
//! `StartElection`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tonic::transport::Channel;

use super::ClusterError;
use crate::proto::raft_service_client::RaftServiceClient;
use crate::raft::network::{channel, MAX_MESSAGE_BYTES};

#[derive(Clone, Default)]
pub struct Peers {
    clients: Arc<Mutex<HashMap<String, RaftServiceClient<Channel>>>>,
}

impl Peers {
    /// The client of the node at `addr` (host:port).
    pub fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, ClusterError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(addr) {
            return Ok(client.clone());
        }
        let ch = channel(addr)
            .map_err(|e| ClusterError::Internal(format!("bad peer address {addr:?}: {e}")))?;
        let client = RaftServiceClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }
}
