//! Stripe layouts (GFD.20 §OPTS RETR `StripeLayout`): which stripe of a striped transfer sends
//! which file ranges. `Blocked` deals the file out in units of `BlockSize` bytes round-robin;
//! `Partitioned` gives each stripe one contiguous share. The unit is a layout matter only: the
//! MODE E blocks on the wire are sized separately.

/// How a striped transfer divides the file among its stripes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StripeLayout {
    /// Units of this many bytes, dealt round-robin (any positive size).
    Blocked(u64),
    /// One contiguous share per stripe.
    Partitioned,
}

/// The ranges each of `stripes` stripes sends, by `layout`. One stripe sends everything.
pub fn stripe_ranges(ranges: &[(u64, u64)], stripes: usize, layout: StripeLayout) -> Vec<Vec<(u64, u64)>> {
    let stripes = stripes.max(1);
    let mut out = vec![Vec::new(); stripes];
    if stripes == 1 {
        out[0] = ranges.to_vec();
        return out;
    }
    match layout {
        StripeLayout::Blocked(unit) => {
            let unit = unit.max(1);
            for &(start, end) in ranges {
                let mut at = start;
                while at < end {
                    let index = at / unit;
                    let unit_end = index.saturating_add(1).saturating_mul(unit).min(end);
                    push_merged(&mut out[(index % stripes as u64) as usize], at, unit_end);
                    at = unit_end;
                }
            }
        }
        StripeLayout::Partitioned => {
            let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
            let share = total.div_ceil(stripes as u64).max(1);
            let mut done = 0u64;
            for &(start, end) in ranges {
                let mut at = start;
                while at < end {
                    let stripe = ((done / share) as usize).min(stripes - 1);
                    let left_in_share = share - done % share;
                    let to = end.min(at.saturating_add(left_in_share));
                    push_merged(&mut out[stripe], at, to);
                    done += to - at;
                    at = to;
                }
            }
        }
    }
    out
}

fn push_merged(v: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    match v.last_mut() {
        Some(last) if last.1 == start => last.1 = end,
        _ => v.push((start, end)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_deals_units_round_robin() {
        let r = stripe_ranges(&[(0, 50)], 2, StripeLayout::Blocked(15));
        assert_eq!(r[0], vec![(0, 15), (30, 45)]);
        assert_eq!(r[1], vec![(15, 30), (45, 50)]);
        // Units follow file offsets, not the start of a restarted range.
        let r = stripe_ranges(&[(20, 40)], 2, StripeLayout::Blocked(15));
        assert_eq!(r[0], vec![(30, 40)]);
        assert_eq!(r[1], vec![(20, 30)]);
        // One stripe sends everything, whatever the unit.
        assert_eq!(
            stripe_ranges(&[(0, 1 << 30)], 1, StripeLayout::Blocked(15))[0],
            vec![(0, 1 << 30)]
        );
    }

    #[test]
    fn partitioned_gives_contiguous_shares() {
        let r = stripe_ranges(&[(0, 10), (20, 30)], 3, StripeLayout::Partitioned);
        assert_eq!(r[0], vec![(0, 7)]);
        assert_eq!(r[1], vec![(7, 10), (20, 24)]);
        assert_eq!(r[2], vec![(24, 30)]);
        let total: u64 = r.iter().flatten().map(|(s, e)| e - s).sum();
        assert_eq!(total, 20);
    }
}
