//! Receiving and sending several datagrams per system call (`recvmmsg(2)`, `sendmmsg(2)`).
//!
//! The relay's per-packet cost is dominated by system calls. `recvmmsg` with room for several
//! datagrams returns fewer than it had room for exactly when the queue was drained, so the
//! caller learns that without an extra empty read. What a batch read goes out through
//! [`RecvBatch::send`] in one `sendmmsg`, from the buffers it arrived in: nothing is allocated
//! or copied per packet, and the headers the kernel reads are built once and only re-armed.
//!
//! Each datagram also reports, when its socket has `SO_RXQ_OVFL` set ([`count_overflows`]),
//! how many datagrams the kernel dropped on that socket so far because its receive queue was
//! full: the relay accounts for those losses instead of merely suffering them.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams read by one call. At 50 packets a second per leg one is the norm; a burst (a
/// peer catching up, or a flood) is read 32 at a time.
pub const BATCH: usize = 32;
/// Room for one datagram: RTP on an Ethernet path never exceeds the MTU. A longer datagram
/// is reported as truncated.
pub(crate) const PACKET: usize = 1500;

/// Room for one `SO_RXQ_OVFL` control message (a `u32`), aligned as `cmsghdr` requires.
const CONTROL: usize = 32;

/// The headers of one batch, built once; every call re-arms the fields the kernel rewrites.
struct Headers {
    messages: [libc::mmsghdr; BATCH],
    iovecs: [libc::iovec; BATCH],
    addresses: [libc::sockaddr_storage; BATCH],
    controls: [[u64; CONTROL / 8]; BATCH],
}

/// Buffers and headers for [`BATCH`] datagrams, reused for every read and send.
pub struct RecvBatch {
    buffers: Box<[[u8; PACKET]; BATCH]>,
    headers: Box<Headers>,
    lengths: [u16; BATCH],
    sources: [Option<SocketAddr>; BATCH],
    /// The socket's drop count reported with each datagram (`SO_RXQ_OVFL`), if any.
    overflows: [Option<u32>; BATCH],
    truncated: [bool; BATCH],
    /// Headers of the last send, apart from the receive ones so that a send from this batch
    /// does not disturb what was received.
    send: Box<SendHeaders>,
}

struct SendHeaders {
    messages: [libc::mmsghdr; BATCH],
    iovecs: [libc::iovec; BATCH],
    address: libc::sockaddr_storage,
}

// SAFETY: the raw pointers inside the headers only ever point into buffers owned by the same
// batch, and are re-armed before each system call; moving the batch to another thread moves
// everything they point to with it.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        // SAFETY: all-zero is a valid value for these plain C structures (null pointers,
        // zero lengths), and each is fully armed before the kernel sees it.
        let (headers, send) =
            unsafe { (Box::new(std::mem::zeroed()), Box::new(std::mem::zeroed())) };
        RecvBatch {
            buffers: Box::new([[0; PACKET]; BATCH]),
            headers,
            lengths: [0; BATCH],
            sources: [None; BATCH],
            overflows: [None; BATCH],
            truncated: [false; BATCH],
            send,
        }
    }
}

impl RecvBatch {
    /// Reads up to [`BATCH`] datagrams from the non-blocking socket `fd`; `WouldBlock` when
    /// none is queued. A count below [`BATCH`] means the queue was empty when the call returned.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let h = &mut *self.headers;
        for i in 0..BATCH {
            h.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: PACKET,
            };
            let m = &mut h.messages[i].msg_hdr;
            m.msg_name = (&raw mut h.addresses[i]).cast();
            m.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            m.msg_iov = &raw mut h.iovecs[i];
            m.msg_iovlen = 1;
            m.msg_control = h.controls[i].as_mut_ptr().cast();
            m.msg_controllen = CONTROL as _;
            m.msg_flags = 0;
        }
        // SAFETY: every pointer armed above points into `self`, which outlives the call; each
        // length matches what it points to, and the kernel writes at most those lengths.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                h.messages.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let received = received as usize;
        for i in 0..received {
            let m = &h.messages[i];
            self.truncated[i] = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.lengths[i] = (m.msg_len as usize).min(PACKET) as u16;
            self.sources[i] = socket_addr(&h.addresses[i]);
            self.overflows[i] = overflow_count(&m.msg_hdr);
        }
        Ok(received)
    }

    /// Puts `data` from `source` in the `i`th place, as if [`recv`](Self::recv) had read it
    /// there: a datagram handed over in memory ([`super::local`]).
    pub(crate) fn load(&mut self, i: usize, source: SocketAddr, data: &[u8]) {
        let n = data.len().min(PACKET);
        self.buffers[i][..n].copy_from_slice(&data[..n]);
        self.lengths[i] = n as u16;
        self.sources[i] = Some(source);
        self.overflows[i] = None;
        self.truncated[i] = data.len() > PACKET;
    }

    /// The `i`th datagram of the last [`recv`](Self::recv) and where it came from; `None` if
    /// its source is not an IP address.
    pub fn packet(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr)> {
        let source = self.sources.get(i).copied().flatten()?;
        let length = usize::from(self.lengths[i]);
        Some((&mut self.buffers[i][..length], source))
    }

    /// Whether the `i`th datagram was longer than [`PACKET`] (and is cut short).
    pub(crate) fn truncated(&self, i: usize) -> bool {
        self.truncated[i]
    }

    /// How many datagrams the kernel had dropped on the socket, in all, when the `i`th one was
    /// queued: reported only by a socket with [`count_overflows`], and only once it dropped one.
    pub fn overflows(&self, i: usize) -> Option<u32> {
        self.overflows[i]
    }

    /// Sends the datagrams at `indices` (as they are now: rewritten in place) to `to` from the
    /// non-blocking socket `fd`, with one system call. Returns how many left: the first that
    /// could not (a full socket buffer) ends the call, and the rest are not sent.
    pub(crate) fn send(&mut self, fd: RawFd, to: SocketAddr, indices: &[u8]) -> io::Result<usize> {
        let count = indices.len().min(BATCH);
        if count == 0 {
            return Ok(0);
        }
        let s = &mut *self.send;
        let name_len = write_socket_addr(to, &mut s.address);
        for (n, &i) in indices[..count].iter().enumerate() {
            let i = usize::from(i);
            s.iovecs[n] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: usize::from(self.lengths[i]),
            };
            let m = &mut s.messages[n].msg_hdr;
            m.msg_name = (&raw mut s.address).cast();
            m.msg_namelen = name_len;
            m.msg_iov = &raw mut s.iovecs[n];
            m.msg_iovlen = 1;
            m.msg_control = std::ptr::null_mut();
            m.msg_controllen = 0;
            m.msg_flags = 0;
        }
        // SAFETY: as for `recv`; the kernel only reads the buffers and the address.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                s.messages.as_mut_ptr(),
                count as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

