//! The pieces of a container's supervisor that its two images share: the
//! full shim (berth-shim, which creates containers and starts execs) and the monitor (berth-monitor, which an idle shim becomes).
//! Kept to std and libc: the monitor links this crate.

pub mod handover;
pub mod log;

/// Sets or clears FD_CLOEXEC: what crosses an exec between the supervisor's
/// images is chosen descriptor by descriptor.
pub fn set_cloexec(fd: std::os::fd::RawFd, on: bool) {
    // SAFETY: fcntl on a descriptor of this process; flags come from the kernel.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFD);
        let fl = if on {
            fl | libc::FD_CLOEXEC
        } else {
            fl & !libc::FD_CLOEXEC
        };
        libc::fcntl(fd, libc::F_SETFD, fl);
    }
}
