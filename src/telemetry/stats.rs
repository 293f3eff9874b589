//! Summary statistics for reports: percentiles (nearest-rank on sorted samples, as most
//! latency tools report them), mean and sample standard deviation.

/// The `p`-th percentile (0..=100) by linear interpolation between closest ranks; `None` for
/// no samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

pub fn mean(samples: &[f64]) -> Option<f64> {
    (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64)
}

/// Sample standard deviation (n − 1); 0 for a single sample, `None` for none.
pub fn stddev(samples: &[f64]) -> Option<f64> {
    let m = mean(samples)?;
    if samples.len() < 2 {
        return Some(0.0);
    }
    let var = samples.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (samples.len() - 1) as f64;
    Some(var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&v, 50.0), Some(3.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(5.0));
        assert_eq!(percentile(&v, 25.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0], 90.0), Some(1.9));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    #[test]
    fn mean_and_stddev() {
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&v), Some(5.0));
        let s = stddev(&v).unwrap();
        assert!((s - 2.138089935).abs() < 1e-6, "{s}");
        assert_eq!(stddev(&[3.0]), Some(0.0));
        assert_eq!(mean(&[]), None);
    }
}
