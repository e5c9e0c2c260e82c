//! Receiving several datagrams with one system call (`recvmmsg(2)`).
//!
//! The relay's per-packet cost is dominated by system calls. Reading one datagram at a time
//! costs one extra `recvfrom` per wake-up just to learn that the queue is empty; `recvmmsg`
//! with room for a few datagrams returns fewer than it had room for exactly when the queue was
//! drained, so the caller can stop without that extra call. The buffers belong to the batch
//! and are reused: nothing is allocated per packet.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams read by one call; at 50 packets a second per leg one is the norm.
pub const BATCH: usize = 4;
/// Room for one datagram: RTP on an Ethernet path never exceeds the MTU.
pub const PACKET: usize = 1500;

pub struct RecvBatch {
    buffers: Box<[[u8; PACKET]; BATCH]>,
    lengths: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            buffers: Box::new([[0; PACKET]; BATCH]),
            lengths: [0; BATCH],
            sources: [None; BATCH],
        }
    }
}

impl RecvBatch {
    /// Reads up to [`BATCH`] datagrams from the non-blocking socket `fd`; `WouldBlock` when
    /// none is queued. A count below [`BATCH`] means the queue was empty when the call returned.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: every pointer handed to the kernel points into `self` (buffers, addresses)
        // or into the local arrays below, all of which outlive the call; lengths match the
        // sizes of what they point to; the kernel writes at most those lengths.
        unsafe {
            let mut addresses: [libc::sockaddr_storage; BATCH] = std::mem::zeroed();
            let mut iovecs: [libc::iovec; BATCH] = std::mem::zeroed();
            let mut messages: [libc::mmsghdr; BATCH] = std::mem::zeroed();
            for i in 0..BATCH {
                iovecs[i] = libc::iovec {
                    iov_base: self.buffers[i].as_mut_ptr().cast(),
                    iov_len: PACKET,
                };
                messages[i].msg_hdr.msg_name =
                    (&mut addresses[i] as *mut libc::sockaddr_storage).cast();
                messages[i].msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as u32;
                messages[i].msg_hdr.msg_iov = &mut iovecs[i];
                messages[i].msg_hdr.msg_iovlen = 1;
            }
            let received = libc::recvmmsg(
                fd,
                messages.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            );
            if received < 0 {
                return Err(io::Error::last_os_error());
            }
            let received = received as usize;
            for i in 0..received {
                self.lengths[i] = messages[i].msg_len as usize;
                self.sources[i] = socket_addr(&addresses[i]);
            }
            Ok(received)
        }
    }

    /// The `i`th datagram of the last [`recv`](Self::recv) and where it came from.
    pub fn packet(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr)> {
        let source = self.sources.get(i).copied().flatten()?;
        let length = self.lengths[i].min(PACKET);
        Some((&mut self.buffers[i][..length], source))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_short_batch_means_the_queue_was_drained() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
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
}
