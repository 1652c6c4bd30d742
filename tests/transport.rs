//! Hostile and careless clients at the transport: admission on headers,
//! per-RPC message limits, separate read and write budgets, stream and
//! connection timeouts, secure defaults, and the accept loop under an
//! exhausted descriptor limit. Memory is measured on the real binary.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::harness::Need::{Procfs, Redis};
use common::harness::{Need, Tool};
use common::*;
use creator_boost::proto;
use tonic::Code;

const RECORD: &str = "/creatorboost.v1.CreatorBoost/RecordEvents";

fn rank_request() -> proto::RankRequest {
    proto::RankRequest {
        viewer_id: 1,
        candidates: vec![candidate(1, 2, 1.0)],
        ..Default::default()
    }
}

/// An HTTP/2 connection driven in the background.
async fn h2_connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Starts a gRPC call whose first message declares `declared` bytes and
/// carries only `sent` of them; the body stays open.
async fn start_upload(
    client: &mut h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    declared: u32,
    sent: usize,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let ready = client.clone().ready().await.expect("ready");
    *client = ready;
    let (response, mut body) = client
        .send_request(request.body(()).expect("request"), false)
        .expect("send");
    let mut frame = vec![0u8];
    frame.extend_from_slice(&declared.to_be_bytes());
    frame.extend(std::iter::repeat_n(0x0a, sent));
    body.send_data(Bytes::from(frame), false).expect("data");
    (response, body)
}

/// The grpc-status and grpc-message of an answer (trailers-only or trailers).
async fn grpc_status(response: h2::client::ResponseFuture) -> (i32, String) {
    let response = response.await.expect("response");
    let read = |headers: &http::HeaderMap| {
        let status = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .map(percent_decode)
            .unwrap_or_default();
        Some((status, message))
    };
    if let Some(found) = read(response.headers()) {
        return found;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("some trailers");
    read(&trailers).expect("grpc-status")
}

/// grpc-message is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn config_with(extra_top: &str, transport: &str) -> String {
    format!("{extra_top}\n{TEST_CONFIG}\n[transport]\n{transport}\n")
}

async fn fifty_idle_event_streams_leave_rank_answering_and_still_write() {
    let server = spawn_with(Spawn {
        max_in_flight: 50,
        max_writes_in_flight: Some(50),
        ..Spawn::default()
    })
    .await;
    let channel = server.channel().await;
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut client = creator_boost::proto::creator_boost_client::CreatorBoostClient::new(channel.clone());
        let (keep, requests) = tokio::sync::mpsc::channel::<proto::RecordEventsRequest>(1);
        let responses = client
            .stream_events(tokio_stream::wrappers::ReceiverStream::new(requests))
            .await
            .expect("stream opened")
            .into_inner();
        held.push((keep, responses));
    }
    let mut client = server.client().await;
    for _ in 0..20 {
        client
            .rank(rank_request())
            .await
            .expect("Rank admitted beside 50 idle streams");
    }
    // Every idle stream can still write: each message takes a slot only while it is handled.
    for (n, (keep, responses)) in held.iter_mut().enumerate() {
        let events = vec![event(&format!("idle-{n}"), proto::EventKind::Like, 10 + n as u64, 7)];
        keep.send(proto::RecordEventsRequest { events }).await.expect("send");
        let reply = tokio_stream::StreamExt::next(responses)
            .await
            .expect("a reply")
            .expect("accepted");
        assert_eq!(reply.accepted, 1);
    }
}

