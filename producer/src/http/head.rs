//! How long a connection may take to send its first request's head: as
//! long as it keeps sending, within bounds. Around each accepted
//! connection, in place of actix's `client_request_timeout`.
//!
//! actix's timer (5 s for the whole head) is armed when the connection is
//! first polled, often before the head has arrived, from a clock it caches
//! every 500 ms, and checked *before* reading on each later poll. So when
//! the producer is not scheduled for a few seconds (a starved machine, a
//! throttled container) a head that arrived in time is answered 408 all
//! the same, without being read; and a head that comes slowly but steadily
//! is cut off at 5 s. That was the 408 for valid POSTs seen in the compose
//! and cluster runs.
//!
//! Here the rule is about the client: a connection is closed only when,
//! reading it, nothing new has come for `HEAD_TIMEOUT_MS` (default 5 s),
//! or the head is still incomplete after twelve times that (a trickle
//! cannot hold a connection for ever). The deadline is looked at only
//! after a read found nothing, and then the socket itself is read once
//! more: after a stop (`SIGSTOP`/`SIGCONT`, which interrupts the
//! runtime's wait for events) the timer can be seen expired before the
//! runtime has learned that the socket is readable, and its "not ready"
//! is stale. So what has arrived is always read, however late the
//! producer gets to it. Once the head is complete the guard steps aside:
//! the body has `BODY_TIMEOUT_MS` (`extract`), and a kept-alive
//! connection actix's keep-alive timer.

use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// How many gaps a whole head may take at most.
const GAPS_PER_HEAD: u32 = 12;

/// A connection whose first request head must keep coming (see the module
/// docs).
pub struct HeadDeadline {
    io: TcpStream,
    /// `None` once the first head is complete.
    waiting: Option<Waiting>,
}

struct Waiting {
    gap: Duration,
    /// The latest the head may end, whatever its pace.
    ends_by: Instant,
    timer: Pin<Box<Sleep>>,
    scan: HeadEnd,
}

/// Finds the end of a request head (an empty line) in the bytes as they
/// pass: line ends are LF or CRLF, as actix's parser takes them, and empty
/// lines before the request line (which RFC 9112 lets a server ignore)
/// do not count.
#[derive(Debug, Default, Clone, Copy)]
struct HeadEnd {
    started: bool,
    line_ends: u8,
}

impl HeadEnd {
    /// Take `bytes`; whether the head ended in them.
    fn ends_in(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match b {
                b'\r' => {}
                b'\n' if self.started => {
                    self.line_ends += 1;
                    if self.line_ends == 2 {
                        return true;
                    }
                }
                b'\n' => {}
                _ => {
                    self.started = true;
                    self.line_ends = 0;
                }
            }
        }
        false
    }
}

impl HeadDeadline {
    /// Guard `io`, just accepted: its head may pause for at most `gap` at a
    /// time.
    pub fn new(io: TcpStream, gap: Duration) -> Self {
        let now = Instant::now();
        Self {
            io,
            waiting: Some(Waiting {
                gap,
                ends_by: now + gap * GAPS_PER_HEAD,
                timer: Box::pin(tokio::time::sleep_until(now + gap)),
                scan: HeadEnd::default(),
            }),
        }
    }

    /// The connection itself.
    pub fn get_ref(&self) -> &TcpStream {
        &self.io
    }
}

impl Waiting {
    /// Take `new` bytes of the head: whether it is now complete (else the
    /// next gap starts).
    fn took(&mut self, new: &[u8]) -> bool {
        if self.scan.ends_in(new) {
            return true;
        }
        if !new.is_empty() {
            let next = (Instant::now() + self.gap).min(self.ends_by);
            self.timer.as_mut().reset(next);
        }
        false
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(waiting) = this.waiting.as_mut() else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) => {
                if waiting.took(&buf.filled()[before..]) {
                    this.waiting = None;
                }
                Poll::Ready(Ok(()))
            }
            // Nothing to read: only now can the client be late.
            Poll::Pending => {
                if waiting.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Expired: read the socket itself before believing it.
                match (&*SockRef::from(&this.io)).read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        if waiting.took(&buf.filled()[before..]) {
                            this.waiting = None;
                        }
                        Poll::Ready(Ok(()))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received in time (HEAD_TIMEOUT_MS)",
                        )))
                    }
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_its_first_empty_line() {
        let ends = |chunks: &[&[u8]]| {
            let mut scan = HeadEnd::default();
            chunks.iter().any(|c| scan.ends_in(c))
        };
        assert!(ends(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]));
        assert!(ends(&[
            b"GET / HTTP/1.1\r\nHost: x\r",
            b"\n",
            b"\r",
            b"\nbody"
        ]));
        assert!(ends(&[b"GET / HTTP/1.1\nHost: x\n\n"]));
        assert!(ends(&[b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"]));
        assert!(
            !ends(&[b"\r\n\r\n\r\n"]),
            "empty lines before the request line"
        );
        assert!(!ends(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]));
    }

    /// Two ends of a TCP connection on 127.0.0.1: the client's, and the
    /// server's guarded.
    async fn connection(gap: Duration) -> (TcpStream, HeadDeadline) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), HeadDeadline::new(accepted.unwrap().0, gap))
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_keeps_coming_is_read_and_a_silent_one_is_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let gap = Duration::from_secs(5);
        let (mut client, mut server) = connection(gap).await;
        // A line every 4 s, 20 s in all: read to the end.
        let writer = tokio::spawn(async move {
            for line in [
                "GET / HTTP/1.1\r\n",
                "A: 1\r\n",
                "B: 2\r\n",
                "C: 3\r\n",
                "\r\n",
            ] {
                tokio::time::sleep(Duration::from_secs(4)).await;
                client.write_all(line.as_bytes()).await.unwrap();
            }
            client
        });
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut buf = [0u8; 64];
            let n = server.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        let _client = writer.await.unwrap();
        // After the head the guard is gone: a silent minute is no error.
        let mut buf = [0u8; 8];
        let idle = tokio::time::timeout(Duration::from_secs(60), server.read(&mut buf)).await;
        assert!(idle.is_err(), "still waiting, no error");

        // A connection that says nothing is closed after one gap.
        let (_silent_client, mut silent) = connection(gap).await;
        let started = Instant::now();
        let err = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), gap);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_off_after_twelve_gaps() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let gap = Duration::from_secs(5);
        let (mut client, mut server) = connection(gap).await;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(4)).await;
                if client.write_all(b"x").await.is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = loop {
            match server.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), gap * GAPS_PER_HEAD);
    }
}
