//! 20 % of the transport's datagrams dropped at every host (nftables; this kernel has no netem):
//! every message still arrives, in order, exactly once, and agreed-order messages arrive in the
//! same order everywhere. Real sockets in network namespaces (root; skips otherwise).

use std::time::{Duration, Instant};

use cohort::lab::Lab;
use cohort_engine::group::Order;

#[test]
fn every_message_in_order_under_20_percent_loss() {
    let Some(lab) = Lab::new("every_message_in_order_under_20_percent_loss", 3) else {
        return;
    };
    let nodes: Vec<_> = (0..3)
        .map(|i| cohort::lab::inproc::start(&lab, i, "", &["app"]))
        .collect();
    for n in &nodes {
        n.wait_view(3, "app");
    }
    for i in 0..3 {
        lab.udp_loss(i, 4809, 20);
    }
    const FIFO: u32 = 600;
    const AGREED: u32 = 300;
    let fifo: Vec<Vec<u8>> = (0..FIFO)
        .map(|i| format!("fifo {i:06}").into_bytes())
        .collect();
    nodes[0].shared.send_batch("app", fifo, Order::Fifo);
    // Agreed messages from two senders, interleaved.
    let a: Vec<Vec<u8>> = (0..AGREED / 2)
        .map(|i| format!("agreed n1 {i:06}").into_bytes())
        .collect();
    let b: Vec<Vec<u8>> = (0..AGREED / 2)
        .map(|i| format!("agreed n2 {i:06}").into_bytes())
        .collect();
    nodes[0].shared.send_batch("app", a, Order::Agreed);
    nodes[1].shared.send_batch("app", b, Order::Agreed);

    let mut agreed_orders: Vec<Vec<Vec<u8>>> = Vec::new();
    for (k, n) in nodes.iter().enumerate() {
        let mut fifo_seen = Vec::new();
        let mut agreed_seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while (fifo_seen.len() as u32) < FIFO || (agreed_seen.len() as u32) < AGREED {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "node{} got {} fifo, {} agreed",
                k + 1,
                fifo_seen.len(),
                agreed_seen.len()
            );
            let Ok(d) = n
                .deliveries
                .recv_timeout(left.min(Duration::from_millis(500)))
            else {
                continue;
            };
            match d.order {
                Order::Fifo => {
                    assert_eq!(d.sender.name, "node1");
                    fifo_seen.push(d.payload);
                }
                Order::Agreed | Order::Safe => agreed_seen.push(d.payload),
            }
        }
        let want: Vec<Vec<u8>> = (0..FIFO)
            .map(|i| format!("fifo {i:06}").into_bytes())
            .collect();
        assert_eq!(
            fifo_seen,
            want,
            "node{}: every FIFO message once, in order",
            k + 1
        );
        // Each agreed sender's messages keep their own order too.
        for who in ["n1", "n2"] {
            let mine: Vec<&Vec<u8>> = agreed_seen
                .iter()
                .filter(|p| p.starts_with(format!("agreed {who}").as_bytes()))
                .collect();
            let want: Vec<Vec<u8>> = (0..AGREED / 2)
                .map(|i| format!("agreed {who} {i:06}").into_bytes())
                .collect();
            assert_eq!(mine, want.iter().collect::<Vec<_>>(), "node{} {who}", k + 1);
        }
        agreed_orders.push(agreed_seen);
    }
    assert_eq!(
        agreed_orders[0], agreed_orders[1],
        "same agreed order on node1 and node2"
    );
    assert_eq!(
        agreed_orders[1], agreed_orders[2],
        "same agreed order on node2 and node3"
    );
    // No member was lost on the way (a view change would have been a false suspicion).
    for n in &nodes {
        assert_eq!(n.view_size(), 3);
    }
    for i in 0..3 {
        lab.udp_loss(i, 4809, 0);
    }
    for n in nodes {
        n.stop();
    }
}