async fn a_message_declared_larger_than_its_rpc_allows_is_refused_before_its_body() {
    let server = spawn_server().await;
    let mut client = h2_connect(server.addr).await;
    // 16 MiB declared, 10 bytes sent: the answer comes without the rest.
    let (response, _body) = start_upload(&mut client, server.addr, RECORD, None, 16 << 20, 10).await;
    let (status, message) = grpc_status(response).await;
    assert_eq!(status, Code::ResourceExhausted as i32, "{message}");
    assert!(
        message.contains("too large") && message.contains("RecordEvents"),
        "{message}"
    );
    // Rank's own limit is far smaller than RecordEvents': 200 KB is refused.
    let (response, _body) = start_upload(
        &mut client,
        server.addr,
        "/creatorboost.v1.CreatorBoost/Rank",
        None,
        200_000,
        10,
    )
    .await;
    let (status, message) = grpc_status(response).await;
    assert_eq!(status, Code::ResourceExhausted as i32, "{message}");
    assert!(message.contains("Rank"), "{message}");
    server.client().await.rank(rank_request()).await.expect("server fine");
}

async fn a_write_without_the_token_is_refused_on_its_headers() {
    let server = spawn_with(Spawn {
        write_token: Some("s3cret".into()),
        ..Spawn::default()
    })
    .await;
    let mut client = h2_connect(server.addr).await;
    // A valid length, most of the body never sent: refused anyway, at once.
    let (response, _body) = start_upload(&mut client, server.addr, RECORD, None, 1 << 20, 10).await;
    let (status, _) = grpc_status(response).await;
    assert_eq!(status, Code::Unauthenticated as i32);
    let (response, _body) = start_upload(
        &mut client,
        server.addr,
        "/creatorboost.v1.CreatorBoost/StreamEvents",
        Some("wrong"),
        100,
        0,
    )
    .await;
    let (status, _) = grpc_status(response).await;
    assert_eq!(status, Code::Unauthenticated as i32);
}

async fn writes_beyond_their_budget_are_shed_reads_are_not_and_a_stalled_upload_times_out() {
    let config = config_with("", "message_timeout_ms = 500");
    let server = spawn_with(Spawn {
        config: Some(config),
        max_in_flight: 1,
        max_writes_in_flight: Some(1),
        ..Spawn::default()
    })
    .await;
    // A stalled upload holds the only write slot.
    let mut raw = h2_connect(server.addr).await;
    let (stalled, _body) = start_upload(&mut raw, server.addr, RECORD, None, 1000, 10).await;
    let mut client = server.client().await;
    let mut shed = 0;
    for n in 0..20 {
        match client
            .record_events(proto::RecordEventsRequest {
                events: vec![event(&format!("w{n}"), proto::EventKind::Like, 1, 2)],
            })
            .await
        {
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(status.message().contains("retry"), "{}", status.message());
                assert_eq!(
                    status.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()),
                    Some("50")
                );
                shed += 1;
            }
            // The stalled upload may already have timed out on a slow machine.
            Ok(_) => break,
            Err(status) => panic!("unexpected {status:?}"),
        }
        // Reads have their own budget.
        client
            .rank(rank_request())
            .await
            .expect("Rank admitted while writes are full");
    }
    assert!(shed > 0, "no write was shed while the slot was held");
    // The stalled upload is cut off, which frees the slot.
    let (status, message) = grpc_status(stalled).await;
    assert_eq!(status, Code::DeadlineExceeded as i32, "{message}");
    assert!(message.contains("message_timeout_ms"), "{message}");
    let reply = record(&mut client, vec![event("after", proto::EventKind::Like, 1, 2)]).await;
    assert_eq!(reply.accepted, 1);
}

