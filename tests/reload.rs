//! Config hot reload through a real SIGHUP to the real binary.

mod common;

use std::time::Duration;

use common::start_binary;
use creator_boost::proto;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use tonic::transport::Channel;

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

#[tokio::test]
async fn sighup_applies_a_good_config_and_refuses_a_bad_one() {
    let temp = tempfile::tempdir().expect("temp");
    let config = temp.path().join("creator-boost.toml");
    std::fs::write(&config, "[model]\nnon_fan_factor = 0.3\n").expect("write");
    let (mut child, url) = start_binary(&temp.path().join("data"), &["--config".as_ref(), config.as_os_str()]).await;
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
    let mut second = first.clone();
    for _ in 0..200 {
        second = model_version(&mut client, "").await.expect("version");
        if second != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_ne!(second, first, "reload did not apply");
    model_version(&mut client, "fresh")
        .await
        .expect("the new variant answers");

    // A bad config is refused: the parameters in force stay, the server lives on.
    std::fs::write(&config, "[model]\nboost_min = 7\n").expect("write");
    hangup(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(model_version(&mut client, "").await.expect("still serving"), second);
    model_version(&mut client, "fresh").await.expect("old variants kept");
    assert!(child.try_wait().expect("status").is_none(), "server exited");

    let _ = child.kill();
    let _ = child.wait();
}
