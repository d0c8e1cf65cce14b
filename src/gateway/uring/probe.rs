//! Opening a reactor's ring, or saying in one line why this machine cannot have one.
//!
//! The kernel refuses io_uring in several ways that look alike from here: the
//! `kernel.io_uring_disabled` sysctl and a seccomp filter both give EPERM, a memory limit
//! gives ENOMEM, a kernel without it gives ENOSYS, and an older one lacks an operation or a
//! setup flag we use. Each becomes an `Unavailable` whose message names the cause, so the
//! fallback to epoll logs something an operator can act on.

use std::fmt;
use std::io;

use io_uring::{opcode, IoUring, Probe};

/// The operations a reactor's ring submits.
const NEEDED: [(u8, &str); 9] = [
    (opcode::AcceptMulti::CODE, "accept"),
    (opcode::RecvMulti::CODE, "recv"),
    (opcode::Writev::CODE, "writev"),
    (opcode::Timeout::CODE, "timeout"),
    (opcode::AsyncCancel::CODE, "async cancel"),
    (opcode::MsgRingData::CODE, "msg ring"),
    (opcode::Close::CODE, "close"),
    (opcode::Shutdown::CODE, "shutdown"),
    (opcode::PollAdd::CODE, "poll add"),
];

/// Why a ring could not be had.
#[derive(Debug)]
pub enum Unavailable {
    /// `kernel.io_uring_disabled` is 1 (only a group may) or 2 (nobody may).
    Disabled { sysctl: u8 },
    /// EPERM with the sysctl at 0: a seccomp filter (containers' default profiles) or an LSM.
    NotPermitted,
    /// ENOMEM: the locked-memory or cgroup memory limit is too low for the ring.
    NoMemory,
    /// ENOSYS, EINVAL on our setup flags, or an operation missing: a kernel too old.
    TooOld { missing: String },
    /// Anything else the kernel said.
    Other(io::Error),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Disabled { sysctl } => {
                write!(
                    f,
                    "io_uring is disabled by kernel.io_uring_disabled = {sysctl}"
                )
            }
            Unavailable::NotPermitted => {
                write!(f, "io_uring_setup was refused (EPERM): a seccomp filter or security module forbids it")
            }
            Unavailable::NoMemory => write!(
                f,
                "io_uring_setup found no memory (ENOMEM): raise the memlock or cgroup memory limit"
            ),
            Unavailable::TooOld { missing } => {
                write!(
                    f,
                    "this kernel's io_uring lacks {missing} (Linux 6.1 or later is needed)"
                )
            }
            Unavailable::Other(error) => write!(f, "io_uring_setup failed: {error}"),
        }
    }
}

impl std::error::Error for Unavailable {}

/// Opens a ring of `entries` submission slots for one reactor thread: single issuer, task
/// work deferred to our own waits (the reactor is the only thread that submits or reaps).
/// Call it on the thread that will use the ring.
pub fn open(entries: u32) -> Result<IoUring, Unavailable> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
        .map_err(|error| refusal(error, read_sysctl()))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|error| refusal(error, read_sysctl()))?;
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(Unavailable::TooOld {
            missing: missing.join(", "),
        });
    }
    Ok(ring)
}

/// What a failed setup means, given `kernel.io_uring_disabled` (None where unreadable).
fn refusal(error: io::Error, sysctl: Option<u8>) -> Unavailable {
    match error.raw_os_error() {
        Some(libc::EPERM) => match sysctl {
            Some(value @ 1..) => Unavailable::Disabled { sysctl: value },
            _ => Unavailable::NotPermitted,
        },
        Some(libc::ENOMEM) => Unavailable::NoMemory,
        Some(libc::ENOSYS) => Unavailable::TooOld {
            missing: "the io_uring_setup system call".into(),
        },
        // SINGLE_ISSUER (6.0) and DEFER_TASKRUN (6.1) are refused as EINVAL before them.
        Some(libc::EINVAL) => Unavailable::TooOld {
            missing: "IORING_SETUP_DEFER_TASKRUN".into(),
        },
        _ => Unavailable::Other(error),
    }
}

fn read_sysctl() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Makes `io_uring_setup` fail with EPERM on the calling thread and the threads it starts
/// later, as a container's seccomp profile does for a whole process. For tests (this crate's
/// and `tests/uring_faults.rs`): the filter cannot be lifted again.
#[doc(hidden)]
pub fn deny_io_uring_on_this_thread() -> io::Result<()> {
    let filter = [
        // A = the system call number
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain system calls; the filter program outlives the call that copies it, and
    // without SECCOMP_FILTER_FLAG_TSYNC it binds this thread (and threads it starts later) alone.
    let installed = unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &program as *const libc::sock_fprog,
        )
    };
    match installed {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_everything_the_reactor_needs() {
        // The machines this project runs its tests on have Linux 6.18 with io_uring enabled.
        let ring = open(64).unwrap_or_else(|why| panic!("{why}"));
        assert!(ring.params().is_feature_nodrop());
    }

    #[test]
    fn each_refusal_names_its_cause() {
        let eperm = || io::Error::from_raw_os_error(libc::EPERM);
        let cases = [
            (refusal(eperm(), Some(2)), "kernel.io_uring_disabled = 2"),
            (refusal(eperm(), Some(0)), "seccomp"),
            (refusal(eperm(), None), "seccomp"),
            (
                refusal(io::Error::from_raw_os_error(libc::ENOMEM), Some(0)),
                "memlock",
            ),
            (
                refusal(io::Error::from_raw_os_error(libc::ENOSYS), Some(0)),
                "system call",
            ),
            (
                refusal(io::Error::from_raw_os_error(libc::EINVAL), Some(0)),
                "DEFER_TASKRUN",
            ),
            (
                refusal(io::Error::from_raw_os_error(libc::EBADF), Some(0)),
                "failed",
            ),
        ];
        for (why, expected) in cases {
            let text = why.to_string();
            assert!(text.contains(expected), "{text:?} should say {expected:?}");
        }
    }

    #[test]
    fn a_seccomp_refusal_is_reported_as_one() {
        let why = std::thread::spawn(|| {
            deny_io_uring_on_this_thread().expect("a seccomp filter");
            open(64).err()
        })
        .join()
        .unwrap();
        assert!(matches!(why, Some(Unavailable::NotPermitted)), "{why:?}");
        assert!(open(64).is_ok(), "other threads are not filtered");
    }
}
