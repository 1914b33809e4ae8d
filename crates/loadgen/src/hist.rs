//! A small HDR-style latency histogram: log-linear buckets with 128 sub-buckets per power of two,
//! so every recorded value is known to within 1/128 (< 0.8 %) of itself. Values are nanoseconds.

/// Sub-buckets per power of two (2^SUB_BITS).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any u64: the largest index is SUB * (64 - SUB_BITS) + (2*SUB - 1).
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize) + 2 * SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            n: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

/// The bucket a value falls into: the value itself below SUB, else `SUB * shift + (v >> shift)` where
/// `shift` keeps `v >> shift` in `[SUB, 2*SUB)`.
fn index_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let magnitude = 63 - v.leading_zeros();
    let shift = magnitude - SUB_BITS;
    (SUB * u64::from(shift) + (v >> shift)) as usize
}

/// The largest value that falls into bucket `i` (what a percentile reports, as HdrHistogram does).
fn highest_of(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let sub = i - SUB * shift;
    ((sub + 1) << shift).saturating_sub(1)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index_of(v)] += 1;
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum as f64 / self.n as f64
        }
    }

    /// Nearest-rank percentile (`p` in 0..=100): the smallest recorded value (to bucket precision)
    /// such that at least p % of the values are ≤ it. 0 for an empty histogram.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        // the small epsilon keeps 99.9 % of 1000 at rank 999 despite floating-point rounding
        let rank = ((p / 100.0) * self.n as f64 - 1e-9)
            .ceil()
            .clamp(1.0, self.n as f64) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return highest_of(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        for v in 0..2 * SUB {
            assert_eq!(highest_of(index_of(v)), v);
        }
    }

    #[test]
    fn every_value_is_within_one_part_in_128() {
        let mut v = 1u64;
        while v < u64::MAX / 3 {
            for x in [v, v + 1, v * 3 / 2, v * 2 - 1] {
                let i = index_of(x);
                assert!(i < BUCKETS, "index {i} of {x}");
                let hi = highest_of(i);
                assert!(hi >= x, "{x}: bucket top {hi} below the value");
                assert!(
                    (hi - x) as f64 <= x as f64 / SUB as f64,
                    "{x}: bucket top {hi} too far"
                );
                // the bucket's top lies in the same bucket
                assert_eq!(index_of(hi), i, "{x}");
            }
            v = v * 2 + 7;
        }
        assert!(index_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut h = Histogram::default();
        for v in 1..=100u64 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(99.9), 100);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.percentile(0.0), 1);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn percentiles_of_microsecond_latencies_are_within_the_precision() {
        let mut h = Histogram::default();
        // 1 µs … 10 ms in 1 µs steps, in nanoseconds
        for us in 1..=10_000u64 {
            h.record(us * 1000);
        }
        for (p, want) in [(50.0, 5_000_000u64), (99.0, 9_900_000), (99.9, 9_990_000)] {
            let got = h.percentile(p);
            assert!(
                got >= want && (got - want) as f64 <= want as f64 / 128.0,
                "p{p}: {got} vs {want}"
            );
        }
        assert_eq!(h.percentile(100.0), 10_000_000);
    }

    #[test]
    fn one_slow_outlier_shows_in_p999_only() {
        let mut h = Histogram::default();
        for _ in 0..999 {
            h.record(1_000);
        }
        h.record(50_000_000);
        // 1000 ns is reported as the top of its bucket, within 1/128
        for p in [50.0, 99.0, 99.9] {
            let got = h.percentile(p);
            assert!((1_000..=1_000 + 1_000 / 128).contains(&got), "p{p}: {got}");
        }
        assert_eq!(h.percentile(99.95), 50_000_000);
        assert_eq!(h.max(), 50_000_000);
    }

    #[test]
    fn merge_adds_counts() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for v in 0..10 {
            a.record(v);
            b.record(v + 100);
        }
        a.merge(&b);
        assert_eq!(a.len(), 20);
        assert_eq!(a.percentile(50.0), 9);
        assert_eq!(a.percentile(100.0), 109);
        assert_eq!(Histogram::default().percentile(50.0), 0);
    }
}
