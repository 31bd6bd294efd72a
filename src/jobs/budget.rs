//! A memory budget for image workers: a counting semaphore over estimated bytes, so many huge
//! images in flight wait for each other instead of exhausting memory, whatever the thread
//! count. An image larger than the whole budget runs alone.

use std::sync::{Condvar, Mutex};

/// Memory the image workers may hold at once (input bytes, decoded planes, progressive
/// coefficient buffers).
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// Bounded memory for image workers: a counting semaphore over estimated bytes.
pub struct Budget {
    total: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

pub struct Lease<'a> {
    budget: &'a Budget,
    amount: u64,
}

impl Budget {
    pub fn new(total: u64) -> Budget {
        Budget {
            total: total.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Wait until `amount` fits (an amount over the whole budget waits until nothing else
    /// runs, then runs alone).
    pub fn acquire(&self, amount: u64) -> Lease<'_> {
        let amount = amount.min(self.total);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 && *used + amount > self.total {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += amount;
        Lease {
            budget: self,
            amount,
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(self.amount);
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn budget_bounds_concurrent_use() {
        let b = Arc::new(Budget::new(100));
        let peak = Arc::new(Mutex::new((0u64, 0u64))); // (now, max)
        let mut handles = Vec::new();
        for _ in 0..8 {
            let (b, peak) = (b.clone(), peak.clone());
            handles.push(std::thread::spawn(move || {
                for _ in 0..20 {
                    let _l = b.acquire(40);
                    {
                        let mut p = peak.lock().unwrap();
                        p.0 += 40;
                        p.1 = p.1.max(p.0);
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    peak.lock().unwrap().0 -= 40;
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(peak.lock().unwrap().1 <= 80);
        // Larger than the budget: runs alone, does not deadlock.
        drop(b.acquire(1000));
    }
}
