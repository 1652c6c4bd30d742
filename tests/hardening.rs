//! Deadlines, size limits, crash safety, a full store (disk, Redis memory)
//! and metrics, tried for real. (Overload and the transport limits:
//! `tests/transport.rs`.)

mod common;

use creator_boost::service::transport::tls::{Certificates, TlsFiles};

use common::*;
use creator_boost::proto;
use creator_boost::proto::EventKind::*;
use rand::RngExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

fn rank_request() -> proto::RankRequest {
    proto::RankRequest {
        viewer_id: 1,
        candidates: vec![candidate(1, 2, 1.0)],
        ..Default::default()
    }
}

async fn a_deadline_shorter_than_the_work_gives_deadline_exceeded() {
    let config = TEST_CONFIG.replace("max_events_per_batch = 1000", "max_events_per_batch = 50000");
    let server = spawn_with(Spawn {
        config: Some(config),
        ..Spawn::default()
    })
    .await;
    // 20,000 events for 20,000 distinct viewers take far longer than 20 ms to
    // decode, validate and commit. The call goes through a bare HTTP/2 client
    // that, unlike tonic's, does not give up on its own, so the status seen is
    // the server's.
    let events: Vec<proto::Event> = (0..20_000)
        .map(|i| event(&format!("d{i}"), Like, 1 + i, 5_000_000))
        .collect();
    let request = proto::RecordEventsRequest { events };
    let (status, message) = raw_grpc_call(
        server.addr,
        "/creatorboost.v1.CreatorBoost/RecordEvents",
        &request,
        "20m",
    )
    .await;
    assert_eq!(status, Code::DeadlineExceeded as i32, "{message}");
    assert!(message.contains("deadline"), "{message}");
    let text = server.metrics.render();
    let counted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("creator_boost_deadline_exceeded_total"))
        .collect();
    assert_eq!(counted, vec!["creator_boost_deadline_exceeded_total 1"], "{text}");
    // A generous deadline is fine.
    let (status, _) = raw_grpc_call(server.addr, "/creatorboost.v1.CreatorBoost/Rank", &rank_request(), "5S").await;
    assert_eq!(status, Code::Ok as i32);
}

/// One unary gRPC call over plain h2 with a `grpc-timeout` header; returns
/// (grpc-status, grpc-message) from the trailers (or headers).
async fn raw_grpc_call(
    addr: std::net::SocketAddr,
    path: &str,
    message: &impl prost::Message,
    timeout: &str,
) -> (i32, String) {
    raw_grpc_bytes(addr, path, message.encode_to_vec(), Some(timeout)).await
}

/// One unary call with an arbitrary payload (framed, not checked).
async fn raw_grpc_bytes(
    addr: std::net::SocketAddr,
    path: &str,
    payload: Vec<u8>,
    timeout: Option<&str>,
) -> (i32, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(timeout) = timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let request = request.body(()).expect("request");
    let (response, mut body) = client.send_request(request, false).expect("send");
    let mut frame = Vec::with_capacity(payload.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    body.send_data(bytes::Bytes::from(frame), true).expect("body");
    let response = response.await.expect("response");
    let read = |headers: &http::HeaderMap| {
        let status = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        status.map(|s| (s, message))
    };
    if let Some(found) = read(response.headers()) {
        return found;
    }
    let mut stream = response.into_body();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.expect("data");
        let _ = stream.flow_control().release_capacity(chunk.len());
    }
    let trailers = stream.trailers().await.expect("trailers").expect("some trailers");
    read(&trailers).expect("grpc-status")
}

