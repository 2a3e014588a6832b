//! Generated traffic: calls, chats and emails offered at the rates of [`Traffic`], evenly
//! spaced, with attached data like a contact centre's. Pure: [`crate::run`] sleeps and
//! offers what [`Pacer::due`] says.

use std::time::Duration;

use pb_protocol::Body;
use pb_protocol::channel::ChannelType;
use serde_json::Value;

use crate::admin::{Offer, Traffic};

/// The highest rate of each media, offers per second.
pub(crate) const MAX_RATE: f64 = 1000.0;

/// The interval at [`MAX_RATE`]: no media is offered faster.
const MIN_STEP: Duration = Duration::from_millis(1);

/// The media generated, in the order of a generated place's channels: offers due at the
/// same time are made in this order.
const MEDIA: [ChannelType; 3] = [
    ChannelType::Telephony,
    ChannelType::Email,
    ChannelType::Chat,
];

const REASONS: [&str; 4] = ["billing", "new order", "delivery", "cancellation"];
const CUSTOMERS: [&str; 6] = [
    "Marie Curie",
    "Nikola Tesla",
    "Rosalind Franklin",
    "Alan Kay",
    "Lise Meitner",
    "Claude Shannon",
];
const TOPICS: [&str; 4] = ["password reset", "order status", "refund", "upgrade"];
const SUBJECTS: [&str; 4] = [
    "Invoice question",
    "Where is my parcel?",
    "Change of address",
    "Complaint",
];

/// A rate as given, if it is one: finite, 0 to [`MAX_RATE`].
pub(crate) fn check_rate(rate: f64) -> Result<f64, String> {
    if rate.is_finite() && (0.0..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("a rate is 0 to {MAX_RATE} offers per second"))
    }
}

/// Every rate of `traffic` checked, naming the bad one.
pub fn check(traffic: &Traffic) -> Result<(), String> {
    for (what, rate) in [
        ("calls", traffic.calls),
        ("chats", traffic.chats),
        ("emails", traffic.emails),
    ] {
        check_rate(rate).map_err(|reason| format!("{what}: {reason}"))?;
    }
    Ok(())
}

/// A generated `+1555` number, the same for the same seed.
pub(crate) fn phone_number(seed: u64) -> String {
    format!("+1555{:07}", seed.wrapping_mul(2_654_435_761) % 10_000_000)
}

fn pick<'a>(list: &[&'a str], n: u64) -> &'a str {
    list[(n % list.len() as u64) as usize]
}

/// The `n`th generated offer of a media, with its attached data.
pub fn offer(media: ChannelType, n: u64) -> Offer {
    let caller = phone_number(n);
    let data = match media {
        ChannelType::Telephony => body([
            ("caller", Value::from(caller.as_str())),
            (
                "accountId",
                Value::from(format!("ACC-{:06}", n % 1_000_000)),
            ),
            ("reason", Value::from(pick(&REASONS, n))),
        ]),
        ChannelType::Chat => body([
            ("customer", Value::from(pick(&CUSTOMERS, n))),
            ("topic", Value::from(pick(&TOPICS, n))),
        ]),
        _ => body([
            ("from", Value::from(format!("customer{n}@example.com"))),
            ("subject", Value::from(pick(&SUBJECTS, n))),
        ]),
    };
    Offer {
        media,
        data,
        from: (media == ChannelType::Telephony).then_some(caller),
        agent_id: None,
    }
}

fn body<const N: usize>(pairs: [(&str, Value); N]) -> Body {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// When the next offer of each media is due, on a clock that starts at zero.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    /// By [`MEDIA`]: the time of the next offer and the interval; none at rate 0 (or at a
    /// rate so low that its next offer is beyond the clock).
    next: [Option<(Duration, Duration)>; 3],
    /// Offers made so far: the seed of the next one's data.
    made: u64,
}

impl Pacer {
    /// Offers at these rates from `now`, the first of each media one interval later.
    pub fn new(rates: Traffic, now: Duration) -> Self {
        let mut pacer = Self {
            next: [None; 3],
            made: 0,
        };
        pacer.set(rates, now);
        pacer
    }

