//! How many threads libtorch computes with, chosen by measuring the work itself, so that `fm`
//! keeps its speed on a machine where something else is running.
//!
//! Why this exists: libtorch's OpenMP threads spin-wait for one another at the end of every
//! parallel operation. With one core of a 2-core machine taken by another process, the partner
//! thread is descheduled and every small operation waits for it: the seed experiment ran 11–13×
//! slower, in `fm` and in PyTorch alike. For networks of the seed's size a second thread buys
//! about 15 % on a quiet machine (training 1,350 against 1,150–1,240 steps/s), so neither fixed
//! count is right: the count is measured.
//!
//! - [`ThreadSetting`]: a user's count (`--threads N`, else `OMP_NUM_THREADS`) always wins;
//!   otherwise [`ThreadSetting::Auto`] measures.
//! - [`choose`]: before a phase (training, sampling, a likelihood, the loss floor), times a unit
//!   of its own work (one forward pass, say) at each [`candidates`] count, alternating, and
//!   keeps the fastest median for the whole phase. Not within one: a training run whose count
//!   was switched by 25 ms windows followed a busy machine well but changed the last bits of its
//!   weights, while a run at 1 or at 2 threads throughout gives the same bits.
//!
//! The count does not change results for the networks `fm` trains (the seed and `fast` runs'
//! `model.safetensors` are identical at 1 and 2 threads); libtorch does not promise the same
//! for every operation, so a run that must be reproduced bit for bit on any machine can fix it.

pub use fm_dist::threads::{cores, helpers, setting, ThreadSetting};
use std::time::{Duration, Instant};

/// Makes `setting` the process's ([`fm_dist::threads::set`]; libtorch's thread count is
/// process-wide): a fixed count is applied to libtorch at once.
pub fn set(setting: ThreadSetting) {
    fm_dist::threads::set(setting);
    if let ThreadSetting::Fixed(n) = setting {
        apply(n);
    }
}

/// The counts worth measuring: a fixed setting alone; otherwise all cores, half of them and one
/// (distinct, most first). One is always among them: it cannot be held up by a descheduled
/// partner, whatever else the machine runs.
pub fn candidates(setting: ThreadSetting, cores: usize) -> Vec<usize> {
    match setting {
        ThreadSetting::Fixed(n) => vec![n],
        ThreadSetting::Auto => {
            let mut c = vec![cores.max(1), (cores / 2).max(1), 1];
            c.dedup();
            c
        }
    }
}

fn apply(n: usize) {
    if tch::get_num_threads() != n as i32 {
        tch::set_num_threads(n as i32);
    }
}

/// Rounds per candidate in [`choose`]: the median of three shrugs off one unlucky (or lucky)
/// round.
pub const PROBE_ROUNDS: usize = 3;
/// The least time of a round: the probe is repeated until it has run this long. A short burst
/// after a sleep is scheduled at once even on a busy core; the waits show only in sustained work
/// (measured: single 0.3 ms forward passes chose 2 threads on a busy 2-core machine, whose
/// sampling then ran 13× slower; 10 ms rounds chose 1).
pub const PROBE_ROUND: Duration = Duration::from_millis(10);

/// Sets libtorch's thread count for the work `probe` stands for and returns it: with a fixed
/// setting, that count; otherwise `probe` (one unit of the work itself, such as a forward pass
/// on the phase's batch) is run once to warm up, then in [`PROBE_ROUNDS`] rounds at each of the
/// [`candidates`], alternating, each round repeating it for at least [`PROBE_ROUND`], and the
/// count with the fastest median time per call is kept. Costs about 60 ms on 2 cores.
///
/// # Errors
/// The first error of `probe`.
pub fn choose<E>(mut probe: impl FnMut() -> Result<(), E>) -> Result<usize, E> {
    let counts = candidates(setting(), cores());
    if counts.len() == 1 {
        apply(counts[0]);
        return Ok(counts[0]);
    }
    probe()?;
    let mut times = vec![Vec::with_capacity(PROBE_ROUNDS); counts.len()];
    for round in 0..PROBE_ROUNDS {
        for (k, &n) in counts.iter().enumerate() {
            // A count more than twice as slow as the best in the first round is out: on a busy
            // machine its rounds are the probe's whole cost.
            if round > 0 && times[k][0] > 2 * times.iter().map(|t| t[0]).min().unwrap_or_default() {
                continue;
            }
            apply(n);
            let (start, mut calls) = (Instant::now(), 0u32);
            while calls == 0 || start.elapsed() < PROBE_ROUND {
                probe()?;
                calls += 1;
            }
            times[k].push(start.elapsed() / calls);
        }
    }
    let best = pick(&counts, &mut times);
    apply(best);
    Ok(best)
}

/// The count whose median time is lowest (ties: the fewer threads).
fn pick(counts: &[usize], times: &mut [Vec<Duration>]) -> usize {
    let median = |t: &mut Vec<Duration>| {
        t.sort();
        t[t.len() / 2]
    };
    let medians: Vec<Duration> = times.iter_mut().map(median).collect();
    let mut best = 0;
    for k in 1..counts.len() {
        if medians[k] < medians[best] || (medians[k] == medians[best] && counts[k] < counts[best]) {
            best = k;
        }
    }
    counts[best]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_setting_is_the_only_candidate() {
        assert_eq!(candidates(ThreadSetting::Fixed(5), 2), vec![5]);
    }

    #[test]
    fn auto_measures_all_cores_half_and_one() {
        assert_eq!(candidates(ThreadSetting::Auto, 1), vec![1]);
        assert_eq!(candidates(ThreadSetting::Auto, 2), vec![2, 1]);
        assert_eq!(candidates(ThreadSetting::Auto, 3), vec![3, 1]);
        assert_eq!(candidates(ThreadSetting::Auto, 16), vec![16, 8, 1]);
    }

    #[test]
    fn the_fastest_median_is_picked() {
        let ms = Duration::from_millis;
        assert_eq!(pick(&[2, 1], &mut [vec![ms(1), ms(9), ms(9)], vec![ms(5), ms(5), ms(5)]]), 1);
        assert_eq!(pick(&[2, 1], &mut [vec![ms(4), ms(3), ms(4)], vec![ms(5), ms(5), ms(1)]]), 2);
        assert_eq!(pick(&[2, 1], &mut [vec![ms(5)], vec![ms(5)]]), 1);
    }
}
