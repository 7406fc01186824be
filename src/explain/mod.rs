//! Read-only answers to 'why': trace, doctor, graph, inspect.

pub mod trace;
