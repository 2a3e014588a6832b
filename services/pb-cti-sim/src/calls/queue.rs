//! The queue of offers: a customer's call, chat or email waits for a ready agent, is
//! routed to the one idle longest, and goes back to the queue when its agent gives it up.

use super::*;

impl Calls {
    /// Whether offers are waiting.
    pub(crate) fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    /// A customer's call, chat or email joins the queue; its name. Beyond [`QUEUE_CAP`] the
    /// customer gives up at once.
    pub(crate) fn offer(&mut self, offer: Offer) -> Result<String, CtiError> {
        let kind = match offer.media {
            ChannelType::Telephony => "call",
            ChannelType::Chat => "chat",
            ChannelType::Email => "email",
            other => {
                return Err(bad(format!(
                    "an offer is a TELEPHONY, CHAT or EMAIL interaction, not {}",
                    other.as_str()
                )));
            }
        };
        if offer.from.as_deref().is_some_and(|f| f.trim().is_empty()) {
            return Err(bad("the caller's number `from` is empty"));
        }
        self.counts.offered += 1;
        if self.queue.len() >= QUEUE_CAP {
            self.counts.abandoned += 1;
            return Err(invalid(format!(
                "the queue is full ({QUEUE_CAP} offers waiting): the customer gave up"
            )));
        }
        let name = self.name(kind);
        let seq = self.serial();
        let caller = (offer.media == ChannelType::Telephony)
            .then(|| offer.from.unwrap_or_else(|| traffic::phone_number(seq)));
        let ticket = Ticket {
            seq,
            caller,
            only: offer.agent_id,
            excluded: BTreeSet::new(),
        };
        self.queue.insert(
            seq,
            Queued {
                name: name.clone(),
                media: offer.media,
                data: offer.data,
                ticket,
            },
        );
        Ok(name)
    }

    /// The channel became free now (taken, or its last interaction COMPLETED).
    pub(crate) fn freed(&mut self, endpoint: &str) {
        let now = self.serial();
        self.idle.insert(endpoint.to_owned(), now);
    }

    /// Give the waiting offers, oldest first, to these channels: to one of the offer's media
    /// with no interaction that is not COMPLETED, an agent the offer admits, the channel free
    /// the longest.
    pub(crate) fn route(&mut self, candidates: Vec<Candidate>) {
        let mut free: HashMap<ChannelType, Vec<Candidate>> = HashMap::new();
        {
            let taken: HashSet<&str> = self
                .calls
                .values()
                .filter(|c| !c.completed)
                .map(|c| c.endpoint.as_str())
                .collect();
            for c in candidates {
                if !taken.contains(c.endpoint.as_str()) {
                    free.entry(c.media).or_default().push(c);
                }
            }
        }
        let since = |c: &Candidate| self.idle.get(&c.endpoint).copied().unwrap_or(0);
        for list in free.values_mut() {
            list.sort_by(|a, b| (since(a), &a.endpoint).cmp(&(since(b), &b.endpoint)));
        }
        let waiting: Vec<u64> = self.queue.keys().copied().collect();
        for seq in waiting {
            let Some(item) = self.queue.get(&seq) else {
                continue;
            };
            let Some(list) = free.get_mut(&item.media) else {
                continue;
            };
            let Some(at) = list.iter().position(|c| item.ticket.admits(&c.agent_id)) else {
                continue;
            };
            let chosen = list.remove(at);
            if let Some(item) = self.queue.remove(&seq) {
                self.assign(item, chosen);
            }
        }
    }

    /// The offer alerts at the agent's channel (a call: at its phone, the caller on the line).
    pub(super) fn assign(&mut self, item: Queued, to: Candidate) {
        let caller = item.ticket.caller.clone();
        let id = self.open(
            item.name,
            to.agent_id,
            to.endpoint,
            item.media,
            item.data,
            Some(item.ticket),
        );
        if let Some(caller) = caller {
            let switch = self.switch(vec![Party::External(caller)]);
            self.add_leg(id, Primary, Alerting, switch);
        }
    }

    /// An ALERTING interaction leaves its agent, COMPLETED: an offer goes back to the queue
    /// (without this agent when `refused`, the caller waiting again), another agent's call
    /// is declined.
    pub(super) fn give_up(&mut self, id: CallId, refused: bool) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let back = call.ticket.clone().map(|mut ticket| {
            if refused {
                ticket.excluded.insert(call.agent.clone());
            }
            Queued {
                name: call.name.clone(),
                media: call.media,
                data: call.data.clone(),
                ticket,
            }
        });
        if let Some((leg, switch)) = call.live(Primary).map(|(at, l)| (at, l.switch)) {
            if back.is_some() {
                self.switches.remove(&switch);
            }
            self.leave(id, leg);
        }
        self.close(id);
        if let Some(item) = back {
            self.queue.insert(item.ticket.seq, item);
        }
    }

    /// The agent logs out: its ALERTING interactions leave it, its ENDED ones are COMPLETED.
    pub(crate) fn give_back(&mut self, agent_id: &str) {
        let mine: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.agent == agent_id && !c.completed)
            .map(|(id, _)| *id)
            .collect();
        for id in mine {
            match self.calls.get(&id).map(AgentCall::state) {
                Some(InteractionState::Alerting) => self.give_up(id, false),
                Some(InteractionState::Ended) => {
                    self.close(id);
                    self.counts.completed += 1;
                }
                _ => {}
            }
        }
    }
}
