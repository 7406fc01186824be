//! Read-only answers to "why": trace, doctor, graph, inspect.

pub mod doctor;
pub mod graph;
pub mod inspect;
pub mod trace;