async fn oversized_messages_get_a_clear_error() {
    let config = TEST_CONFIG.replace("[limits]", "[limits]\nmax_message_bytes = 1024");
    let server = spawn_with(Spawn {
        config: Some(config),
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    let big = proto::RankRequest {
        viewer_id: 1,
        candidates: (0..200).map(|i| candidate(i, i, 1.0)).collect(),
        ..Default::default()
    };
    let status = client.rank(big).await.expect_err("too large");
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert!(
        status.message().contains("too large") || status.message().contains("length"),
        "{}",
        status.message()
    );
    client.rank(rank_request()).await.expect("small one still fine");
}

async fn metrics_endpoint_reports_calls_cache_ingest_and_store() {
    let server = spawn_with(Spawn {
        metrics: true,
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    record(
        &mut client,
        vec![
            event("m1", Like, 1, 2),
            event("m1", Like, 1, 2),
            event("self", Like, 3, 3),
        ],
    )
    .await;
    client.rank(rank_request()).await.expect("rank");
    client.rank(rank_request()).await.expect("rank");
    let _ = client
        .rank(proto::RankRequest {
            variant: "nope".into(),
            ..rank_request()
        })
        .await;
    let text = scrape(server.metrics_addr.expect("metrics")).await;
    for needle in [
        "creator_boost_requests_total{method=\"Rank\",code=\"OK\"} 2",
        "creator_boost_requests_total{method=\"Rank\",code=\"INVALID_ARGUMENT\"} 1",
        "creator_boost_requests_total{method=\"RecordEvents\",code=\"OK\"} 1",
        "creator_boost_request_duration_seconds_count{method=\"Rank\"} 3",
        "creator_boost_ingest_accepted_total 1",
        "creator_boost_ingest_duplicates_total 1",
        "creator_boost_ingest_rejected_total{reason=\"self_interaction\"} 1",
        "creator_boost_cache_hit_ratio",
        "creator_boost_store_commit_duration_seconds_count 1",
        "creator_boost_degraded_answers_total 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

/// A scraper that sends its request head in two TCP writes, a pause
/// between them, still gets the metrics (and a wrong path a 404).
async fn metrics_answer_a_request_split_across_writes() {
    let server = spawn_with(Spawn {
        metrics: true,
        ..Spawn::default()
    })
    .await;
    let addr = server.metrics_addr.expect("metrics");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(b"GET /metr").await.expect("write");
    socket.flush().await.expect("flush");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    socket
        .write_all(b"ics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    socket.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("creator_boost_requests_total{method=\"Rank\",code=\"OK\"} 0"),
        "{out}"
    );
    let (status, _) = http_get(addr, "/nope").await.expect("get");
    assert!(status.contains(" 404 "), "{status}");
}

/// `kill -9` of the real binary in the middle of a StreamEvents load, then a
/// restart on the same data dir: every acknowledged event is there, once.
async fn kill_9_during_stream_events_loses_no_acked_event() {
    let temp = tempfile::tempdir().expect("temp");
    let data = temp.path().join("data");
    let (mut child, url) = start_binary(&data, &[]).await;
    let channel = tonic::transport::Channel::from_shared(url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut client = proto::creator_boost_client::CreatorBoostClient::new(channel);

    const CREATOR: u64 = 777;
    let batches: Vec<Vec<proto::Event>> = (0..400)
        .map(|b| {
            (0..250)
                .map(|i| event(&format!("k{b}-{i}"), Like, 1_000_000 + (b * 250 + i) as u64, CREATOR))
                .collect()
        })
        .collect();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut responses = client
        .stream_events(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .expect("stream")
        .into_inner();
    let to_send = batches.clone();
    let feeder = tokio::spawn(async move {
        for events in to_send {
            if sender.send(proto::RecordEventsRequest { events }).await.is_err() {
                break;
            }
        }
    });
    let mut acked_batches = 0usize;
    let mut acked_events = 0u64;
    while let Ok(Some(response)) = responses.message().await {
        acked_batches += 1;
        acked_events += u64::from(response.accepted);
        if acked_batches == 20 {
            child.kill().expect("kill -9");
        }
    }
    feeder.abort();
    let _ = child.wait();
    assert!(
        acked_batches >= 20 && acked_batches < batches.len(),
        "killed mid-load: {acked_batches} acks"
    );
    assert_eq!(acked_events, acked_batches as u64 * 250);

    let (mut child, url) = start_binary(&data, &[]).await;
    let channel = tonic::transport::Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut client = proto::creator_boost_client::CreatorBoostClient::new(channel);
    let evidence = creator_score(&client, CREATOR).await.evidence;
    assert!(
        evidence >= acked_events,
        "lost acked events: {evidence} < {acked_events}"
    );
    // Replaying every acknowledged batch changes nothing: each was stored once.
    for events in &batches[..acked_batches] {
        let response = record(&mut client, events.clone()).await;
        assert_eq!((response.accepted, response.duplicates), (0, 250));
    }
    // Sending everything again leaves exactly one count per distinct event.
    for events in &batches {
        record(&mut client, events.clone()).await;
    }
    assert_eq!(creator_score(&client, CREATOR).await.evidence, 400 * 250);
    child.kill().expect("stop");
    let _ = child.wait();
}

async fn tls_round_trip_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().expect("temp");
    let (cert, key, cert_pem) = write_certificate(dir.path(), "server");
    let certificates = Certificates::load(TlsFiles {
        cert,
        key,
        client_ca: None,
    })
    .expect("certificates");
    let server = spawn_with(Spawn {
        tls: Some(certificates),
        write_token: Some("t0ken".into()),
        ..Spawn::default()
    })
    .await;

    let channel = tls_channel(server.addr, &cert_pem).await.expect("tls connect");
    let mut client = proto::creator_boost_client::CreatorBoostClient::new(channel);
    let mut request = tonic::Request::new(proto::RecordEventsRequest {
        events: vec![event("tls-1", Like, 1, 2)],
    });
    request
        .metadata_mut()
        .insert("authorization", "Bearer t0ken".parse().expect("header"));
    assert_eq!(
        client
            .record_events(request)
            .await
            .expect("write over TLS")
            .into_inner()
            .accepted,
        1
    );
    client.rank(rank_request()).await.expect("read over TLS");

    // A plaintext client gets nowhere.
    let plain = tonic::transport::Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut plain = proto::creator_boost_client::CreatorBoostClient::new(channel);
        assert!(plain.rank(rank_request()).await.is_err());
    }
}

/// A small tmpfs mounted for one test (root), with a filler file that a
/// test deletes to give space back; unmounted when dropped.
struct SmallVolume {
    path: std::path::PathBuf,
    filler: std::path::PathBuf,
    _temp: tempfile::TempDir,
}

impl SmallVolume {
    /// A tmpfs of `size_mib`, `filler_mib` of it taken by a file.
    fn mount(size_mib: u32, filler_mib: usize) -> SmallVolume {
        let temp = tempfile::tempdir().expect("temp");
        let path = temp.path().join("small");
        std::fs::create_dir_all(&path).expect("dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(mounted, "mount a tmpfs at {}", path.display());
        let filler = path.join("filler");
        std::fs::write(&filler, vec![0xA5u8; filler_mib << 20]).expect("filler");
        SmallVolume {
            path,
            filler,
            _temp: temp,
        }
    }

    /// Gives the filler's space back.
    fn free_space(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler");
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// 500 views of creator 9 by new viewers, with ids unique to `batch`.
fn filling_batch(batch: u64) -> Vec<proto::Event> {
    (0..500)
        .map(|i| {
            let mut e = event(
                &format!("full-{batch}-{i}-{}", "x".repeat(40)),
                View,
                1 + batch * 500 + i,
                9,
            );
            e.amount = 0.5;
            e
        })
        .collect()
}

/// Sends filling batches until one is refused: the events acknowledged
/// before, the refused batch's number and the refusal.
async fn fill_until_refused(
    client: &mut proto::creator_boost_client::CreatorBoostClient<tonic::transport::Channel>,
) -> (u64, u64, tonic::Status) {
    let mut accepted = 0u64;
    for batch in 0..4_000u64 {
        let request = proto::RecordEventsRequest {
            events: filling_batch(batch),
        };
        match client.record_events(request).await {
            Ok(response) => accepted += u64::from(response.into_inner().accepted),
            Err(status) => return (accepted, batch, status),
        }
    }
    panic!("the volume never filled up ({accepted} events accepted)");
}

/// Sends `batch` again until it is acknowledged: how long that took and
/// what it acknowledged (accepted, duplicates).
async fn resend_until_acknowledged(
    client: &mut proto::creator_boost_client::CreatorBoostClient<tonic::transport::Channel>,
    batch: u64,
) -> (Duration, u32, u32) {
    let started = std::time::Instant::now();
    let mut client = client.clone();
    eventually(
        "the refused batch to be acknowledged once space returned",
        Duration::from_secs(30),
        async || {
            let request = proto::RecordEventsRequest {
                events: filling_batch(batch),
            };
            let response = client.record_events(request).await.ok()?.into_inner();
            Some((started.elapsed(), response.accepted, response.duplicates))
        },
    )
    .await
}

/// A gauge's value in `/metrics` text, by its whole name and labels.
fn gauge(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until the Writes health service reports `want`, and the gauge of
/// `cause` the matching value.
async fn writes_health_becomes(server: &TestServer, want: ServingStatus, cause: &str) -> String {
    let series = format!("creator_boost_writes_blocked{{cause=\"{cause}\"}}");
    let blocked = f64::from(want != ServingStatus::Serving);
    let url = server.url();
    eventually(
        &format!("writes health {want:?}"),
        Duration::from_secs(10),
        async || {
            let status = health_check(&url, "creatorboost.v1.Writes", Duration::from_secs(2))
                .await
                .ok()?;
            let text = server.metrics.render();
            (status == want && gauge(&text, &series) == Some(blocked)).then_some(text)
        },
    )
    .await
}

/// A server whose data dir is on `volume`, with a floor of `min_free_mb`.
async fn spawn_on_volume(volume: &SmallVolume, min_free_mb: u64) -> TestServer {
    spawn_with(Spawn {
        config: Some(format!("{TEST_CONFIG}\n[embedded]\nmin_free_mb = {min_free_mb}\n")),
        data_dir: Some(volume.path.join("data")),
        ..Spawn::default()
    })
    .await
}

/// Reads answer while writes are refused: creator 9's evidence is what was
/// acknowledged, and a Rank answers.
async fn reads_go_on(
    client: &mut proto::creator_boost_client::CreatorBoostClient<tonic::transport::Channel>,
    accepted: u64,
    during: &str,
) {
    assert_eq!(creator_score(client, 9).await.evidence, accepted);
    let rank = client
        .rank(proto::RankRequest {
            viewer_id: 1,
            candidates: vec![candidate(1, 9, 1.0)],
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("rank {during}: {status:?}"))
        .into_inner();
    assert_eq!(rank.results.len(), 1);
}

/// Below the free-space floor writes are refused at once with
/// RESOURCE_EXHAUSTED (why, and what to do), reads go on, health and a gauge
/// say so, and writes resume by themselves when space returns, with every
/// acknowledged event counted once.
async fn below_the_disk_floor_writes_are_refused_at_once_and_resume_by_themselves() {
    let volume = SmallVolume::mount(40, 24);
    let server = spawn_on_volume(&volume, 8).await;
    let mut client = server.client().await;
    let (accepted, refused_batch, status) = fill_until_refused(&mut client).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    for words in [
        "below its floor",
        "nothing from this batch was acknowledged",
        "resume by themselves",
    ] {
        assert!(status.message().contains(words), "{}", status.message());
    }
    assert!(accepted > 0);
    // Refused at once, before the writer: time a second refusal.
    let started = std::time::Instant::now();
    let again = client
        .record_events(proto::RecordEventsRequest {
            events: filling_batch(refused_batch),
        })
        .await
        .expect_err("still below the floor");
    let refusal_took = started.elapsed();
    assert_eq!(again.code(), Code::ResourceExhausted);
    let text = writes_health_becomes(&server, ServingStatus::NotServing, "disk_floor").await;
    let free = gauge(&text, "creator_boost_store_free_bytes").expect("free bytes");
    let floor = gauge(&text, "creator_boost_store_free_floor_bytes").expect("floor");
    assert!(
        free < floor && floor == f64::from(8u32 << 20),
        "free {free}, floor {floor}"
    );
    let store = health_check(&server.url(), "creatorboost.v1.Store", Duration::from_secs(2)).await;
    assert_eq!(store, Ok(ServingStatus::Serving), "reads are unaffected");
    reads_go_on(&mut client, accepted, "below the floor").await;

    volume.free_space();
    let (recovered_in, resent, duplicates) = resend_until_acknowledged(&mut client, refused_batch).await;
    assert_eq!((resent, duplicates), (500, 0), "nothing of a refused batch was written");
    writes_health_becomes(&server, ServingStatus::Serving, "disk_floor").await;
    let evidence = creator_score(&client, 9).await.evidence;
    assert_eq!(evidence, accepted + 500, "every acknowledged event counted once");
    eprintln!(
        "disk floor: {accepted} events acknowledged before the floor; refusal {:?} (RESOURCE_EXHAUSTED), \
         second refusal took {refusal_took:?}; free {:.3} MiB under a floor of {:.3} MiB; writes health \
         NOT_SERVING, store health SERVING, reads answered; space freed -> the refused batch acknowledged \
         after {recovered_in:?}; evidence {evidence} = {accepted} + 500",
        status.message(),
        free / f64::from(1u32 << 20),
        floor / f64::from(1u32 << 20),
    );
}

/// With the floor off, a full disk fails writes with UNAVAILABLE and latches
/// an I/O error in the database; once space returns the store is closed and
/// reopened by itself (no restart), and every acknowledged event is there,
/// also after a restart.
async fn a_full_disk_without_a_floor_reopens_the_store_once_space_returns() {
    let volume = SmallVolume::mount(40, 24);
    let server = spawn_on_volume(&volume, 0).await;
    let mut client = server.client().await;
    let (accepted, refused_batch, status) = fill_until_refused(&mut client).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("nothing from this batch was acknowledged"),
        "{}",
        status.message()
    );
    assert!(accepted > 0);
    writes_health_becomes(&server, ServingStatus::NotServing, "store_io_error").await;
    // From the cache and the file as it was.
    reads_go_on(&mut client, accepted, "with a full disk").await;

    volume.free_space();
    let (recovered_in, resent, duplicates) = resend_until_acknowledged(&mut client, refused_batch).await;
    assert_eq!(duplicates, 0, "a failed commit wrote nothing");
    writes_health_becomes(&server, ServingStatus::Serving, "store_io_error").await;
    let evidence = creator_score(&client, 9).await.evidence;
    assert_eq!(evidence, accepted + u64::from(resent));
    let server = server.restart().await;
    let after_restart = creator_score(&server.client().await, 9).await.evidence;
    assert_eq!(
        after_restart, evidence,
        "acknowledged events are durable across a restart"
    );
    eprintln!(
        "full disk, no floor: {accepted} events acknowledged before the disk filled; refusal {:?}; writes \
         health NOT_SERVING with store_io_error = 1, reads answered; space freed -> store reopened and the \
         refused batch acknowledged after {recovered_in:?}; evidence {evidence} before and {after_restart} \
         after a restart",
        status.code(),
    );
}

/// As many relations as a viewer keeps (`ingest.max_relations_per_viewer`).
const HEAVY_RELATIONS: u64 = 1_000;
const HEAVY_VIEWERS: u64 = 400;

/// The real binary on `data` with `flags`, and a client to it.
async fn binary_with_client(
    data: &std::path::Path,
    flags: &[&str],
) -> (
    std::process::Child,
    proto::creator_boost_client::CreatorBoostClient<tonic::transport::Channel>,
) {
    let flags: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
    let (child, url) = start_binary(data, &flags).await;
    let channel = tonic::transport::Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    (child, proto::creator_boost_client::CreatorBoostClient::new(channel))
}

/// A Rank of `viewer` over ten of the heavy viewers' creators.
fn heavy_rank(viewer: u64) -> proto::RankRequest {
    proto::RankRequest {
        viewer_id: viewer,
        candidates: (0..10).map(|i| candidate(i, 1_000_001 + i * 7, 1.0)).collect(),
        ..Default::default()
    }
}

/// Heavy viewers read by Rank into the viewer cache of a fresh process on
/// `data` whose budget is `viewers_mb`: RSS growth (MiB) over two passes of
/// reads, from after a first Rank of a light viewer.
async fn rss_growth_reading_heavy_viewers(data: &std::path::Path, viewers_mb: &str) -> f64 {
    let (mut child, mut client) =
        binary_with_client(data, &["--cache-viewers-mb", viewers_mb, "--cache-embedded-mb", "8"]).await;
    // What the first Rank allocates once (the model's buffers) is in the baseline.
    client.rank(heavy_rank(HEAVY_VIEWERS + 1)).await.expect("rank");
    let before = rss_kib(child.id()).expect("VmRSS");
    for _pass in 0..2 {
        for viewer in 1..=HEAVY_VIEWERS {
            client.rank(heavy_rank(viewer)).await.expect("rank");
        }
    }
    let after = rss_kib(child.id()).expect("VmRSS");
    let _ = child.kill();
    let _ = child.wait();
    (after as f64 - before as f64) / 1024.0
}

/// The viewer cache is bounded in bytes: 400 viewers of 1,000 relations
/// (about 55 MiB of records) read twice through an 8 MiB budget grow RSS by
/// at most the budget, plus redb's page cache (8 MiB here, filled by the
/// same reads), plus 12 MiB of slack for the allocator (records decoded on
/// the blocking pool's threads are freed on others, and glibc keeps some in
/// each thread's arena: 17-24 MiB of growth was seen at 200 viewers);
/// through a 1 GiB budget the same reads grow it by the records' size and
/// the page cache, so the bound is the budget's doing. Each is a fresh
/// process on the same store, so the ingest's memory is in neither.
async fn heavy_viewers_stay_within_the_viewer_cache_byte_budget() {
    let data = tempfile::tempdir().expect("temp");
    {
        let (mut child, mut client) = binary_with_client(data.path(), &[]).await;
        for viewer in 1..=HEAVY_VIEWERS {
            let events = (1..=HEAVY_RELATIONS)
                .map(|creator| event(&format!("heavy-{viewer}-{creator}"), View, viewer, 1_000_000 + creator))
                .collect();
            client
                .record_events(proto::RecordEventsRequest { events })
                .await
                .expect("ingest");
        }
        // SIGTERM: a clean close, so the next process opens the file at once.
        let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
    let bounded = rss_growth_reading_heavy_viewers(data.path(), "8").await;
    let unbounded = rss_growth_reading_heavy_viewers(data.path(), "1024").await;
    eprintln!(
        "heavy viewers: 400 x 1,000 relations (~55 MiB of records) read twice by a fresh process; RSS growth \
         {bounded:.1} MiB with an 8 MiB viewer budget, {unbounded:.1} MiB with 1 GiB"
    );
    assert!(
        bounded <= 8.0 + 8.0 + 12.0,
        "RSS grew {bounded:.1} MiB with an 8 MiB budget"
    );
    assert!(
        unbounded >= 50.0,
        "the reads cache ~55 MiB without a tight budget: {unbounded:.1} MiB"
    );
}

/// Redis at `maxmemory` with `noeviction` in the middle of an ingest: the
/// writes that meet it fail with UNAVAILABLE saying the store is full and
/// nothing was acknowledged, Rank and GetCreatorScores keep answering;
/// once `maxmemory` is raised, resending the failed batches completes them
/// (what a failed batch had applied comes back as duplicates) and every
/// creator's evidence equals the events sent to it: none lost, none twice.
async fn redis_out_of_memory_fails_writes_clearly_reads_answer_and_resends_complete() {
    const BATCH: u64 = 1_000;
    const CREATORS: u64 = 20;
    const FIRST_CREATOR: u64 = 5_000_000;
    let redis = common::redis::RedisProcess::start();
    let cli = |args: &[&str]| -> String {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let used_memory = || -> u64 {
        cli(&["INFO", "memory"])
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:")?.trim().parse().ok())
            .expect("used_memory")
    };
    let server = spawn_on(Backend::Url(redis.url())).await;
    let mut client = server.client().await;
    // Event n: a viewer of its own, one of twenty creators, a long id (the
    // dedupe record is most of what an event costs Redis).
    let batch_events = |batch: u64| -> Vec<proto::Event> {
        (batch * BATCH..(batch + 1) * BATCH)
            .map(|n| {
                let kind = [View, Like, Share][(n % 3) as usize];
                event(
                    &format!("oom-{n}-{}", "x".repeat(40)),
                    kind,
                    1 + n,
                    FIRST_CREATOR + n % CREATORS,
                )
            })
            .collect()
    };
    let mut sent_to = vec![0_u64; CREATORS as usize];
    let count = |events: &[proto::Event], sent_to: &mut [u64]| {
        for event in events {
            sent_to[(event.creator_id - FIRST_CREATOR) as usize] += 1;
        }
    };
    let start_memory = used_memory();
    let mut accepted = 0_u64;
    const WARM_UP: u64 = 4;
    for batch in 0..WARM_UP {
        let events = batch_events(batch);
        count(&events, &mut sent_to);
        let response = client
            .record_events(proto::RecordEventsRequest { events })
            .await
            .expect("warm-up batch");
        accepted += u64::from(response.into_inner().accepted);
    }
    let warm_memory = used_memory();
    let per_batch = (warm_memory.saturating_sub(start_memory) / WARM_UP).max(1);
    // Three and a half batches more: the limit falls inside a batch.
    let maxmemory = warm_memory + 3 * per_batch + per_batch / 2;
    cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    assert_eq!(cli(&["CONFIG", "SET", "maxmemory", &maxmemory.to_string()]), "OK");

    let mut failed = Vec::new();
    let mut first_failure = None;
    let mut accepted_before_oom = 0_u64;
    let mut batch = WARM_UP;
    while failed.len() < 4 {
        assert!(batch < 200, "Redis never ran out of memory (maxmemory {maxmemory})");
        let events = batch_events(batch);
        count(&events, &mut sent_to);
        match client.record_events(proto::RecordEventsRequest { events }).await {
            Ok(response) if failed.is_empty() => {
                accepted_before_oom += u64::from(response.into_inner().accepted);
            }
            Ok(response) => panic!("batch {batch} accepted after an OOM: {:?}", response.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                let message = status.message();
                assert!(
                    message.contains("store full (out of memory)")
                        && message.contains("nothing from this batch was acknowledged"),
                    "{message}"
                );
                first_failure.get_or_insert_with(|| message.to_owned());
                failed.push(batch);
            }
        }
        batch += 1;
    }
    let sent = batch * BATCH;
    let oom_memory = used_memory();
    // Reads answer while writes fail.
    let creators: Vec<u64> = (0..CREATORS).map(|c| FIRST_CREATOR + c).collect();
    let rank = client
        .rank(proto::RankRequest {
            viewer_id: 1,
            candidates: creators.iter().map(|c| candidate(*c, *c, 1.0)).collect(),
            ..Default::default()
        })
        .await
        .expect("Rank at maxmemory");
    assert_eq!(rank.into_inner().results.len(), CREATORS as usize);
    let scores = client
        .get_creator_scores(proto::GetCreatorScoresRequest {
            creator_ids: creators.clone(),
            variant: String::new(),
        })
        .await
        .expect("GetCreatorScores at maxmemory")
        .into_inner();
    let evidence_during: u64 = scores.scores.iter().map(|score| score.evidence).sum();
    let rendered = server.metrics.render();
    let store_errors = common::kafka::metric(&rendered, "creator_boost_store_errors_total");
    // The probe reads: Redis is up, only full.
    let store_up = common::kafka::metric(&rendered, "creator_boost_store_up");
    assert_eq!(store_up, 1.0, "the store probe reads, and reads answer");

    assert_eq!(cli(&["CONFIG", "SET", "maxmemory", "0"]), "OK");
    let (mut resent_accepted, mut resent_duplicates) = (0_u64, 0_u64);
    for batch in &failed {
        let response = client
            .record_events(proto::RecordEventsRequest {
                events: batch_events(*batch),
            })
            .await
            .expect("a resent batch once Redis has room")
            .into_inner();
        assert_eq!(
            u64::from(response.accepted + response.duplicates),
            BATCH,
            "{response:?}"
        );
        resent_accepted += u64::from(response.accepted);
        resent_duplicates += u64::from(response.duplicates);
    }
    let scores = client
        .get_creator_scores(proto::GetCreatorScoresRequest {
            creator_ids: creators.clone(),
            variant: String::new(),
        })
        .await
        .expect("scores after the resend")
        .into_inner();
    let evidence: Vec<u64> = scores.scores.iter().map(|score| score.evidence).collect();
    eprintln!(
        "redis out of memory: {sent} events in {batch} batches of {BATCH} ({WARM_UP} before the limit); used_memory \
         {start_memory} B at start, {warm_memory} after the warm-up (+{per_batch} per batch), maxmemory set to \
         {maxmemory}, {oom_memory} when writes failed; {accepted_before_oom} more accepted before the first \
         refusal, batches {failed:?} refused ({:?}); while refused: Rank and GetCreatorScores answered (evidence \
         then {evidence_during}), store errors counted {store_errors}, store up {store_up}; after maxmemory 0 the resend of the \
         {} failed batches: accepted {resent_accepted}, duplicates {resent_duplicates} (applied before the \
         refusal); evidence per creator {evidence:?}, sent {sent_to:?}",
        first_failure.as_deref().unwrap_or_default(),
        failed.len(),
    );
    assert!(accepted_before_oom > 0, "the limit met mid-stream, not at once");
    // What a refused batch had applied is a duplicate in its resend.
    assert_eq!(
        accepted + accepted_before_oom + resent_accepted + resent_duplicates,
        sent,
        "every event applied once"
    );
    assert_eq!(evidence, sent_to, "evidence per creator = events sent to it");
}

async fn malformed_protobuf_gets_an_error_and_the_server_goes_on() {
    let server = spawn_server().await;
    let mut rng = creator_boost::offline::generate::seeded_rng(5);
    for round in 0..200 {
        let length = rng.random_range(1..=300);
        let payload: Vec<u8> = (0..length).map(|_| rng.random::<u8>()).collect();
        let path = if round % 2 == 0 {
            "/creatorboost.v1.CreatorBoost/Rank"
        } else {
            "/creatorboost.v1.CreatorBoost/RecordEvents"
        };
        let (status, _) = raw_grpc_bytes(server.addr, path, payload, None).await;
        // Garbage may happen to decode as a (meaningless) valid message; the
        // server answers either way and never falls over.
        assert!((0..=16).contains(&status), "status {status}");
    }
    let mut client = server.client().await;
    client.rank(rank_request()).await.expect("still serving");
}

async fn shutdown_drains_calls_in_flight() {
    let config = TEST_CONFIG.replace("max_events_per_batch = 1000", "max_events_per_batch = 50000");
    let mut server = spawn_with(Spawn {
        config: Some(config),
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    // A call that takes a while (20,000 events to validate and commit) ...
    let events: Vec<proto::Event> = (0..20_000)
        .map(|i| event(&format!("s{i}"), Like, 1 + i, 6_000_000))
        .collect();
    let call = tokio::spawn(async move { client.record_events(proto::RecordEventsRequest { events }).await });
    // ... is in flight when shutdown begins.
    while server.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    server.begin_shutdown();
    let response = call.await.expect("task").expect("the call in flight completes");
    assert_eq!(response.into_inner().accepted, 20_000);
    server.stop().await;
}

fn main() -> std::process::ExitCode {
    harness::run(vec![
        trial!(async a_deadline_shorter_than_the_work_gives_deadline_exceeded),
        trial!(async oversized_messages_get_a_clear_error),
        trial!(async metrics_endpoint_reports_calls_cache_ingest_and_store),
        trial!(async metrics_answer_a_request_split_across_writes),
        trial!(async kill_9_during_stream_events_loses_no_acked_event),
        trial!(async tls_round_trip_and_plaintext_is_refused),
        trial!(async below_the_disk_floor_writes_are_refused_at_once_and_resume_by_themselves)
            .needs([harness::Need::Tmpfs]),
        trial!(async a_full_disk_without_a_floor_reopens_the_store_once_space_returns).needs([harness::Need::Tmpfs]),
        trial!(async heavy_viewers_stay_within_the_viewer_cache_byte_budget).needs([harness::Need::Procfs]),
        trial!(async redis_out_of_memory_fails_writes_clearly_reads_answer_and_resends_complete)
            .needs([harness::Need::Redis]),
        trial!(async malformed_protobuf_gets_an_error_and_the_server_goes_on),
        trial!(async shutdown_drains_calls_in_flight).multi_thread(2),
    ])
}
