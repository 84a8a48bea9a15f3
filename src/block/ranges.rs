//! Sets of byte ranges `[start, end)`, merged: what a receiver has stored (for 111 markers and
//! restart) and what a sender must still send (REST ranges).

/// Disjoint, sorted, non-adjacent ranges with exclusive ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// Adds `[start, end)`, merging with overlapping or adjacent ranges. Empty ranges are ignored.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // First range that could touch [s, e): the first whose end >= s.
        let i = self.ranges.partition_point(|&(_, re)| re < s);
        let mut j = i;
        while j < self.ranges.len() && self.ranges[j].0 <= e {
            s = s.min(self.ranges[j].0);
            e = e.max(self.ranges[j].1);
            j += 1;
        }
        self.ranges.splice(i..j, [(s, e)]);
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Total bytes covered.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// True when `[0, size)` is covered completely.
    pub fn covers(&self, size: u64) -> bool {
        size == 0 || self.ranges.first().is_some_and(|&(s, e)| s == 0 && e >= size)
    }

    /// The parts of `[0, size)` not in the set.
    pub fn gaps(&self, size: u64) -> RangeSet {
        let mut out = RangeSet::new();
        let mut at = 0;
        for &(s, e) in &self.ranges {
            if s >= size {
                break;
            }
            out.insert(at, s);
            at = at.max(e);
        }
        out.insert(at, size);
        out
    }

    /// `a-b,c-d` (exclusive ends, the Globus convention), as in `111 Range Marker` and `REST`.
    pub fn to_marker(&self) -> String {
        self.ranges
            .iter()
            .map(|(s, e)| format!("{s}-{e}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging() {
        let mut r = RangeSet::new();
        r.insert(10, 20);
        r.insert(30, 40);
        r.insert(20, 25); // adjacent
        assert_eq!(r.ranges(), &[(10, 25), (30, 40)]);
        r.insert(5, 35); // overlaps both
        assert_eq!(r.ranges(), &[(5, 40)]);
        r.insert(0, 0);
        r.insert(50, 60);
        r.insert(45, 46);
        assert_eq!(r.to_marker(), "5-40,45-46,50-60");
        assert_eq!(r.len(), 46);
        assert!(!r.covers(10));
        r.insert(0, 5);
        assert!(r.covers(40) && !r.covers(41));
        assert_eq!(r.gaps(70).ranges(), &[(40, 45), (46, 50), (60, 70)]);
    }

    #[test]
    fn repeated_inserts_match_a_bitmap_model() {
        let mut x: u64 = 88172645463325252;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let mut r = RangeSet::new();
            let mut model = [false; 128];
            for _ in 0..12 {
                let s = next() % 128;
                let e = (s + next() % 20).min(128);
                r.insert(s, e);
                model[s as usize..e as usize].iter_mut().for_each(|b| *b = true);
            }
            let covered: u64 = model.iter().filter(|&&b| b).count() as u64;
            assert_eq!(r.len(), covered);
            for w in r.ranges().windows(2) {
                assert!(w[0].1 < w[1].0, "not merged: {:?}", r.ranges());
            }
            assert_eq!(r.gaps(128).len(), 128 - covered);
        }
    }
}
