//! The workloads on etcd (feature `etcd`), over the v3 KV API, through the
//! same connections as taskd's: one tonic `Channel` per connection.
//!
//! create = Put of a ~200-byte value under a new key; get = linearizable
//! Range of a preloaded key; get-stale = serializable Range (the asked
//! member's copy); list = prefix Range of one of the 10 label prefixes,
//! limit 100; update = Put over a preloaded key.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, Error, GetOptions, KvClient};

use super::load::{self, label, Op, PADDING};
use super::report::code_name;
use super::taskd_target::channel;

pub struct EtcdTarget {
    clients: Vec<Client>,
    tag: String,
}

/// A value of about 200 bytes.
fn value(key: &str) -> String {
    format!("{key} {PADDING}")
}

/// The key of the `i`-th preloaded value: under its label's prefix.
fn preload_key(i: u64) -> String {
    format!("bench/p/{}/{i:08}", label(i))
}

/// An error named like a gRPC code; errors without a status are `TRANSPORT`.
fn error_name(error: &Error) -> &'static str {
    match error {
        Error::GRpcStatus(status) => code_name(status.code()),
        _ => "TRANSPORT",
    }
}

impl EtcdTarget {
    /// Opens `connections` connections, round-robin over the members' client URLs.
    pub async fn connect(
        endpoints: &[String],
        connections: usize,
        call_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(connections);
        for i in 0..connections {
            let endpoint = &endpoints[i % endpoints.len()];
            let channel = channel(endpoint, call_timeout)?
                .connect()
                .await
                .with_context(|| format!("cannot connect to etcd at {endpoint}"))?;
            let client = Client::from_channel(etcd_client::Channel::Tonic(channel), None)
                .await
                .with_context(|| format!("etcd at {endpoint}"))?;
            clients.push(client);
        }
        Ok(Self {
            clients,
            tag: load::run_tag(),
        })
    }

    /// Puts `n` values; returns their keys.
    pub async fn preload(&self, n: usize) -> anyhow::Result<Arc<[String]>> {
        let keys = load::preload("etcd keys", n, |i| {
            let mut kv = self.clients[i % self.clients.len()].kv_client();
            let key = preload_key(i as u64);
            async move {
                kv.put(key.clone(), value(&key), None)
                    .await
                    .context("preload put")?;
                Ok(key)
            }
        })
        .await?;
        Ok(keys.into())
    }

    /// The caller of client `i`, on connection `i mod K`.
    pub fn caller(&self, i: usize, keys: Arc<[String]>) -> EtcdCaller {
        EtcdCaller {
            kv: self.clients[i % self.clients.len()].kv_client(),
            keys,
            tag: format!("{}/{i}", self.tag),
            seq: 0,
        }
    }
}

pub struct EtcdCaller {
    kv: KvClient,
    keys: Arc<[String]>,
    tag: String,
    seq: u64,
}

impl EtcdCaller {
    pub async fn call(&mut self, op: Op, rng: &mut fastrand::Rng) -> Result<(), &'static str> {
        let outcome = match op {
            Op::Create => {
                self.seq += 1;
                let key = format!("bench/c/{}/{}", self.tag, self.seq);
                self.kv.put(key.clone(), value(&key), None).await.map(drop)
            }
            Op::Get => self.kv.get(self.random_key(rng), None).await.map(drop),
            Op::GetStale => {
                let options = GetOptions::new().with_serializable();
                self.kv
                    .get(self.random_key(rng), Some(options))
                    .await
                    .map(drop)
            }
            Op::List => {
                let prefix = format!("bench/p/{}/", label(rng.u64(..)));
                let options = GetOptions::new().with_prefix().with_limit(100);
                self.kv.get(prefix, Some(options)).await.map(drop)
            }
            Op::Update => {
                let key = self.random_key(rng);
                self.kv.put(key.clone(), value(&key), None).await.map(drop)
            }
        };
        outcome.map_err(|e| error_name(&e))
    }

    fn random_key(&self, rng: &mut fastrand::Rng) -> String {
        self.keys[rng.usize(..self.keys.len())].clone()
    }
}
