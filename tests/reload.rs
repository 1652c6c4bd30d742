//! Reload through a real SIGHUP to the real binary: config, TLS files, and
//! the report of settings that need a restart.

mod common;

use std::time::Duration;

use common::{eventually, free_port, scrape, start_binary, tls_channel, write_certificate};
use creator_boost::proto;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn model_version(client: &mut CreatorBoostClient<Channel>, variant: &str) -> Result<String, tonic::Status> {
    let request = proto::GetCreatorScoresRequest {
        creator_ids: vec![1],
        variant: variant.into(),
    };
    Ok(client.get_creator_scores(request).await?.into_inner().model_version)
}

fn hangup(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The real binary with `extra` flags and a `/metrics` endpoint on a free
/// loopback port: the child, its gRPC URL and the metrics address.
async fn start_with_metrics(
    data: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> (std::process::Child, String, std::net::SocketAddr) {
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let metrics_flag = metrics_addr.to_string();
    let mut flags = extra.to_vec();
    flags.extend([
        std::ffi::OsStr::new("--metrics-listen"),
        std::ffi::OsStr::new(&metrics_flag),
    ]);
    let (child, url) = start_binary(data, &flags).await;
    (child, url, metrics_addr)
}

#[tokio::test]
async fn sighup_applies_a_good_config_and_refuses_a_bad_one() {
    let temp = tempfile::tempdir().expect("temp");
    let config = temp.path().join("creator-boost.toml");
    std::fs::write(&config, "[model]\nnon_fan_factor = 0.3\n").expect("write");
    let (mut child, url, metrics_addr) =
        start_with_metrics(&temp.path().join("data"), &["--config".as_ref(), config.as_os_str()]).await;
    let channel = Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut client = CreatorBoostClient::new(channel);
    let first = model_version(&mut client, "").await.expect("version");
    assert!(
        model_version(&mut client, "fresh").await.is_err(),
        "variant not configured yet"
    );

    // A good config: new parameters and a new variant, applied without a restart.
    std::fs::write(
        &config,
        "[model]\nnon_fan_factor = 0.5\n[variants.fresh]\nintimacy_gain = 0.0\n",
    )
    .expect("write");
    hangup(&child);
    let second = eventually("the reload to apply", Duration::from_secs(5), async || {
        let version = model_version(&mut client, "").await.expect("version");
        (version != first).then_some(version)
    })
    .await;
    model_version(&mut client, "fresh")
        .await
        .expect("the new variant answers");

    // A bad config is refused: the parameters in force stay, the server lives on.
    std::fs::write(&config, "[model]\nboost_min = 7\n").expect("write");
    hangup(&child);
    wait_for_metric(metrics_addr, "creator_boost_reloads_total{outcome=\"refused\"} 1\n").await;
    assert_eq!(model_version(&mut client, "").await.expect("still serving"), second);
    model_version(&mut client, "fresh").await.expect("old variants kept");
    assert!(child.try_wait().expect("status").is_none(), "server exited");

    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `/metrics` at `addr` until it contains `needle`, for at most 10 s.
async fn wait_for_metric(addr: std::net::SocketAddr, needle: &str) -> String {
    eventually(
        &format!("`{needle}` in /metrics"),
        Duration::from_secs(10),
        async || {
            let text = scrape(addr).await;
            text.contains(needle).then_some(text)
        },
    )
    .await
}

/// Whether a new TLS connection that trusts only `ca_pem` is served.
async fn served_to(addr: std::net::SocketAddr, ca_pem: &str) -> bool {
    let Ok(channel) = tls_channel(addr, ca_pem).await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .is_ok()
}

#[tokio::test]
async fn sighup_rotates_the_certificate_and_keeps_it_when_the_new_pair_is_refused() {
    let temp = tempfile::tempdir().expect("temp");
    let (cert, key, first) = write_certificate(temp.path(), "server");
    let (mut child, url, metrics_addr) = start_with_metrics(
        &temp.path().join("data"),
        &[
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ],
    )
    .await;
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().expect("addr");
    assert!(served_to(addr, &first).await, "the first certificate is served");

    // Rotation in place, as cert-manager does it: new files at the same paths.
    let (_, _, second) = write_certificate(temp.path(), "server");
    hangup(&child);
    wait_for_metric(metrics_addr, "creator_boost_reloads_total{outcome=\"applied\"} 1\n").await;
    assert!(
        served_to(addr, &second).await,
        "a new connection gets the new certificate"
    );
    assert!(
        !served_to(addr, &first).await,
        "the old certificate is no longer served"
    );

    // A certificate whose key is not the one in the key file: refused, the
    // second certificate stays, the process lives on.
    let other = tempfile::tempdir().expect("temp");
    let (third_cert, _, third) = write_certificate(other.path(), "third");
    std::fs::copy(&third_cert, &cert).expect("copy");
    hangup(&child);
    wait_for_metric(metrics_addr, "creator_boost_reloads_total{outcome=\"refused\"} 1\n").await;
    assert!(served_to(addr, &second).await, "the certificate in force stays");
    assert!(
        !served_to(addr, &third).await,
        "the mismatched certificate is not served"
    );
    assert!(child.try_wait().expect("status").is_none(), "server exited");

    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_restart_only_setting_changed_in_the_file_is_reported_at_sighup() {
    let temp = tempfile::tempdir().expect("temp");
    let config = temp.path().join("creator-boost.toml");
    std::fs::write(&config, "max_in_flight = 100\n[model]\nnon_fan_factor = 0.3\n").expect("write");
    let (mut child, _url, metrics_addr) =
        start_with_metrics(&temp.path().join("data"), &["--config".as_ref(), config.as_os_str()]).await;
    assert!(
        wait_for_metric(metrics_addr, "creator_boost_restart_pending 0\n")
            .await
            .contains("reloads")
    );

    // One live change and two that need a restart.
    std::fs::write(
        &config,
        "max_in_flight = 50\nshutdown_grace_ms = 2000\n[model]\nnon_fan_factor = 0.5\n",
    )
    .expect("write");
    hangup(&child);
    let text = wait_for_metric(metrics_addr, "creator_boost_reloads_total{outcome=\"applied\"} 1\n").await;
    assert!(text.contains("creator_boost_restart_pending 2\n"), "{text}");

    // Back to the values in force: nothing pending any more.
    std::fs::write(&config, "max_in_flight = 100\n[model]\nnon_fan_factor = 0.5\n").expect("write");
    hangup(&child);
    let text = wait_for_metric(metrics_addr, "creator_boost_reloads_total{outcome=\"applied\"} 2\n").await;
    assert!(text.contains("creator_boost_restart_pending 0\n"), "{text}");

    let _ = child.kill();
    let _ = child.wait();
}
