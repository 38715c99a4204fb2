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

/// Writes all of `data` to `fd`, which may be non-blocking. Input to the
/// container is rare and small: a full pipe briefly blocks the writer rather
/// than losing keystrokes. Gives up on any other error.
pub fn write_all_fd(fd: std::os::fd::RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing from a valid slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Some(libc::EINTR) => {}
            _ => return,
        }
    }
}
