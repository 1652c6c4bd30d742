//! Hostile and careless clients, for `load/abuse.sh`: each scenario runs
//! against a server at ADDR (host:port) and prints one result line.
//!
//! ```text
//! abuse stalled-uploads ADDR CONNECTIONS SEND_KIB DECLARED_KIB HOLD_SECS [TOKEN]
//! abuse non-reader      ADDR CANDIDATES HOLD_SECS
//! abuse idle-streams    ADDR STREAMS
//! abuse connections     ADDR COUNT HOLD_SECS
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use creator_boost::proto;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use prost::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let addr: SocketAddr = arg(1).parse()?;
    match arg(0).as_str() {
        "stalled-uploads" => {
            let token = args.get(6).cloned();
            stalled_uploads(
                addr,
                arg(2).parse()?,
                arg(3).parse()?,
                arg(4).parse()?,
                arg(5).parse()?,
                token,
            )
            .await
        }
        "non-reader" => non_reader(addr, arg(2).parse()?, arg(3).parse()?).await,
        "idle-streams" => idle_streams(addr, arg(2).parse()?).await,
        "connections" => connections(addr, arg(2).parse()?, arg(3).parse()?).await,
        other => Err(format!("unknown scenario `{other}`").into()),
    }
}

async fn h2_connect(addr: SocketAddr) -> Result<h2::client::SendRequest<Bytes>, Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(65_535)
        .handshake(tcp)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn grpc_request(addr: SocketAddr, path: &str, token: Option<&str>) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(()).unwrap_or_default()
}

/// CONNECTIONS connections each start a RecordEvents whose message declares
/// DECLARED_KIB, send SEND_KIB of it (as far as flow control lets them) and
/// stall for HOLD_SECS.
async fn stalled_uploads(
    addr: SocketAddr,
    connections: usize,
    send_kib: usize,
    declared_kib: usize,
    hold_secs: u64,
    token: Option<String>,
) -> Result<(), Error> {
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = h2_connect(addr).await?;
            client = client.ready().await?;
            let request = grpc_request(addr, "/creatorboost.v1.CreatorBoost/RecordEvents", token.as_deref());
            let (response, mut body) = client.send_request(request, false)?;
            let mut header = vec![0u8];
            header.extend_from_slice(&((declared_kib << 10) as u32).to_be_bytes());
            body.send_data(Bytes::from(header), false)?;
            let chunk = Bytes::from(vec![0x0au8; 64 * 1024]);
            let mut sent = 0usize;
            let give_up = tokio::time::sleep(Duration::from_secs(hold_secs));
            tokio::pin!(give_up);
            let mut response = std::pin::pin!(response);
            let mut answer = None;
            while sent < send_kib << 10 {
                body.reserve_capacity(chunk.len());
                tokio::select! {
                    capacity = std::future::poll_fn(|cx| body.poll_capacity(cx)) => {
                        match capacity {
                            Some(Ok(n)) if n > 0 => {
                                let n = n.min(chunk.len()).min((send_kib << 10) - sent);
                                body.send_data(chunk.slice(..n), false)?;
                                sent += n;
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        }
                    }
                    r = &mut response => { answer = Some(r); break; }
                    () = &mut give_up => break,
                }
            }
            if answer.is_none() {
                tokio::select! {
                    r = &mut response => answer = Some(r),
                    () = &mut give_up => {}
                }
            }
            let outcome = match answer {
                None => "stalled (no answer)".to_owned(),
                Some(Ok(r)) => format!(
                    "answered: grpc-status {}",
                    r.headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("(in trailers)")
                ),
                Some(Err(e)) => format!("reset: {e}"),
            };
            // Keep the connection open until the end of the hold.
            give_up.await;
            drop(body);
            Ok::<_, Error>((sent, outcome))
        }));
    }
    let mut total = 0;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        match task.await? {
            Ok((sent, outcome)) => {
                total += sent;
                *outcomes.entry(outcome).or_default() += 1;
            }
            Err(e) => *outcomes.entry(format!("error: {e}")).or_default() += 1,
        }
    }
    println!("stalled-uploads sent {} MiB in all; outcomes {outcomes:?}", total >> 20);
    Ok(())
}

/// Sends Rank requests with CANDIDATES candidates and `explain` on one
/// connection as fast as the server lets it, never reading an answer, for
/// HOLD_SECS.
async fn non_reader(addr: SocketAddr, candidates: u64, hold_secs: u64) -> Result<(), Error> {
    let request = proto::RankRequest {
        viewer_id: 1,
        candidates: (0..candidates)
            .map(|i| proto::Candidate {
                item_id: i,
                creator_id: 1 + i % 500,
                base_score: 1.0,
            })
            .collect(),
        explain: true,
        ..Default::default()
    };
    let payload = request.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let frame = Bytes::from(frame);
    let mut client = h2_connect(addr).await?;
    let mut sent = 0u64;
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(hold_secs);
    while tokio::time::Instant::now() < deadline {
        let ready = tokio::time::timeout_at(deadline, client.clone().ready()).await;
        let Ok(Ok(ready)) = ready else { break };
        client = ready;
        let Ok((response, mut body)) =
            client.send_request(grpc_request(addr, "/creatorboost.v1.CreatorBoost/Rank", None), false)
        else {
            break;
        };
        if body.send_data(frame.clone(), true).is_err() {
            break;
        }
        held.push(response);
        sent += 1;
        tokio::task::yield_now().await;
    }
    // h2 queues requests beyond the server's MAX_CONCURRENT_STREAMS in this
    // client, so `sent` counts requests made, not requests the server took.
    println!(
        "non-reader made {sent} Rank requests ({} bytes each; beyond the server's stream limit they queue in this \
         client), read none",
        frame.len()
    );
    Ok(())
}

/// Opens STREAMS StreamEvents streams that never send, then calls Rank.
async fn idle_streams(addr: SocketAddr, streams: usize) -> Result<(), Error> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut held = Vec::new();
    for _ in 0..streams {
        let mut client = CreatorBoostClient::new(channel.clone());
        let (keep, requests) = tokio::sync::mpsc::channel::<proto::RecordEventsRequest>(1);
        let opened = client
            .stream_events(tokio_stream::wrappers::ReceiverStream::new(requests))
            .await;
        held.push((keep, opened.is_ok()));
    }
    let open = held.iter().filter(|(_, ok)| *ok).count();
    let mut client = CreatorBoostClient::new(channel);
    let mut ok = 0;
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..20u64 {
        let request = proto::RankRequest {
            viewer_id: 1,
            candidates: vec![proto::Candidate {
                item_id: i,
                creator_id: 2,
                base_score: 1.0,
            }],
            ..Default::default()
        };
        match client.rank(request).await {
            Ok(_) => ok += 1,
            Err(status) => *codes.entry(format!("{:?}", status.code())).or_default() += 1,
        }
    }
    println!("idle-streams {open} streams open; Rank: {ok}/20 OK, failures {codes:?}");
    Ok(())
}

/// Opens COUNT raw TCP connections that never send a byte and holds them.
async fn connections(addr: SocketAddr, count: usize, hold_secs: u64) -> Result<(), Error> {
    let mut held = Vec::new();
    for _ in 0..count {
        // A server that stops accepting fills its backlog; then connects hang.
        match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    println!("connections opened {}", held.len());
    tokio::time::sleep(Duration::from_secs(hold_secs)).await;
    Ok(())
}
