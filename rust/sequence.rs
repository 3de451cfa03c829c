//! Per-run sequence counters (SPEC section 3).
//!
//! A run id is keyed by its UTF-8 bytes (the bindings pass the
//! `surrogatepass` encoding for a `str` holding lone surrogates, which is
//! never valid UTF-8, so the two kinds of key cannot collide). Counters are in
//! `0..=MAX_COUNTER`; every operation checks before it changes anything.

use std::collections::HashMap;

use crate::error::Error;

/// Largest value a counter may hold (`2**63 - 1`).
pub const MAX_COUNTER: u64 = i64::MAX as u64;

/// The counters of one `SequenceGenerator`.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    map: HashMap<Box<[u8]>, u64, foldhash::fast::RandomState>,
}

fn shown(run_id: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(run_id))
}

impl Counters {
    /// No counters.
    pub fn new() -> Self {
        Counters::default()
    }

    /// Counters restored from `(run_id, value)` pairs; a value above
    /// [`MAX_COUNTER`] is refused (`argument` names it).
    pub fn from_entries<I>(entries: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (Box<[u8]>, u64)>,
    {
        let mut map = HashMap::default();
        for (run_id, value) in entries {
            if value > MAX_COUNTER {
                return Err(Error::out_of_range(
                    format!("snapshot[{}]", shown(&run_id)),
                    0,
                    i128::from(MAX_COUNTER),
                    value,
                ));
            }
            map.insert(run_id, value);
        }
        Ok(Counters { map })
    }

    /// Number of runs with a counter.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no run has a counter.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The next value of `run_id` (1 for an unseen run), stored.
    /// At [`MAX_COUNTER`] it fails (argument `run_id`) and changes nothing.
    pub fn next(&mut self, run_id: &[u8]) -> Result<u64, Error> {
        match self.map.get_mut(run_id) {
            Some(counter) if *counter >= MAX_COUNTER => Err(Error::value_error(
                "run_id",
                format!(
                    "run_id {}: sequence would exceed {MAX_COUNTER}",
                    shown(run_id)
                ),
            )),
            Some(counter) => {
                *counter += 1;
                Ok(*counter)
            }
            None => {
                self.map.insert(run_id.into(), 1);
                Ok(1)
            }
        }
    }

    /// The last value handed out for `run_id`, 0 when unseen. Creates nothing.
    pub fn peek(&self, run_id: &[u8]) -> u64 {
        self.map.get(run_id).copied().unwrap_or(0)
    }

    /// Reserve `n` values: returns `(start, stop)` of `range(start, stop)`
    /// and adds `n` to the counter. `n == 0` reserves nothing and creates no
    /// entry. `n < 0` or a counter that would pass [`MAX_COUNTER`] fails
    /// (argument `n`) and changes nothing.
    pub fn next_block(&mut self, run_id: &[u8], n: i64) -> Result<(u64, u64), Error> {
        let current = self.peek(run_id);
        let count = u64::try_from(n)
            .ok()
            .filter(|&count| count <= MAX_COUNTER - current)
            .ok_or_else(|| {
                Error::value_error(
                    "n",
                    format!("n must be >= 0 and keep the counter <= {MAX_COUNTER}, got {n}"),
                )
            })?;
        let start = current + 1;
        if count > 0 {
            let stop = current + count;
            match self.map.get_mut(run_id) {
                Some(counter) => *counter = stop,
                None => {
                    self.map.insert(run_id.into(), stop);
                }
            }
        }
        Ok((start, start + count))
    }

    /// Raise the counter of `run_id` to at least `seq` (creating it, even for 0).
    /// `seq` outside `0..=MAX_COUNTER` fails (argument `seq`).
    pub fn observe(&mut self, run_id: &[u8], seq: i64) -> Result<(), Error> {
        let seq = u64::try_from(seq)
            .map_err(|_| Error::out_of_range("seq", 0, i128::from(MAX_COUNTER), seq))?;
        match self.map.get_mut(run_id) {
            Some(counter) => *counter = (*counter).max(seq),
            None => {
                self.map.insert(run_id.into(), seq);
            }
        }
        Ok(())
    }

    /// Every `(run_id, counter)` pair, in no particular order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], u64)> + '_ {
        self.map.iter().map(|(key, &value)| (&key[..], value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_independent() {
        let mut c = Counters::new();
        assert_eq!(c.next(b"A"), Ok(1));
        assert_eq!(c.next(b"B"), Ok(1));
        assert_eq!(c.next(b"A"), Ok(2));
        assert_eq!(c.peek(b"A"), 2);
        assert_eq!(c.peek(b"C"), 0);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn next_at_max_fails_and_keeps_the_counter() {
        let mut c = Counters::from_entries([(Box::from(&b"r"[..]), MAX_COUNTER - 1)]).unwrap();
        assert_eq!(c.next(b"r"), Ok(MAX_COUNTER));
        let err = c.next(b"r").unwrap_err();
        assert_eq!(err.argument(), Some("run_id"));
        assert_eq!(c.peek(b"r"), MAX_COUNTER);
    }

    #[test]
    fn blocks() {
        let mut c = Counters::new();
        assert_eq!(c.next_block(b"r", 0), Ok((1, 1)));
        assert!(c.is_empty(), "n == 0 creates no entry");
        assert_eq!(c.next_block(b"r", 3), Ok((1, 4)));
        assert_eq!(c.next(b"r"), Ok(4));
        assert_eq!(c.next_block(b"r", -1).unwrap_err().argument(), Some("n"));
        let room = MAX_COUNTER - 4;
        assert!(c.next_block(b"r", i64::MAX).is_err());
        assert_eq!(c.peek(b"r"), 4);
        assert_eq!(c.next_block(b"r", room as i64), Ok((5, MAX_COUNTER + 1)));
        assert_eq!(
            c.next_block(b"r", 0),
            Ok((MAX_COUNTER + 1, MAX_COUNTER + 1))
        );
        assert!(c.next_block(b"r", 1).is_err());
    }

    #[test]
    fn observe_only_raises() {
        let mut c = Counters::new();
        c.observe(b"r", 0).unwrap();
        assert_eq!(c.len(), 1);
        c.observe(b"r", 10).unwrap();
        c.observe(b"r", 3).unwrap();
        assert_eq!(c.peek(b"r"), 10);
        assert_eq!(c.observe(b"r", -1).unwrap_err().argument(), Some("seq"));
        assert_eq!(c.peek(b"r"), 10);
    }

    #[test]
    fn snapshot_round_trip() {
        let mut c = Counters::new();
        c.next(b"a").unwrap();
        c.observe(b"\xed\xa0\x80", 7).unwrap();
        let mut pairs: Vec<(Box<[u8]>, u64)> = c.iter().map(|(k, v)| (Box::from(k), v)).collect();
        pairs.sort();
        let restored = Counters::from_entries(pairs).unwrap();
        assert_eq!(restored.peek(b"a"), 1);
        assert_eq!(restored.peek(b"\xed\xa0\x80"), 7);
        let err = Counters::from_entries([(Box::from(&b"x"[..]), MAX_COUNTER + 1)]).unwrap_err();
        assert_eq!(err.argument(), Some("snapshot[\"x\"]"));
    }
}
