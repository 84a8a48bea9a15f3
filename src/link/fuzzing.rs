//! Fuzz target body for the pool link's framing and handshake messages, shared by `fuzz/` and
//! a bounded stable test: what an unauthenticated peer on the pool port can send.

use futures_util::FutureExt;

use super::auth::{self, POOL};
use super::{read_frame_within, DoorMsg, PoolMsg, MAX_HANDSHAKE_FRAME};

/// Reads frames from arbitrary bytes with the real reader and the handshake's limit, decodes
/// each as either side's message and checks nonces and proofs as the handshake would.
pub fn frames(data: &[u8]) {
    let mut input = data;
    for _ in 0..16 {
        // A byte slice never makes the reader wait: each read is ready at once.
        let Some(Ok(Some(msg))) =
            read_frame_within::<_, serde_json::Value>(&mut input, MAX_HANDSHAKE_FRAME).now_or_never()
        else {
            return;
        };
        let pool: Result<PoolMsg, _> = serde_json::from_value(msg.clone());
        let _: Result<DoorMsg, _> = serde_json::from_value(msg);
        match pool {
            Ok(PoolMsg::Hello { nonce, name, .. }) => {
                if let Ok(n) = auth::parse_nonce(&nonce) {
                    let proof = auth::prove(&[7; 32], POOL, &n, &n, &name);
                    assert!(auth::verify(&[7; 32], POOL, &n, &n, &name, &proof));
                }
            }
            Ok(PoolMsg::Proof { proof }) => {
                let _ = auth::verify(&[7; 32], POOL, &[1; 32], &[2; 32], "p", &proof);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn link_frames_survive_random_input() {
        let hello = frame(
            br#"{"Hello":{"version":2,"name":"p","data_address":"127.0.0.2","port_range":[1,2],"nonce":"00000000000000000000000000000000000000000000000000000000000000aa"}}"#,
        );
        let proof = frame(br#"{"Proof":{"proof":"abcd"}}"#);
        let huge = (u32::MAX).to_be_bytes().to_vec();
        let seeds: &[&[u8]] = &[&hello, &proof, &huge, &[hello.clone(), proof.clone()].concat()];
        crate::protocol::fuzzing::mutated(seeds, 20_000, super::frames);
    }
}