async fn an_event_stream_silent_too_long_is_closed_with_a_clear_status() {
    let config = config_with("", "stream_idle_timeout_ms = 1000");
    let server = spawn_with(Spawn {
        config: Some(config),
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    let (_keep, requests) = tokio::sync::mpsc::channel::<proto::RecordEventsRequest>(1);
    let mut responses = client
        .stream_events(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .expect("stream opened")
        .into_inner();
    let ended = tokio::time::timeout(Duration::from_secs(30), tokio_stream::StreamExt::next(&mut responses))
        .await
        .expect("the stream is closed well before this hang guard");
    let status = ended.expect("a status").expect_err("closed with an error");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(status.message().contains("no message"), "{}", status.message());
}

async fn a_socket_that_never_sends_a_preface_is_closed() {
    use tokio::io::AsyncReadExt;
    let config = config_with("", "handshake_timeout_ms = 200");
    let server = spawn_with(Spawn {
        config: Some(config),
        ..Spawn::default()
    })
    .await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a silent socket was kept open");
}

fn a_public_listen_address_with_open_writes_refuses_to_start() {
    let data = tempfile::tempdir().expect("temp");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_creator-boost"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .env_remove("CREATOR_BOOST_ALLOW_OPEN_WRITES")
        .env_remove("CREATOR_BOOST_WRITE_TOKEN_FILE")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--allow-open-writes") && stderr.contains("--write-token-file"),
        "{stderr}"
    );
}

/// Resident memory of a process, in MB.
fn rss_mb(pid: u32) -> u64 {
    rss_kib(pid).map_or(0, |kb| kb / 1024)
}

/// 64 connections declare 16 MiB RecordEvents messages and send what they
/// can, then stall; again with 64 messages under the limit (1.5 MiB) whose
/// last byte never comes; and unauthenticated ones. The real binary's RSS
/// stays within 200 MB of idle (docs/operations.md, "Transport limits", gives the arithmetic:
/// 32 write slots × 1.7 MiB).
async fn stalled_uploads_keep_the_binarys_memory_bounded() {
    let data = tempfile::tempdir().expect("temp");
    let token = data.path().join("token");
    std::fs::write(&token, "s3cret").expect("token");
    let (mut child, url) = start_binary(
        &data.path().join("data"),
        &["--write-token-file".as_ref(), token.as_os_str()],
    )
    .await;
    let addr: SocketAddr = url.trim_start_matches("http://").parse().expect("addr");
    let idle = rss_mb(child.id());
    let mut peak = idle;
    for (declared, token) in [
        (16u32 << 20, Some("s3cret")),
        ((3 << 20) / 2, Some("s3cret")),
        ((3 << 20) / 2, None),
    ] {
        let mut uploads = Vec::new();
        for _ in 0..64 {
            uploads.push(tokio::spawn(async move {
                let mut client = h2_connect(addr).await;
                let (response, mut body) = start_upload(&mut client, addr, RECORD, token, declared, 0).await;
                let chunk = Bytes::from(vec![0x0au8; 64 * 1024]);
                let mut left = declared as usize - 1;
                let mut response = std::pin::pin!(response);
                while left > 0 {
                    body.reserve_capacity(left.min(chunk.len()));
                    tokio::select! {
                        capacity = std::future::poll_fn(|cx| body.poll_capacity(cx)) => match capacity {
                            Some(Ok(n)) if n > 0 => {
                                let n = n.min(left).min(chunk.len());
                                if body.send_data(chunk.slice(..n), false).is_err() { break; }
                                left -= n;
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                        _ = &mut response => break,
                        () = tokio::time::sleep(Duration::from_secs(2)) => break,
                    }
                }
                (client, body)
            }));
        }
        let mut held = Vec::new();
        for upload in uploads {
            held.push(upload.await.expect("upload"));
        }
        peak = peak.max(rss_mb(child.id()));
        drop(held);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        peak <= idle + 200,
        "RSS went from {idle} MB to {peak} MB under stalled uploads"
    );
}

/// With 64 descriptors the binary runs out of them when clients pile up; once
/// they leave, Health answers again, and the condition was logged.
async fn the_accept_loop_survives_running_out_of_descriptors() {
    let data = tempfile::tempdir().expect("temp");
    let log = data.path().join("server.log");
    let port = free_port();
    let mut child = std::process::Command::new("prlimit")
        .args(["--nofile=64:64", env!("CARGO_BIN_EXE_creator-boost")])
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data.path().join("data"))
        .env("RUST_LOG", "warn")
        .stderr(std::fs::File::create(&log).expect("log"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "server did not start");
    let mut held = Vec::new();
    for _ in 0..150 {
        match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    // Give the accept loop time to run into the limit (not a speed assertion).
    let mut logged = false;
    for _ in 0..100 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("cannot accept")
        {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    let mut serving = false;
    for _ in 0..100 {
        let url = format!("http://{addr}");
        let health = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_creator-boost"))
                .args(["health", "--server", &url, "--timeout-ms", "2000"])
                .output()
        })
        .await
        .expect("join")
        .expect("health");
        if health.status.success() {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(logged, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(serving, "Health never answered once descriptors were free");
}

/// While every read slot is taken (here: one slot, a Rank waiting on a hung
/// Redis), health reports the CreatorBoost service NOT_SERVING, and SERVING
/// again once the slot frees.
async fn health_reports_not_serving_while_rank_cannot_be_admitted() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let redis = common::redis::RedisProcess::start();
    let server = spawn_with(Spawn {
        backend: Backend::Url(redis.url()),
        config: Some(format!("{TEST_CONFIG}\n[redis]\nread_timeout_ms = 3000\n")),
        max_in_flight: 1,
        ..Spawn::default()
    })
    .await;
    let mut health = HealthClient::new(server.channel().await);
    let status = |health: &mut HealthClient<tonic::transport::Channel>| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: "creatorboost.v1.CreatorBoost".into(),
                })
                .await
                .expect("health answers")
                .into_inner()
                .status
        }
    };
    assert_eq!(status(&mut health).await, ServingStatus::Serving as i32);
    let mut client = server.client().await;
    record(&mut client, loyal_creator_events("h", 950, 1..4)).await;
    redis.pause();
    let held = tokio::spawn(async move {
        client
            .rank(proto::RankRequest {
                viewer_id: 11,
                candidates: vec![candidate(1, 950, 1.0), candidate(2, 951, 2.0)],
                ..Default::default()
            })
            .await
    });
    let mut seen_not_serving = false;
    for _ in 0..200 {
        if status(&mut health).await == ServingStatus::NotServing as i32 {
            seen_not_serving = true;
            break;
        }
        if held.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.resume();
    // Resumed before its read timeout: the held Rank completes normally.
    held.await.expect("join").expect("Rank answers");
    assert!(
        seen_not_serving,
        "health never said NOT_SERVING while the read slot was taken"
    );
    let mut back = false;
    for _ in 0..200 {
        if status(&mut health).await == ServingStatus::Serving as i32 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(back, "health stayed NOT_SERVING after the slot freed");
}

/// `prlimit` (util-linux), to start the binary with few file descriptors.
const PRLIMIT: Need = Need::Tool(Tool {
    program: "prlimit",
    args: &["--version"],
    install: "apt-get install util-linux",
    required_by: None,
});

fn main() -> std::process::ExitCode {
    harness::run(vec![
        trial!(async fifty_idle_event_streams_leave_rank_answering_and_still_write),
        trial!(async a_message_declared_larger_than_its_rpc_allows_is_refused_before_its_body),
        trial!(async a_write_without_the_token_is_refused_on_its_headers),
        trial!(async writes_beyond_their_budget_are_shed_reads_are_not_and_a_stalled_upload_times_out),
        trial!(async an_event_stream_silent_too_long_is_closed_with_a_clear_status),
        trial!(async a_socket_that_never_sends_a_preface_is_closed),
        trial!(a_public_listen_address_with_open_writes_refuses_to_start),
        trial!(async stalled_uploads_keep_the_binarys_memory_bounded)
            .multi_thread(2)
            .needs([Procfs]),
        trial!(async the_accept_loop_survives_running_out_of_descriptors).needs([PRLIMIT]),
        trial!(async health_reports_not_serving_while_rank_cannot_be_admitted).needs([Redis]),
    ])
}
