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
//! - [`choose`]: before a phase (sampling, a likelihood), times a unit of its own work (one
//!   forward pass, say) at each [`candidates`] count, alternating, and keeps the fastest median.
//! - [`Steering`]: in a loop (training), times windows of steps and tries the other counts
//!   now and then ([`Adaptive`]), so that a process that starts or stops mid-run is followed.
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

/// The decisions of a loop that steers its thread count by its own speed, apart from any clock:
/// fed the seconds per step of each window run at [`Adaptive::threads`], it says which count
/// the next window runs at.
///
/// It measures every candidate once at the start (the first window is a warm-up and is not
/// judged), keeps the fastest, and tries another every `explore_every` windows; a failed try
/// doubles that interval (up to [`Adaptive::MAX_EXPLORE_EVERY`]), so that on a steadily busy
/// machine the slow count costs a handful of windows per run. A window more than
/// [`Adaptive::SLOWDOWN`] times slower than the last at the same count (another process has
/// started) triggers a try at once.
#[derive(Debug, Clone)]
pub struct Adaptive {
    counts: Vec<usize>,
    current: usize,
    rates: Vec<Option<f64>>,
    warmed_up: bool,
    trying_from: Option<usize>,
    explore_every: usize,
    windows_since_try: usize,
}

impl Adaptive {
    /// Windows between tries on a steady machine, at first.
    pub const EXPLORE_EVERY: usize = 16;
    /// The longest interval between tries, in windows.
    pub const MAX_EXPLORE_EVERY: usize = 256;
    /// A window this many times slower than the last at its count means the machine changed.
    pub const SLOWDOWN: f64 = 1.5;

    /// Steers among `counts` (most first, as [`candidates`] gives them), starting at the first.
    ///
    /// # Panics
    /// Never: an empty `counts` steers 1 thread.
    pub fn new(counts: Vec<usize>) -> Self {
        let counts = if counts.is_empty() { vec![1] } else { counts };
        let n = counts.len();
        Self { counts, current: 0, rates: vec![None; n], warmed_up: false, trying_from: None, explore_every: Self::EXPLORE_EVERY, windows_since_try: 0 }
    }

    /// The count the next window runs at.
    pub fn threads(&self) -> usize {
        self.counts[self.current]
    }

    /// Takes the seconds per step of the window just run at [`Self::threads`] and returns the
    /// count for the next one.
    pub fn record(&mut self, seconds_per_step: f64) -> usize {
        if self.counts.len() == 1 || !seconds_per_step.is_finite() {
            return self.threads();
        }
        if !self.warmed_up {
            self.warmed_up = true;
            return self.threads();
        }
        let before = self.rates[self.current].replace(seconds_per_step);
        // First, every count once.
        if let Some(unmeasured) = self.rates.iter().position(Option::is_none) {
            self.current = unmeasured;
            return self.threads();
        }
        let fastest = self.fastest();
        if self.trying_from.take().is_some() {
            if fastest == self.current {
                self.explore_every = Self::EXPLORE_EVERY;
            } else {
                self.explore_every = (self.explore_every * 2).min(Self::MAX_EXPLORE_EVERY);
                self.current = fastest;
            }
            self.windows_since_try = 0;
            return self.threads();
        }
        if self.current != fastest {
            // All measured and the first pass over: settle on the fastest.
            self.current = fastest;
            self.windows_since_try = 0;
            return self.threads();
        }
        self.windows_since_try += 1;
        let slowed = before.is_some_and(|b| seconds_per_step > Self::SLOWDOWN * b);
        if slowed || self.windows_since_try >= self.explore_every {
            // Try the best of the others (their figures may be stale: that is why we try).
            let next = (0..self.counts.len()).filter(|&k| k != self.current).min_by(|&a, &b| self.rate(a).total_cmp(&self.rate(b))).unwrap_or(self.current);
            self.trying_from = Some(self.current);
            self.current = next;
            self.windows_since_try = 0;
        }
        self.threads()
    }

