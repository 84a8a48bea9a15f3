//! Fuzz target body for the MODE E decoder, shared by `fuzz/` and a bounded stable test.

use super::receive::StreamDecoder;
use super::TransferReceiver;

/// Splits arbitrary bytes into up to four connections and decodes them; must never panic, and
/// a completed transfer must have consistent accounting.
pub fn decode(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut t = TransferReceiver::new((first & 1 == 1).then_some(1 << 20));
    let streams = usize::from(first >> 6) + 1;
    let chunk = rest.len() / streams + 1;
    for piece in rest.chunks(chunk) {
        let mut d = StreamDecoder::default();
        let mut ev = Vec::new();
        for part in piece.chunks(usize::from(first % 23) + 1) {
            if d.push(part, &mut t, &mut ev).is_err() {
                return;
            }
        }
        let _ = d.close();
    }
    if t.complete() {
        assert!(t.expected_eods().is_some_and(|n| n > 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Header;

    #[test]
    fn decoder_survives_random_and_mutated_streams() {
        let valid: Vec<u8> = [
            Header::data(0, 3).encode().to_vec(),
            b"abc".to_vec(),
            Header::eof(1, true).encode().to_vec(),
        ]
        .concat();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut input = vec![next() as u8];
            input.extend_from_slice(&valid);
            for _ in 0..(next() % 6) {
                let pos = (next() as usize) % input.len();
                match next() % 3 {
                    0 => input[pos] = next() as u8,
                    1 => input.insert(pos, next() as u8),
                    _ => input.truncate(pos.max(1)),
                }
            }
            decode(&input);
        }
    }
}
