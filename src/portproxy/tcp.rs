//! A TCP forward: accepts on `[::1]:PORT` and relays each connection to
//! the container. Every relay is a task of the one runtime thread, not a
//! thread of its own; the bytes go through `copy_bidirectional` with
//! 64 KiB buffers (one read and one write per buffer each way), and a
//! half-close is passed on as a shutdown of the other side's write.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::{Shared, CONNECT_TIMEOUT};

const BUFFER: usize = 64 * 1024;

/// Accepts until the task is aborted (the mapping went); aborting it also
/// ends its relays (they belong to its `JoinSet`).
pub(super) async fn serve(listener: TcpListener, dest: Shared) {
    let mut relays = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let to = *dest.lock().unwrap_or_else(|e| e.into_inner());
                    relays.spawn(relay(client, to));
                }
                // Out of descriptors, say: wait rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = relays.join_next(), if !relays.is_empty() => {}
        }
    }
}

async fn relay(mut client: TcpStream, to: std::net::SocketAddr) {
    // Request/response traffic would otherwise wait for Nagle on each hop.
    let _ = client.set_nodelay(true);
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await;
    let Ok(Ok(mut upstream)) = upstream else {
        // The client sees a reset, as it would from a closed port.
        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER).await;
}
