//! A leg's two UDP sockets: RTP on an even port and RTCP on the odd port above it
//! (RFC 3550 §11).
//!
//! Binding a pair costs a call four system calls to open (two `socket`, two `bind`, and the
//! reactor's two `epoll_ctl`) and two to close, plus the kernel's work behind each. The engine
//! therefore keeps the pair of a closed leg bound and registered, up to a budget, for the next
//! leg on the same port ([`super::engine::MediaSettings::idle_sockets`]); its reactor keeps
//! reading it meanwhile and counts what arrives as strays, so an idle port is as deaf as a
//! closed one but costs no system call to open again.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use super::batch;

/// The RTP and RTCP sockets of one leg, non-blocking, each reporting the datagrams the kernel
/// drops on it ([`batch::count_overflows`]).
#[derive(Debug)]
pub struct LegSockets {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    /// Where `rtp` is bound.
    pub rtp_addr: SocketAddr,
}

impl LegSockets {
    /// Binds `port` and `port + 1` on `ip`.
    pub fn bind(ip: IpAddr, port: u16) -> io::Result<LegSockets> {
        let rtcp_port = port
            .checked_add(1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no port above for RTCP"))?;
        let rtp = bind(SocketAddr::new(ip, port))?;
        Ok(LegSockets {
            rtp_addr: rtp.local_addr()?,
            rtp,
            rtcp: bind(SocketAddr::new(ip, rtcp_port))?,
        })
    }

    pub fn rtp_fd(&self) -> RawFd {
        self.rtp.as_raw_fd()
    }

    pub fn rtcp_fd(&self) -> RawFd {
        self.rtcp.as_raw_fd()
    }
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM.nonblocking(),
        Some(socket2::Protocol::UDP),
    )?;
    socket.bind(&addr.into())?;
    // Losses are then counted rather than silent; a kernel without it still relays.
    let _ = batch::count_overflows(socket.as_raw_fd());
    Ok(socket.into())
}
