//! Bodies of the fuzz targets, shared by `fuzz/` (cargo-fuzz, nightly) and the bounded
//! property tests that run on stable in CI. Each must never panic on any input.

use super::command::Command;
use super::framer::{Frame, LineFramer};
use super::session::{Access, AdatOutcome, DataEndpoint, Protection, StorageDone};
use super::{Action, Session, SessionConfig, SessionError};

/// Parses arbitrary bytes as one command line.
pub fn command(data: &[u8]) {
    let _ = Command::parse(data);
}

/// Frames arbitrary bytes, split at an arbitrary point, and checks the length bound.
pub fn framer(data: &[u8]) {
    let mut f = LineFramer::new(64);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    f.push(&data[..cut]);
    f.push(&data[cut..]);
    assert!(f.buffered() <= 64);
    while let Some(frame) = f.next_frame() {
        if let Frame::Line(l) = frame {
            assert!(l.len() <= 64);
        }
    }
}

/// Feeds arbitrary bytes as control input to a logged-in session whose driver answers every
/// action, successes and failures alternating.
pub fn session(data: &[u8]) {
    let mut s = Session::new(SessionConfig {
        allow_anonymous: true,
        trusted_networks: Vec::new(),
        advertise_getput: true,
        peer_ip: "127.0.0.1".parse().expect("literal address"),
        banner: "fuzz".into(),
        buffers: Default::default(),
        timeouts: Default::default(),
        gsi: true,
        dcau: true,
        tls: true,
        require_tls: false,
    });
    s.handle_line(b"USER anonymous");
    s.handle_line(b"PASS x");
    let mut framer = LineFramer::default();
    framer.push(data);
    let mut flip = false;
    while let Some(frame) = framer.next_frame() {
        match frame {
            Frame::Line(l) => s.handle_line(&l),
            Frame::TooLong => s.handle_line_too_long(),
        }
        while let Some(a) = s.poll_action() {
            flip = !flip;
            match a {
                Action::Authenticate { user, .. } => s.handle_auth(flip.then_some(Access { user, writable: true })),
                Action::OpenPassive { .. } => s.handle_passive(Ok("127.0.0.1:1025".parse().expect("literal"))),
                Action::Storage(_) if flip => s.handle_storage(Ok(StorageDone::Done)),
                Action::Storage(_) => s.handle_storage(Err(SessionError::NotFound)),
                Action::Transfer(t) => {
                    if t.endpoint == DataEndpoint::Announce {
                        s.handle_listening("127.0.0.1:1025".parse().expect("literal"));
                    }
                    s.handle_transfer_started(false);
                    s.handle_transfer_done(if flip { Ok(1) } else { Err(SessionError::Aborted) });
                }
                Action::Adat(t) if flip => s.handle_adat(AdatOutcome::Continue(t)),
                Action::Adat(_) => s.handle_adat(AdatOutcome::Done {
                    token: None,
                    protection: Box::new(Clear),
                    delegated: true,
                }),
                Action::DropPassive | Action::ResetData | Action::Abort | Action::Close | Action::StartTls => {}
            }
        }
        while let Some(r) = s.poll_reply() {
            let wire = r.to_wire();
            assert!(wire.ends_with("\r\n") && wire.len() >= 6, "{wire:?}");
        }
    }
}

/// A stand-in security context: wrapping leaves the bytes as they are.
#[derive(Debug)]
struct Clear;

impl Protection for Clear {
    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, String> {
        Ok(plain.to_vec())
    }

    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, String> {
        Ok(token.to_vec())
    }
}

/// The bounded stand-in for a fuzzer on stable: `rounds` inputs, each a seed with up to seven
/// random byte insertions, changes or truncations (xorshift, fixed seed: runs repeat).
pub fn mutated(seeds: &[&[u8]], rounds: usize, mut body: impl FnMut(&[u8])) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..rounds {
        let mut input = seeds[i % seeds.len()].to_vec();
        for _ in 0..(next() % 8) {
            let pos = (next() as usize) % (input.len() + 1);
            match next() % 3 {
                0 => input.insert(pos, next() as u8),
                1 if pos < input.len() => input[pos] = next() as u8,
                _ => input.truncate(pos),
            }
        }
        body(&input);
    }
}

#[cfg(test)]
mod tests {
    /// A bounded stand-in for the fuzzers on stable: random and mutated inputs.
    #[test]
    fn targets_survive_random_input() {
        let seeds: &[&[u8]] = &[
            b"USER a\r\nPASS b\r\nPASV\r\nRETR /x\r\nABOR\r\n",
            b"PORT 127,0,0,1,4,1\r\nREST 10\r\nSTOR f\r\nRNFR a\r\nRNTO b\r\n",
            b"EPRT |2|::1|5|\r\nEPSV ALL\r\nPASV\r\nOPTS RETR Parallelism=4,4,4;\r\n",
            b"ERET P 1 2 f\r\nESTO A 3 f\r\nSITE BUFSIZE 9\r\nMLST\r\nCWD ..\r\n",
        ];
        super::mutated(seeds, 20_000, |input| {
            super::command(input);
            super::framer(input);
            super::session(input);
        });
    }
}
