//! berth without root: what an ordinary user is told when a command needs
//! root; `run` in a user namespace of its own with its connectivity from a
//! user-mode network helper (pasta, or slirp4netns); and the user's own
//! networks, in one namespace per user that a keeper holds and pasta links
//! to the outside, where berth runs itself again as root of that namespace.

pub mod enter;
pub mod keeper;
pub mod net;
pub mod pace;
pub mod refusal;
pub mod run;
