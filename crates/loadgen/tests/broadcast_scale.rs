//! SPEC §4 at scale: 1,000 registered users, 100 online. Every online user
//! but the sender gets the broadcast at once; each of the 900 others gets it
//! when logging in. Counts are checked; timings are a benchmark's business
//! (`p2p-load`, docs/BENCHMARKS.md).

use p2p_testkit::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_a_hundred_online() {
    // Every login comes from 127.0.0.1: the per-source caps are lifted so
    // the parallel logins measure the server, not the cap.
    let server = TestServer::start(p2p_testkit::ONE_ADDRESS_CROWD);
    let report = p2p_loadgen::broadcast_scale(&server, 1000, 100, 50)
        .await
        .unwrap();
    assert_eq!(report.live_delivered, 99);
    assert_eq!(report.caught_up, 900);
}