    /// New rates from `now` (one that is not a number of offers per second stops its media;
    /// one above [`MAX_RATE`] counts as that).
    pub fn set(&mut self, rates: Traffic, now: Duration) {
        for (next, media) in self.next.iter_mut().zip(MEDIA) {
            let rate = match media {
                ChannelType::Telephony => rates.calls,
                ChannelType::Chat => rates.chats,
                _ => rates.emails,
            };
            *next = Duration::try_from_secs_f64(1.0 / rate)
                .ok()
                .map(|step| step.max(MIN_STEP))
                .and_then(|step| Some((now.checked_add(step)?, step)));
        }
    }

    /// How long after `now` the next offer is due; none while every rate is 0.
    pub fn wait(&self, now: Duration) -> Option<Duration> {
        self.next
            .iter()
            .flatten()
            .map(|(at, _)| at.saturating_sub(now))
            .min()
    }

    /// The offers due by `now`, each media's evenly spaced.
    pub fn due(&mut self, now: Duration) -> Vec<Offer> {
        let mut offers = Vec::new();
        for (next, media) in self.next.iter_mut().zip(MEDIA) {
            while let Some((at, step)) = *next
                && at <= now
            {
                self.made += 1;
                offers.push(offer(media, self.made));
                *next = at.checked_add(step).map(|at| (at, step));
            }
        }
        offers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(calls: f64, chats: f64, emails: f64) -> Traffic {
        Traffic {
            calls,
            chats,
            emails,
        }
    }

    fn count(offers: &[Offer], media: ChannelType) -> usize {
        offers.iter().filter(|o| o.media == media).count()
    }

    #[test]
    fn offers_are_evenly_spaced_at_their_rates() {
        let mut pacer = Pacer::new(traffic(10.0, 2.0, 0.0), Duration::ZERO);
        assert_eq!(pacer.wait(Duration::ZERO), Some(Duration::from_millis(100)));
        assert!(pacer.due(Duration::from_millis(99)).is_empty());
        let first = pacer.due(Duration::from_millis(100));
        assert_eq!(count(&first, ChannelType::Telephony), 1);
        let second = pacer.due(Duration::from_secs(1));
        assert_eq!(count(&second, ChannelType::Telephony), 9);
        assert_eq!(count(&second, ChannelType::Chat), 2);
        assert_eq!(count(&second, ChannelType::Email), 0);
        assert_eq!(
            pacer.wait(Duration::from_secs(1)),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn rates_change_and_stop() {
        let mut pacer = Pacer::new(Traffic::default(), Duration::ZERO);
        assert_eq!(
            pacer.wait(Duration::ZERO),
            None,
            "nothing to wait for at rate 0"
        );
        assert!(pacer.due(Duration::from_secs(60)).is_empty());
        pacer.set(traffic(0.0, 0.0, 4.0), Duration::from_secs(60));
        let offers = pacer.due(Duration::from_secs(61));
        assert_eq!(count(&offers, ChannelType::Email), 4);
        pacer.set(Traffic::default(), Duration::from_secs(61));
        assert!(pacer.due(Duration::from_secs(120)).is_empty());
    }

    #[test]
    fn generated_offers_carry_data() {
        let call = offer(ChannelType::Telephony, 7);
        assert_eq!(call.from.as_deref(), call.data["caller"].as_str());
        assert!(call.data["caller"].as_str().unwrap().starts_with("+1555"));
        assert_eq!(call.data["caller"].as_str().unwrap().len(), 12);
        assert!(call.data["accountId"].as_str().unwrap().starts_with("ACC-"));
        assert!(REASONS.contains(&call.data["reason"].as_str().unwrap()));
        let chat = offer(ChannelType::Chat, 8);
        assert!(chat.from.is_none());
        assert!(chat.data.contains_key("customer") && chat.data.contains_key("topic"));
        let email = offer(ChannelType::Email, 9);
        assert!(
            email.data["from"]
                .as_str()
                .unwrap()
                .ends_with("@example.com")
        );
        assert!(email.data.contains_key("subject"));
    }

    #[test]
    fn rates_are_checked() {
        assert!(check(&traffic(1.5, 0.0, MAX_RATE)).is_ok());
        let e = check(&traffic(0.0, -1.0, 0.0)).unwrap_err();
        assert!(e.starts_with("chats:"), "{e}");
        assert!(check(&traffic(f64::NAN, 0.0, 0.0)).is_err());
        assert!(check_rate(MAX_RATE + 1.0).is_err());
    }
}
