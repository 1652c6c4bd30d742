//! Health, reflection and shutdown, as operators and ghz see them.

mod common;

use common::*;
use prost::Message;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::{v1, v1alpha};

const SERVICE: &str = "creatorboost.v1.CreatorBoost";

#[tokio::test]
async fn health_overall_and_per_service() {
    let server = spawn_server().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", SERVICE] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner();
        assert_eq!(response.status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let status = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn shutdown_reports_not_serving_first() {
    let mut server = spawn_server().await;
    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first: HealthCheckResponse = watch.message().await.expect("first").expect("some");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    server.begin_shutdown();
    let next = watch.message().await.expect("next").expect("some");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // New connections are refused once draining has begun.
    drop(watch);
    drop(health);
    server.stop().await;
    assert!(
        tonic::transport::Channel::from_shared(server.url())
            .expect("url")
            .connect()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn reflection_v1_lists_and_resolves_methods() {
    use v1::server_reflection_client::ServerReflectionClient;
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;
    let server = spawn_server().await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let requests = vec![
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(format!("{SERVICE}.Rank"))),
        },
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(SERVICE.into())),
        },
    ];
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflect")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.expect("list").expect("some").message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} missing from {names:?}");
    }
    for _ in 0..2 {
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            responses.message().await.expect("file").expect("some").message_response
        else {
            panic!("expected a file descriptor");
        };
        assert!(describes_rank(&files.file_descriptor_proto));
    }
}

#[tokio::test]
async fn reflection_v1alpha_resolves_rank_for_ghz() {
    use v1alpha::server_reflection_client::ServerReflectionClient;
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;
    let server = spawn_server().await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let requests = vec![
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(format!("{SERVICE}.Rank"))),
        },
    ];
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflect")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.expect("list").expect("some").message_response
    else {
        panic!("expected a service list");
    };
    assert!(list.service.iter().any(|s| s.name == SERVICE));
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        responses.message().await.expect("file").expect("some").message_response
    else {
        panic!("expected a file descriptor");
    };
    assert!(describes_rank(&files.file_descriptor_proto));
}

fn describes_rank(files: &[Vec<u8>]) -> bool {
    files.iter().any(|bytes| {
        let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("descriptor");
        file.package() == "creatorboost.v1"
            && file.service.iter().any(|s| {
                s.name() == "CreatorBoost"
                    && s.method
                        .iter()
                        .any(|m| m.name() == "Rank" && m.input_type() == ".creatorboost.v1.RankRequest")
            })
    })
}
