//! The one checked reader for the binary formats tapwire parses by hand (HTTP/2 frame
//! headers, Kafka and AMQP framing, DNS-over-TCP lengths, the spool's pcapng blocks):
//! fixed-width integers at an offset. Every read returns `None` past the end; callers never
//! index bytes directly. What a crate parses (etherparse, hickory-proto, kafka-protocol,
//! amq-protocol, pcap-file) is not read here. The host-order readers are for the kernel's
//! TPACKET structures in the capture ring (`agent/src/capture/ring.rs`).

/// `N` bytes at `at`, if `b` holds them.
#[inline]
pub fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Big-endian `u16` at `at`.
#[inline]
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    array(b, at).map(u16::from_be_bytes)
}

/// Big-endian 24-bit unsigned integer at `at` (HTTP/2 frame lengths).
#[inline]
pub fn be24(b: &[u8], at: usize) -> Option<u32> {
    array::<3>(b, at).map(|[x, y, z]| u32::from_be_bytes([0, x, y, z]))
}

/// Big-endian `u32` at `at`.
#[inline]
pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    array(b, at).map(u32::from_be_bytes)
}

/// Big-endian `i16` at `at`.
#[inline]
pub fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    array(b, at).map(i16::from_be_bytes)
}

/// Big-endian `i32` at `at`.
#[inline]
pub fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    array(b, at).map(i32::from_be_bytes)
}

/// Little-endian `u32` at `at`.
#[inline]
pub fn le32(b: &[u8], at: usize) -> Option<u32> {
    array(b, at).map(u32::from_le_bytes)
}

/// Host-order `u16` at `at` (kernel structures).
#[inline]
pub fn ne16(b: &[u8], at: usize) -> Option<u16> {
    array(b, at).map(u16::from_ne_bytes)
}

/// Host-order `u32` at `at` (kernel structures).
#[inline]
pub fn ne32(b: &[u8], at: usize) -> Option<u32> {
    array(b, at).map(u32::from_ne_bytes)
}

/// Host-order `u64` at `at` (kernel structures).
#[inline]
pub fn ne64(b: &[u8], at: usize) -> Option<u64> {
    array(b, at).map(u64::from_ne_bytes)
}

/// The NUL-terminated string at the start of `b` (lossily decoded) and the bytes after its
/// NUL; `None` without a NUL.
pub fn cstr(b: &[u8]) -> Option<(String, &[u8])> {
    let end = b.iter().position(|x| *x == 0)?;
    Some((
        String::from_utf8_lossy(b.get(..end)?).into_owned(),
        b.get(end + 1..)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_bounds_and_nothing_past_the_end() {
        let b = [0x01, 0x02, 0x03, 0x04, 0xff];
        assert_eq!(be16(&b, 0), Some(0x0102));
        assert_eq!(be24(&b, 1), Some(0x020304));
        assert_eq!(be32(&b, 1), Some(0x020304ff));
        assert_eq!(le32(&b, 0), Some(0x04030201));
        assert_eq!(be_i16(&b, 3), Some(0x04ff));
        assert_eq!(be_i32(&b, 1), Some(0x020304ff));
        assert_eq!(be32(&b, 2), None);
        assert_eq!(be16(&b, usize::MAX), None, "no overflow on a huge offset");
        assert_eq!(be24(&[], 0), None);
        assert_eq!(ne32(&b, 0), Some(u32::from_ne_bytes([1, 2, 3, 4])));
        assert_eq!(ne16(&b, 4), None);
        assert_eq!(ne64(&b, 0), None);
    }
}
