//! Connection caps, the same rule on every listener (HTTP, FTP, SFTP): at
//! most `total` connections at once, and at most `per_address` from one
//! source address, so that one client cannot take every slot. A connection
//! holds a [`Permit`] for its whole life; dropping it frees the slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The caps of one listener; cheap to clone (the count is shared).
#[derive(Debug, Clone)]
pub struct ConnectionCaps {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: usize,
    per_address: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the server has {0} connections open, its limit")]
    Total(usize),
    #[error("this address has {0} connections open, the limit per address")]
    PerAddress(usize),
}

/// One open connection's slot.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    address: IpAddr,
}

impl ConnectionCaps {
    /// `0` for either cap means no cap.
    pub fn new(total: usize, per_address: usize) -> Self {
        let cap = |n: usize| if n == 0 { usize::MAX } else { n };
        Self {
            inner: Arc::new(Inner {
                total: cap(total),
                per_address: cap(per_address),
                open: Mutex::default(),
            }),
        }
    }

    /// A slot for a new connection from `address`, if the caps allow one.
    pub fn admit(&self, address: IpAddr) -> Result<Permit, Refused> {
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.inner.total {
            return Err(Refused::Total(self.inner.total));
        }
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        if from_address >= self.inner.per_address {
            return Err(Refused::PerAddress(self.inner.per_address));
        }
        open.total += 1;
        open.by_address.insert(address, from_address + 1);
        Ok(Permit {
            inner: self.inner.clone(),
            address,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.open.lock().map(|o| o.total).unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total_and_frees_slots_on_drop() {
        let caps = ConnectionCaps::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refused::PerAddress(2));
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), Refused::Total(3));
        drop(a1);
        assert_eq!(caps.open(), 2);
        assert!(caps.admit(a).is_ok());
    }
}
