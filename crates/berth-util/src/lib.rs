//! Small helpers several crates share and none owns: crash-safe file
//! writes and tree walks (`fs`), a BPF assembler for the seccomp filters and
//! the cgroup programs (`bpf`), Go's durations and Docker's human ones
//! (`gotime`). No dependencies on other Berth crates.

pub mod bpf;
pub mod fs;
pub mod gotime;
pub mod units;
