//! The system calls std and socket2 lack here, and the only `unsafe` of the load generator:
//! raising RLIMIT_NOFILE (every connection is a file descriptor), IP_BIND_ADDRESS_NO_PORT, and
//! the clock tick rate /proc's CPU times are counted in. Each `unsafe` block is a plain libc
//! call on values of its own stack frame or a descriptor the caller owns.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid rlimit; the call only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// Lets many sockets share a source address: the port is chosen at connect time per
/// destination, not at bind time among all ports (IP_BIND_ADDRESS_NO_PORT, Linux 4.2+). A
/// kernel without it leaves the bind as it was, so the failure is ignored.
pub(crate) fn bind_address_no_port(socket: &Socket) {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd the caller owns and a pointer to a c_int that outlives the call.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The unit of /proc/PID/stat's utime and stime (USER_HZ).
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf takes no pointers; _SC_CLK_TCK is a valid name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        let soft = raise_nofile_limit().unwrap();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
        assert_eq!(numbers[0], soft.to_string());
        assert_eq!(numbers[0], numbers[1]);
    }

    #[test]
    fn a_bind_without_port_leaves_the_port_to_connect() {
        use socket2::{Domain, SockAddr, Type};
        let address = SockAddr::from(std::net::SocketAddr::from(([127, 0, 0, 3], 0)));
        let plain = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        plain.bind(&address).unwrap();
        let deferred = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        bind_address_no_port(&deferred);
        deferred.bind(&address).unwrap();
        let port = |s: &Socket| s.local_addr().unwrap().as_socket().unwrap().port();
        assert_ne!(port(&plain), 0, "a plain bind reserves an ephemeral port");
        assert_eq!(
            port(&deferred),
            0,
            "IP_BIND_ADDRESS_NO_PORT defers it to connect"
        );
    }

    #[test]
    fn clock_ticks_are_user_hz() {
        assert_eq!(clock_ticks_per_second(), 100.0);
    }
}
