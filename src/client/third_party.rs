//! Server → server. The destination listens (PASV/STOR) and the source connects (PORT/RETR),
//! as MODE E requires; the data never passes through this client.

use super::control::Control;
use super::progress::FileProgress;
use super::session::{Moved, Resume};
use super::url::FtpUrl;
use super::{ClientError, CopyOptions, Mode};
use crate::protocol::client::{Request, Restart, TransferReply};
use crate::storage::checksum::Algorithm;

/// One attempt at a third-party copy; `resume` holds what the destination reported stored.
pub async fn copy(
    src: &FtpUrl,
    dst: &FtpUrl,
    o: &CopyOptions,
    resume: &mut Resume,
    progress: &mut FileProgress,
) -> Result<Moved, ClientError> {
    let (mut a, mut b) = (Control::connect(src).await?, Control::connect(dst).await?);
    if o.mode == Mode::Stream && resume.started {
        // Stream mode writes in order: what the destination holds is what it got.
        if let Some(n) = b.size(&dst.path).await? {
            resume.done.insert(0, n);
        }
    }
    for (c, sends) in [(&mut a, true), (&mut b, false)] {
        if o.mode != Mode::Stream {
            c.expect_ok(Some(&Request::Mode(o.mode).to_string())).await?;
        }
        if let Some(n) = o.tcp_bs {
            c.expect_ok(Some(&Request::Sbuf(n).to_string())).await?;
        }
        if o.mode != Mode::Stream && sends {
            let opts = Request::OptsRetr {
                parallelism: o.parallelism,
                block_size: None,
            };
            c.expect_ok(Some(&opts.to_string())).await?;
        }
    }
    if o.restart.is_some() {
        let _ = b.cmd(&Request::RestartMarkers(1).to_string()).await?;
    }
    // Perf markers from the receiving side drive the progress bar.
    let _ = b.cmd(&Request::PerfMarkers(1).to_string()).await?;
    let addr = b.pasv().await?;
    let std::net::SocketAddr::V4(addr) = addr else {
        return Err(ClientError::Url("IPv6 third-party needs EPRT".into()));
    };
    let rest = match o.mode {
        _ if resume.done.is_empty() => None,
        Mode::Stream => Some(Restart::Offset(resume.prefix())),
        _ => Some(Restart::Ranges(resume.done.clone())),
    };
    if let Some(r) = &rest {
        let line = Request::Rest(r).to_string();
        b.expect_ok(Some(&line)).await?;
        a.expect_ok(Some(&line)).await?;
    }
    b.send(&Request::Stor(&dst.path).to_string()).await?;
    a.expect_ok(Some(&Request::Port(addr).to_string())).await?;
    a.send(&Request::Retr(&src.path).to_string()).await?;
    let skipped = resume.done.len();
    let receiving = async {
        loop {
            match TransferReply::of(b.reply().await?)? {
                TransferReply::Ranges(ranges) => {
                    for &(x, y) in ranges.ranges() {
                        resume.done.insert(x, y);
                    }
                }
                TransferReply::Refused(r) => return Err(ClientError::Refused(r)),
                TransferReply::Performance(n) => progress.at(skipped + n),
                TransferReply::Started => resume.started = true,
                TransferReply::Done => return Ok::<(), ClientError>(()),
                TransferReply::Address(_) | TransferReply::Other => {}
            }
        }
    };
    let (ra, rb) = tokio::join!(a.until_final(), receiving);
    ra?;
    rb?;
    let bytes = a.size(&src.path).await?.unwrap_or(0);
    progress.at(bytes);
    a.quit().await;
    b.quit().await;
    Ok(Moved {
        bytes: bytes.saturating_sub(skipped),
        streams: o.parallelism as usize,
        reused: false,
    })
}

/// Compares the checksums of both ends; returns the agreed one.
pub async fn verify(src: &FtpUrl, dst: &FtpUrl, alg: Algorithm) -> Result<String, ClientError> {
    let (mut a, mut b) = (Control::connect(src).await?, Control::connect(dst).await?);
    let (x, y) = (a.checksum(alg, &src.path).await?, b.checksum(alg, &dst.path).await?);
    a.quit().await;
    b.quit().await;
    if x != y {
        return Err(ClientError::Mismatch(format!("source {x}, destination {y}")));
    }
    Ok(x)
}
