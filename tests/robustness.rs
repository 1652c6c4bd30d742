//! Scores a handful of accounts cannot buy or bomb: the attacks of
//! `common/attacks.rs` played through the gRPC contract on a real server
//! (a background platform of 300 ordinary creators with KuaiRand rates).

mod common;

use common::attacks::{self, Figures};

#[tokio::test]
async fn a_few_accounts_cannot_buy_or_bomb_a_boost() {
    let server = common::spawn_server().await;
    let mut client = server.client().await;
    let figures = attacks::run(&mut client, common::NOW_MS, "t").await.expect("attacks");
    println!("{}", figures.table());

    assert_eq!(
        figures.one_like, 1.0,
        "a like from an account never shown the creator earns nothing"
    );
    assert!(figures.one_account <= 1.05, "one account: {}", figures.one_account);
    assert!(figures.ten_accounts <= 1.25, "ten accounts: {}", figures.ten_accounts);
    assert!(
        figures.ten_accounts < figures.real_creator,
        "ten accounts {} must stay below 5% of 1,000 real viewers liking {}",
        figures.ten_accounts,
        figures.real_creator
    );
    let brigade = Figures::change(figures.brigaded_before, figures.brigaded_after);
    assert!(brigade >= -5.0, "never-shown report brigade: {brigade:+.2}%");
    let own = Figures::change(figures.reported_before, figures.reported_after);
    assert!(own <= -10.0, "3% of the creator's own viewers reporting: {own:+.2}%");
    // Accounts shown the creator once can bomb it only as far as ten
    // accounts' evidence carries (D / (D + m_d) of the loss).
    let churn = Figures::change(figures.churn_before, figures.churn_after);
    assert!(churn >= -15.0, "ten accounts follow and unfollow: {churn:+.2}%");
    let shown = Figures::change(figures.shown_brigade_before, figures.shown_brigade_after);
    assert!(shown >= -15.0, "ten accounts shown once report: {shown:+.2}%");
    let unrelated = Figures::change(figures.unrelated_before, figures.unrelated_after);
    assert!(unrelated.abs() <= 2.0, "unrelated creator moved {unrelated:+.2}%");
    let spray = Figures::change(figures.spray_before, figures.spray_after);
    assert!(
        spray.abs() <= 2.0,
        "eleven accounts spraying the platform moved an unrelated creator {spray:+.2}%"
    );
    let depth: Vec<f64> = figures.depth.iter().map(|(_, boost)| *boost).collect();
    assert!(
        depth.windows(2).all(|w| w[0] < w[1]),
        "view < like < share < tip: {:?}",
        figures.depth
    );
    assert!(depth.iter().all(|b| *b < 2.0), "none at the cap: {:?}", figures.depth);
}