    fn rate(&self, k: usize) -> f64 {
        self.rates[k].unwrap_or(f64::INFINITY)
    }

    fn fastest(&self) -> usize {
        let mut best = 0;
        for k in 1..self.counts.len() {
            if self.rate(k) < self.rate(best) {
                best = k;
            }
        }
        best
    }
}

/// [`Adaptive`] on the clock, for a loop of libtorch work: call [`Steering::step`] after each
/// step; it closes a window once it holds at least [`Steering::MIN_STEPS`] steps and
/// [`Steering::MIN_WINDOW`] of time, and sets libtorch's count for the next.
#[derive(Debug)]
pub struct Steering {
    adaptive: Adaptive,
    start: Instant,
    steps: usize,
}

impl Steering {
    /// Fewest steps in a window. Windows are bounded by time, not steps: a try of a slow count
    /// on a busy machine (7.5 ms a step at 2 threads against 0.6 at 1, measured) costs one
    /// window's time, not sixteen of its steps.
    pub const MIN_STEPS: usize = 2;
    /// Shortest window: long enough for the clock and the scheduler to be fair.
    pub const MIN_WINDOW: Duration = Duration::from_millis(25);

    /// Steers among the process setting's [`candidates`] and applies the first.
    pub fn new() -> Self {
        let adaptive = Adaptive::new(candidates(setting(), cores()));
        apply(adaptive.threads());
        Self { adaptive, start: Instant::now(), steps: 0 }
    }

    /// Counts a finished step; at a window's end, measures it and applies the next count.
    pub fn step(&mut self) {
        self.steps += 1;
        let elapsed = self.start.elapsed();
        if self.steps >= Self::MIN_STEPS && elapsed >= Self::MIN_WINDOW {
            let before = self.adaptive.threads();
            let next = self.adaptive.record(elapsed.as_secs_f64() / self.steps as f64);
            if next != before {
                apply(next);
            }
            self.steps = 0;
            self.start = Instant::now();
        }
    }

    /// The count in use.
    pub fn threads(&self) -> usize {
        self.adaptive.threads()
    }
}

impl Default for Steering {
    fn default() -> Self {
        Self::new()
    }
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

    /// Feeds windows timed by `speed(threads)` and returns the counts each window ran at.
    fn steer(counts: Vec<usize>, windows: usize, speed: impl Fn(usize, usize) -> f64) -> Vec<usize> {
        let mut a = Adaptive::new(counts);
        let mut ran = Vec::new();
        for w in 0..windows {
            let n = a.threads();
            ran.push(n);
            a.record(speed(w, n));
        }
        ran
    }

    #[test]
    fn a_quiet_machine_keeps_two_threads_and_a_busy_one_drops_to_one() {
        // Quiet: 2 threads 15 % faster. Busy: 2 threads 10× slower.
        let quiet = steer(vec![2, 1], 300, |_, n| if n == 2 { 0.74e-3 } else { 0.85e-3 });
        let busy = steer(vec![2, 1], 300, |_, n| if n == 2 { 8.0e-3 } else { 0.9e-3 });
        assert!(quiet[3..].iter().filter(|&&n| n == 2).count() > 280, "{quiet:?}");
        let slow_windows = busy[2..].iter().filter(|&&n| n == 2).count();
        assert!(slow_windows <= 6, "a busy machine ran {slow_windows} windows at 2 threads: {busy:?}");
    }

    #[test]
    fn a_process_that_starts_mid_run_is_followed() {
        let ran = steer(vec![2, 1], 200, |w, n| match (w < 100, n) {
            (true, 2) => 0.74e-3,
            (true, _) => 0.85e-3,
            (false, 2) => 8.0e-3,
            (false, _) => 0.9e-3,
        });
        assert_eq!(ran[99], 2);
        assert!(ran[102..].iter().filter(|&&n| n == 2).count() <= 3, "{:?}", &ran[95..]);
    }

    #[test]
    fn a_fixed_count_is_never_changed() {
        assert!(steer(vec![3], 50, |_, _| 1.0).iter().all(|&n| n == 3));
    }
}
