//! A UDP forward: datagrams to `[::1]:PORT` go to the container from a
//! socket of their own per client address (a flow), so that the
//! container's replies come back to the right client. A flow ends after
//! [`IDLE`] without traffic either way; at most [`MAX_FLOWS`] live at once
//! (beyond that, new clients' datagrams are dropped, as a full queue
//! would drop them).

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Shared;

pub(super) const IDLE: Duration = Duration::from_secs(60);
pub(super) const MAX_FLOWS: usize = 4096;

struct Flow {
    upstream: Arc<UdpSocket>,
    /// When the client last sent, in ms since `start`.
    last: Arc<AtomicU64>,
}

/// Serves until the task is aborted; its flows end with it.
pub(super) async fn serve(sock: UdpSocket, dest: Shared) {
    let sock = Arc::new(sock);
    let start = Instant::now();
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut tasks = JoinSet::new();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<SocketAddr>();
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            got = sock.recv_from(&mut buf) => {
                let Ok((n, peer)) = got else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let now = start.elapsed().as_millis() as u64;
                if let Some(f) = flows.get(&peer) {
                    f.last.store(now, Ordering::Relaxed);
                    let _ = f.upstream.send(&buf[..n]).await;
                    continue;
                }
                if flows.len() >= MAX_FLOWS {
                    continue;
                }
                let to = *dest.lock().unwrap_or_else(|e| e.into_inner());
                let Ok(upstream) = connect(to).await else { continue };
                let upstream = Arc::new(upstream);
                let last = Arc::new(AtomicU64::new(now));
                let _ = upstream.send(&buf[..n]).await;
                tasks.spawn(replies(
                    upstream.clone(),
                    sock.clone(),
                    peer,
                    last.clone(),
                    start,
                    ended_tx.clone(),
                ));
                flows.insert(peer, Flow { upstream, last });
            }
            Some(peer) = ended.recv() => {
                flows.remove(&peer);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

async fn connect(to: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).await?;
    s.connect(to).await?;
    Ok(s)
}

/// Passes the container's replies back to `peer` until the flow idles.
async fn replies(
    upstream: Arc<UdpSocket>,
    sock: Arc<UdpSocket>,
    peer: SocketAddr,
    last: Arc<AtomicU64>,
    start: Instant,
    ended: mpsc::UnboundedSender<SocketAddr>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(IDLE, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let _ = sock.send_to(&buf[..n], peer).await;
            }
            // An ICMP error for an earlier datagram (the container's port
            // closed): not the end of the flow.
            Ok(Err(_)) => {}
            Err(_) => {
                let since = start.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
                if since >= IDLE.as_millis() as u64 {
                    let _ = ended.send(peer);
                    return;
                }
            }
        }
    }
}
