//! A TCP proxy on one directed link between two members, which the
//! nemesis can cut and heal.
//!
//! Member `a` reaches member `b` (its peer URL for Raft, its client URL
//! for forwarded requests) through a proxy of its own: the members'
//! `SETT_DEBUG_DIAL_MAP` sends every connection `a` opens to `b` to the
//! proxy of the link `a → b`. Cutting a link comes in two kinds:
//!
//! - [`Cut::Reset`]: open connections are closed at once and new ones are
//!   accepted and closed, as when a host answers with resets;
//! - [`Cut::Blackhole`]: bytes are swallowed in both directions and new
//!   connections are accepted but never forwarded, as when packets are
//!   silently dropped; the peers notice only by their own timeouts.
//!
//! A connection that lost bytes is closed when the link heals (its byte
//! stream has a hole), so the peers reconnect from a clean start.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How a cut link behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Connections are closed.
    Reset,
    /// Bytes are dropped silently.
    Blackhole,
}

const OPEN: u8 = 0;
const RESET: u8 = 1;
const BLACKHOLE: u8 = 2;

/// One proxied link; dropping it stops the proxy.
#[derive(Debug)]
pub struct Link {
    port: u16,
    state: Arc<AtomicU8>,
    /// Bumped on every change, so connections react at once.
    changed: watch::Sender<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Starts a proxy on a free 127.0.0.1 port forwarding to `target`
    /// (`host:port`), on the current Tokio runtime.
    pub async fn start(target: String) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(AtomicU8::new(OPEN));
        let (changed, _) = watch::channel(OPEN);
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            state.clone(),
            changed.clone(),
        ));
        Ok(Link {
            port,
            state,
            changed,
            task,
        })
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the link.
    pub fn cut(&self, how: Cut) {
        let v = match how {
            Cut::Reset => RESET,
            Cut::Blackhole => BLACKHOLE,
        };
        self.state.store(v, Ordering::SeqCst);
        self.changed.send_replace(v);
    }

    /// Heals the link.
    pub fn heal(&self) {
        self.state.store(OPEN, Ordering::SeqCst);
        self.changed.send_replace(OPEN);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.state.load(Ordering::SeqCst) != OPEN
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: String,
    state: Arc<AtomicU8>,
    changed: watch::Sender<u8>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let _ = inbound.set_nodelay(true);
        let target = target.clone();
        let state = state.clone();
        let rx = changed.subscribe();
        tokio::spawn(async move {
            match state.load(Ordering::SeqCst) {
                RESET => return,
                BLACKHOLE => {
                    swallow_until_healed(inbound, rx).await;
                    return;
                }
                _ => {}
            }
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = outbound.set_nodelay(true);
            relay(inbound, outbound, state, rx).await;
        });
    }
}

/// Holds a connection accepted while the link was blackholed: reads and
/// drops its bytes, and closes it once the link changes.
async fn swallow_until_healed(mut conn: TcpStream, mut rx: watch::Receiver<u8>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = conn.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            c = rx.changed() => if c.is_err() || *rx.borrow() != BLACKHOLE {
                return;
            },
        }
    }
}

/// Copies both ways while the link is open; see the module docs for what
/// a cut does to a running connection.
async fn relay(a: TcpStream, b: TcpStream, state: Arc<AtomicU8>, mut rx: watch::Receiver<u8>) {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let mut abuf = vec![0u8; 64 * 1024];
    let mut bbuf = vec![0u8; 64 * 1024];
    let mut lost_bytes = false;
    loop {
        tokio::select! {
            r = ar.read(&mut abuf) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                match state.load(Ordering::SeqCst) {
                    OPEN if !lost_bytes => {
                        if bw.write_all(&abuf[..n]).await.is_err() { return; }
                    }
                    OPEN | RESET => return,
                    _ => lost_bytes = true,
                }
            }
            r = br.read(&mut bbuf) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                match state.load(Ordering::SeqCst) {
                    OPEN if !lost_bytes => {
                        if aw.write_all(&bbuf[..n]).await.is_err() { return; }
                    }
                    OPEN | RESET => return,
                    _ => lost_bytes = true,
                }
            }
            c = rx.changed() => {
                if c.is_err() {
                    return;
                }
                let now = *rx.borrow();
                if now == RESET || (now == OPEN && lost_bytes) {
                    return;
                }
            }
        }
    }
}
