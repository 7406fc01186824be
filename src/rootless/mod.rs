//! berth without root: what an ordinary user is told when a command needs
//! root, and `run` in a user namespace of its own with its connectivity
//! from a user-mode network helper (pasta, or slirp4netns).

pub mod net;
pub mod refusal;
pub mod run;
