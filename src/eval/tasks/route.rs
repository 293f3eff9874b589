//! Routing a small → large cascade by a signal known before the tests run: the small
//! answer's mean token log-probability. One run of both models on every problem gives the
//! whole sweep — every threshold that changes a decision, with its pass rate and cost — and
//! how well the signal separates the small model's passes from its failures (AUROC). Next to
//! the oracle cascade (escalate exactly the failures, [`super::run::Policy::CascadeOracle`])
//! this says what a better router could still win.
//!
//! Costing a single threshold is [`super::run::cost_cascade`]; this file only chooses the
//! thresholds and summarizes.

use super::run::{cost_cascade, Policy, PolicyCost, ProblemRun};
use serde::Serialize;

/// One threshold of the log-probability router: escalate where the small answer's mean token
/// log-probability is below `threshold`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    pub threshold: f64,
    /// Problems sent to the large model.
    pub escalated: usize,
    pub cost: PolicyCost,
    /// No other threshold solves at least as many problems for at most the same dollars per
    /// accepted output (and one of the two strictly).
    pub front: bool,
}

/// Every threshold that changes a decision, from escalating nothing to escalating all: each
/// distinct first-attempt mean log-probability of the small model (escalating the problems
/// strictly below it), then +∞. `large` must hold a run of every problem (`--large-all`).
pub fn logprob_sweep(
    small: &[ProblemRun],
    large: &[Option<ProblemRun>],
) -> Result<Vec<SweepPoint>, String> {
    let mut ts: Vec<f64> = small
        .iter()
        .filter_map(|r| r.attempts.first().map(|a| a.mean_logprob))
        .filter(|x| x.is_finite())
        .collect();
    ts.sort_by(f64::total_cmp);
    ts.dedup();
    ts.push(f64::INFINITY);
    let mut out = Vec::with_capacity(ts.len());
    for t in ts {
        let escalated = small
            .iter()
            .filter(|r| r.attempts.first().is_some_and(|a| a.mean_logprob < t))
            .count();
        let cost = cost_cascade(small, large, &Policy::CascadeLogprob(t))?;
        out.push(SweepPoint {
            threshold: t,
            escalated,
            cost,
            front: false,
        });
    }
    let key = |p: &SweepPoint| (p.cost.passed, p.cost.usd_per_accepted().unwrap_or(f64::MAX));
    for i in 0..out.len() {
        let (pa, ua) = key(&out[i]);
        out[i].front = !out.iter().any(|o| {
            let (pb, ub) = key(o);
            pb >= pa && ub <= ua && (pb > pa || ub < ua)
        });
    }
    Ok(out)
}

/// How well the small model's mean log-probability separates its passing first answers from
/// its failing ones: the probability that a random passing answer scores above a random
/// failing one (ties count half) — 0.5 is no signal, 1 a perfect router. `None` without both.
pub fn logprob_auroc(small: &[ProblemRun]) -> Option<f64> {
    let firsts: Vec<(f64, bool)> = small
        .iter()
        .filter_map(|r| r.attempts.first().map(|a| (a.mean_logprob, a.passed)))
        .collect();
    let pass: Vec<f64> = firsts.iter().filter(|x| x.1).map(|x| x.0).collect();
    let fail: Vec<f64> = firsts.iter().filter(|x| !x.1).map(|x| x.0).collect();
    if pass.is_empty() || fail.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for p in &pass {
        for f in &fail {
            wins += if p > f {
                1.0
            } else if p == f {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (pass.len() * fail.len()) as f64)
}

/// The router's best pass rate when it may escalate as many problems as the oracle does (the
/// small model's failures): the sweep point with the most escalations not above that count.
pub fn at_oracle_budget(sweep: &[SweepPoint], oracle_escalations: usize) -> Option<&SweepPoint> {
    sweep
        .iter()
        .filter(|p| p.escalated <= oracle_escalations)
        .max_by_key(|p| (p.escalated, p.cost.passed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tasks::run::tests::a;

    fn run(id: &str, x: crate::eval::tasks::run::Attempt) -> ProblemRun {
        crate::eval::tasks::run::tests::run(id, vec![x])
    }

    #[test]
    fn the_sweep_walks_every_threshold_that_changes_a_decision() {
        // small: costs 1 each; large: costs 10 each, passes 2, 3 and 4
        let small = vec![
            run("1", a(true, 1.0, -0.1)),
            run("2", a(false, 1.0, -0.3)),
            run("3", a(true, 1.0, -0.3)),
            run("4", a(false, 1.0, -0.9)),
        ];
        let large: Vec<Option<ProblemRun>> = vec![
            Some(run("1", a(false, 10.0, -0.1))),
            Some(run("2", a(true, 10.0, -0.1))),
            Some(run("3", a(true, 10.0, -0.1))),
            Some(run("4", a(true, 10.0, -0.1))),
        ];
        let s = logprob_sweep(&small, &large).unwrap();
        // thresholds -0.9 (none), -0.3 (escalate 4), -0.1 (2, 3, 4), +inf (all)
        let got: Vec<(f64, usize, usize, f64)> = s
            .iter()
            .map(|p| (p.threshold, p.escalated, p.cost.passed, p.cost.work.usd))
            .collect();
        assert_eq!(
            got,
            vec![
                (-0.9, 0, 2, 4.0),
                (-0.3, 1, 3, 14.0),
                (-0.1, 3, 4, 34.0),
                (f64::INFINITY, 4, 3, 44.0),
            ]
        );
        // $/accepted: 2, 4.67, 8.5, 14.67: the first three are each best at their pass rate
        let front: Vec<bool> = s.iter().map(|p| p.front).collect();
        assert_eq!(front, vec![true, true, true, false]);
        // the oracle escalates the two failures: with two escalations allowed the router
        // reaches the -0.3 point (one escalation, 3 solved)
        let b = at_oracle_budget(&s, 2).unwrap();
        assert_eq!((b.escalated, b.cost.passed), (1, 3));
        // passes score -0.1 and -0.3, failures -0.3 and -0.9: pairs (p > f) 1 + 1 + 0.5 + 1
        assert_eq!(logprob_auroc(&small), Some(3.5 / 4.0));
        // the sweep needs the large model everywhere
        let partial = vec![None, None, None, Some(run("4", a(true, 10.0, -0.1)))];
        assert!(logprob_sweep(&small, &partial).is_err());
        assert_eq!(logprob_auroc(&small[..1]), None);
    }
}