/// Asks the kernel to report, with each datagram received on `fd`, how many it dropped on
/// that socket because the receive queue was full (`SO_RXQ_OVFL`).
pub fn count_overflows(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a plain setsockopt with a pointer to a local int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn overflow_count(message: &libc::msghdr) -> Option<u32> {
    if message.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of control messages;
    // the CMSG macros walk them within that length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(message);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL {
                return Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<u32>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(message, cmsg);
        }
    }
    None
}

fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in, which fits in sockaddr_storage.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6, which fits in sockaddr_storage.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` as a C socket address into `storage`; returns its length.
fn write_socket_addr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is aligned for it.
            let out = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            out.sin_family = libc::AF_INET as libc::sa_family_t;
            out.sin_port = v4.port().to_be();
            out.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            out.sin_zero = [0; 8];
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is aligned for it.
            let out = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = v6.port().to_be();
            out.sin6_flowinfo = v6.flowinfo();
            out.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            out.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        (receiver, sender)
    }

    #[test]
    fn a_short_batch_means_the_queue_was_drained() {
        let (receiver, sender) = pair();
        let mut batch = RecvBatch::default();
        let empty = batch.recv(receiver.as_raw_fd()).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);

        for i in 0..(BATCH as u8 + 2) {
            sender
                .send_to(&[i; 10], receiver.local_addr().unwrap())
                .unwrap();
        }
        // Loopback delivers synchronously: all are queued now.
        assert_eq!(batch.recv(receiver.as_raw_fd()).unwrap(), BATCH);
        let (first, from) = batch.packet(0).unwrap();
        assert_eq!(first, &[0u8; 10]);
        assert_eq!(from, sender.local_addr().unwrap());
        assert_eq!(
            batch.recv(receiver.as_raw_fd()).unwrap(),
            2,
            "short: drained"
        );
        assert_eq!(batch.packet(1).unwrap().0[0], BATCH as u8 + 1);
    }

    #[test]
    fn what_was_received_goes_out_in_one_call_as_rewritten() {
        let (receiver, sender) = pair();
        let (sink, _) = pair();
        for i in 0..5u8 {
            sender
                .send_to(&[i; 20], receiver.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = RecvBatch::default();
        assert_eq!(batch.recv(receiver.as_raw_fd()).unwrap(), 5);
        batch.packet(3).unwrap().0[0] = 0xee;
        let sent = batch
            .send(receiver.as_raw_fd(), sink.local_addr().unwrap(), &[1, 3, 4])
            .unwrap();
        assert_eq!(sent, 3);
        let mut got = [0u8; 64];
        let mut heads = Vec::new();
        while let Ok((n, from)) = sink.recv_from(&mut got) {
            assert_eq!((n, from), (20, receiver.local_addr().unwrap()));
            heads.push(got[0]);
        }
        assert_eq!(heads, [1, 0xee, 4], "in order, as rewritten, each once");
    }

    #[test]
    fn datagrams_the_kernel_dropped_are_reported_with_the_next_one() {
        let receiver = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM.nonblocking(),
            None,
        )
        .unwrap();
        receiver.set_recv_buffer_size(4096).unwrap();
        receiver
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let to = receiver.local_addr().unwrap().as_socket().unwrap();
        count_overflows(receiver.as_raw_fd()).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Far more than a 4 KiB queue holds: most are dropped by the kernel.
        let offered = 200;
        for _ in 0..offered {
            sender.send_to(&[7; 200], to).unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut received = 0;
        while let Ok(n) = batch.recv(receiver.as_raw_fd()) {
            received += n;
        }
        assert!(received < offered, "the queue overflowed");
        // One more, queued after the drops: it carries their count.
        sender.send_to(&[8; 200], to).unwrap();
        assert_eq!(batch.recv(receiver.as_raw_fd()).unwrap(), 1);
        assert_eq!(
            batch.overflows(0),
            Some((offered - received) as u32),
            "every datagram is either received or counted"
        );
    }

    #[test]
    fn an_oversized_datagram_is_reported_truncated() {
        let (receiver, sender) = pair();
        sender
            .send_to(&[1; PACKET + 100], receiver.local_addr().unwrap())
            .unwrap();
        sender
            .send_to(&[2; 100], receiver.local_addr().unwrap())
            .unwrap();
        let mut batch = RecvBatch::default();
        assert_eq!(batch.recv(receiver.as_raw_fd()).unwrap(), 2);
        assert!(batch.truncated(0));
        assert!(!batch.truncated(1));
    }
}
