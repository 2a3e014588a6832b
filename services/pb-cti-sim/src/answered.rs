//! The answers to recent changes made for a bridge request, by their
//! [`pb_cti::REQUEST_KEY_HEADER`]: a repeat of the same change is answered as the first
//! time, without acting again (what a CTI platform's invoke or reference ids give).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long an answer is remembered: the reply cache's window.
pub(crate) const REMEMBERED_FOR: Duration = pb_runtime::reply_cache::RETENTION;

/// At most this many answers are remembered (the oldest go first).
pub(crate) const REMEMBERED_AT_MOST: usize = 50_000;

/// Recent answers, oldest first.
#[derive(Debug)]
pub struct Answered {
    window: Duration,
    most: usize,
    order: VecDeque<(Instant, String)>,
    answers: HashMap<String, Vec<u8>>,
}

impl Default for Answered {
    fn default() -> Self {
        Self::new(REMEMBERED_FOR, REMEMBERED_AT_MOST)
    }
}

impl Answered {
    pub fn new(window: Duration, most: usize) -> Self {
        Self {
            window,
            most,
            order: VecDeque::new(),
            answers: HashMap::new(),
        }
    }

    /// The answer given to `key` of operation `op`, if remembered.
    pub fn get(&mut self, op: &str, key: &str, now: Instant) -> Option<Vec<u8>> {
        self.forget_old(now);
        self.answers.get(&Self::slot(op, key)).cloned()
    }

    /// Remember `answer` for `key` of operation `op`.
    pub fn put(&mut self, op: &str, key: &str, answer: Vec<u8>, now: Instant) {
        self.forget_old(now);
        let slot = Self::slot(op, key);
        if self.answers.insert(slot.clone(), answer).is_none() {
            self.order.push_back((now, slot));
        }
        while self.order.len() > self.most {
            self.drop_oldest();
        }
    }

    fn slot(op: &str, key: &str) -> String {
        format!("{op} {key}")
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= self.window)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((_, slot)) = self.order.pop_front() {
            self.answers.remove(&slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_finds_the_first_answer_for_the_same_operation_only() {
        let mut a = Answered::default();
        let now = Instant::now();
        a.put("act", "t r1 #0", b"first".to_vec(), now);
        assert_eq!(a.get("act", "t r1 #0", now), Some(b"first".to_vec()));
        assert_eq!(a.get("setstate", "t r1 #0", now), None);
        assert_eq!(a.get("act", "t r1 #1", now), None);
    }

    #[test]
    fn answers_are_forgotten_after_the_window_or_past_the_bound() {
        let mut a = Answered::new(Duration::from_secs(10), 2);
        let now = Instant::now();
        a.put("act", "k1", vec![1], now);
        a.put("act", "k2", vec![2], now);
        a.put("act", "k3", vec![3], now);
        assert_eq!(
            a.get("act", "k1", now),
            None,
            "past the bound: the oldest goes"
        );
        assert_eq!(a.get("act", "k3", now), Some(vec![3]));
        let later = now + Duration::from_secs(10);
        assert_eq!(a.get("act", "k3", later), None, "past the window");
        assert!(a.order.is_empty() && a.answers.is_empty());
    }
}
