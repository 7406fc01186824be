//! Writing to stdout and stderr as `ip` and `docker` do: when the reader
//! goes away (`berth ps | head -1`), berth ends at once by SIGPIPE, quietly,
//! instead of panicking in `println!` (Rust ignores SIGPIPE, so a write
//! to a closed pipe is an error, and `println!` turns it into a panic).
//!
//! Every line the CLI prints goes through [`outln!`], [`out!`] or
//! [`errln!`]. Dying there is safe: a command prints after its
//! transaction, and any berth command may be killed at any instant anyway.

use std::fmt;
use std::io::{self, Write};

/// Writes to stdout; ends the process as SIGPIPE would when the reader
/// has gone.
pub fn stdout(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        failed(e);
    }
}

/// Writes raw bytes to stdout (a completion script), as [`stdout`].
pub fn stdout_bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        failed(e);
    }
}

/// Writes to stderr, as [`stdout`].
pub fn stderr(args: fmt::Arguments<'_>) {
    if let Err(e) = io::stderr().lock().write_fmt(args) {
        failed(e);
    }
}

/// Writes to stderr and carries on whatever happens: for what `run` says
/// before its command starts, which must not stop the command from
/// running and its sandbox from being taken away afterwards.
pub fn stderr_lenient(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Ends the process as a write would, when stdout is a pipe whose reader
/// has gone: for `logs -f`, which may wait long between writes.
pub fn end_if_reader_gone() {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one pollfd, on the stack, for the duration of the call.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    // A pipe's writing end reports POLLERR once its reader closed it.
    if ready == 1 && fd.revents & libc::POLLERR != 0 {
        die_of_sigpipe();
    }
}

fn failed(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        die_of_sigpipe();
    }
    // Output that cannot be written (a full disk) cannot be reported on
    // stdout either; stderr is the best remaining chance.
    let _ = writeln!(io::stderr(), "berth: writing output: {e}");
    std::process::exit(1)
}

/// Ends the process the way a C program (or Go, for stdout and stderr)
/// ends on a write to a closed pipe: killed by SIGPIPE, which a shell
/// shows as status 141.
fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default action of a signal and raising it
    // touch no memory of this process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Reached only if the signal is blocked: the same status by hand.
    std::process::exit(128 + libc::SIGPIPE)
}

/// `println!` for the CLI: see the module documentation.
macro_rules! outln {
    () => { $crate::cli::out::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::out::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` for the CLI.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::stdout(format_args!($($arg)*)) };
}

/// `eprintln!` for the CLI.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::out::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {errln, out, outln};
