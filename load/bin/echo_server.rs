//! A baseline server for load tests, built from the same proto: `Rank` only
//! decodes the request and answers one result per candidate (same size as a
//! real answer), without touching a store, a cache or the model. Also serves
//! the health service, like the real server.
//!
//!     cargo run --release --example echo_server -- 127.0.0.1:50052

use creator_boost::proto;
use creator_boost::proto::creator_boost_server::{CreatorBoost, CreatorBoostServer};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

struct Echo;

type EventStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::RecordEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CreatorBoost for Echo {
    async fn rank(&self, request: Request<proto::RankRequest>) -> Result<Response<proto::RankResponse>, Status> {
        let request = request.into_inner();
        let results = request
            .candidates
            .iter()
            .enumerate()
            .map(|(index, c)| proto::RankedCandidate {
                item_id: c.item_id,
                creator_id: c.creator_id,
                index: index as u32,
                base_score: c.base_score,
                public_boost: 1.0,
                private_boost: 1.0,
                boost: 1.0,
                final_score: c.base_score,
                relation: 0,
                explanation: None,
            })
            .collect();
        Ok(Response::new(proto::RankResponse {
            results,
            model_version: "echo".into(),
            variant: request.variant,
            degraded: false,
        }))
    }

    async fn get_creator_scores(
        &self,
        _: Request<proto::GetCreatorScoresRequest>,
    ) -> Result<Response<proto::GetCreatorScoresResponse>, Status> {
        Err(Status::unimplemented("echo baseline"))
    }

    async fn record_events(
        &self,
        _: Request<proto::RecordEventsRequest>,
    ) -> Result<Response<proto::RecordEventsResponse>, Status> {
        Err(Status::unimplemented("echo baseline"))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        _: Request<Streaming<proto::RecordEventsRequest>>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        Err(Status::unimplemented("echo baseline"))
    }
}

/// Same runtime choice as the real server: a current-thread runtime when the
/// process may use one core (e.g. under `taskset -c 0`), else multi-threaded.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50052".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<CreatorBoostServer<Echo>>().await;
    eprintln!("echo baseline on {address}");
    Server::builder()
        .add_service(health)
        .add_service(CreatorBoostServer::new(Echo))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
