//! `grpc.health.v1.Health` for this node, as load balancers and meshes use it.
//!
//! One status for the node, reported under "" and each taskd service.
//! Unlike a plain status map, the node's shutdown is part of the state: a
//! Watch stream reports NOT_SERVING and then ENDS, so an open Watch never
//! keeps a stopping node from draining.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The service names this node answers for, besides "" (the whole server).
pub const SERVICES: [&str; 2] = ["taskd.v1.TaskService", "taskd.v1.RaftService"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeHealth {
    Serving,
    NotServing,
    /// Shutting down: NOT_SERVING, and Watch streams end.
    Stopping,
}

/// The health service; `NodeHealth` updates come through the paired sender.
#[derive(Clone)]
pub struct HealthApi {
    state: watch::Receiver<NodeHealth>,
}

impl HealthApi {
    /// A service starting NOT_SERVING, and the sender that updates it.
    pub fn new() -> (watch::Sender<NodeHealth>, Self) {
        let (tx, state) = watch::channel(NodeHealth::NotServing);
        (tx, Self { state })
    }
}

/// Whether the node is ready, as `/readyz` asks: exactly while its gRPC
/// health says SERVING.
pub fn readiness(health: &watch::Sender<NodeHealth>) -> impl Fn() -> bool + Send + Sync + 'static {
    let state = health.subscribe();
    move || *state.borrow() == NodeHealth::Serving
}

fn known(service: &str) -> bool {
    service.is_empty() || SERVICES.contains(&service)
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

fn serving_status(state: NodeHealth) -> ServingStatus {
    match state {
        NodeHealth::Serving => ServingStatus::Serving,
        NodeHealth::NotServing | NodeHealth::Stopping => ServingStatus::NotServing,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthApi {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        if !known(service) {
            return Err(Status::not_found(format!("unknown service {service:?}")));
        }
        Ok(Response::new(response(serving_status(
            *self.state.borrow(),
        ))))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let service = request.into_inner().service;
        if !known(&service) {
            // The protocol: SERVICE_UNKNOWN, and the stream stays open.
            let unknown =
                futures::stream::once(async { Ok(response(ServingStatus::ServiceUnknown)) });
            let stream: WatchStream = Box::pin(futures::StreamExt::chain(
                unknown,
                futures::stream::pending(),
            ));
            return Ok(Response::new(stream));
        }
        // (receiver, first item?, ended?)
        let start = (self.state.clone(), true, false);
        let stream = futures::stream::unfold(start, |(mut rx, first, ended)| async move {
            if ended || (!first && rx.changed().await.is_err()) {
                return None;
            }
            let state = *rx.borrow_and_update();
            let item = Ok(response(serving_status(state)));
            Some((item, (rx, false, state == NodeHealth::Stopping)))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
