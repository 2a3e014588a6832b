//! The lab CTI's side of interactions: offers and hang-ups, dialing, and each action on an
//! interaction or one of its legs, checked against the agent and its channels before
//! [`crate::calls`] acts.

use super::*;

impl Lab {
    /// Every interaction at the CTI that is not COMPLETED, and the queue.
    pub fn interactions(&self) -> admin::Interactions {
        self.calls.listing()
    }

    /// A customer's call, chat or email joins the queue (for one agent only if it names
    /// one), and goes to an agent when one is ready.
    pub fn offer(&mut self, offer: admin::Offer) -> Outcome<admin::Offered> {
        if let Some(agent_id) = &offer.agent_id {
            self.agent(agent_id)?;
        }
        let name = self.calls.offer(offer)?;
        Ok((admin::Offered { name }, self.settle()))
    }

    /// The customer of an interaction (or of an offer waiting) leaves.
    pub fn hangup(&mut self, interaction: &str) -> Outcome<Done> {
        self.calls.hangup(interaction)?;
        Ok((Done {}, self.settle()))
    }

    /// One of the agent's interactions as it is now.
    pub fn interaction(&self, agent_id: &str, name: &str) -> Result<InteractionSnapshot, CtiError> {
        self.link_up()?;
        self.agent(agent_id)?;
        self.calls.snapshot(agent_id, name)
    }

    /// Place a call from a telephony channel the agent holds, DIALING, to another agent
    /// (by id or endpoint), or to an external number, which answers after a while.
    pub fn dial(
        &mut self,
        agent_id: &str,
        endpoint: &str,
        destination: &str,
    ) -> Outcome<InteractionSnapshot> {
        self.line(agent_id, endpoint)?;
        let target = self.target(agent_id, destination)?;
        let name = self.calls.dial(agent_id, endpoint, target);
        self.finish(agent_id, &name)
    }

    /// Act on one of the agent's interactions or on one of its legs.
    pub fn act(
        &mut self,
        agent_id: &str,
        interaction: &str,
        action: Action,
    ) -> Outcome<InteractionSnapshot> {
        self.usable_agent(agent_id)?;
        let id = self.calls.find(agent_id, interaction)?;
        match action {
            Action::Accept => self.calls.accept(id),
            Action::Reject => self.calls.reject(id),
            Action::Complete => self.calls.complete(id),
            Action::SetData { data } => self.calls.set_data(id, data),
            Action::Consult { destination } => self.consult(agent_id, id, &destination),
            Action::Transfer => self.calls.transfer(id),
            Action::Conference => self.calls.conference(id),
            Action::Alternate => self.calls.alternate(id),
            Action::Answer { leg } => self.calls.answer(id, &leg),
            Action::Release { leg } => self.calls.release(id, &leg),
            Action::Hold { leg } => self.calls.hold(id, &leg),
            Action::Retrieve { leg } => self.calls.retrieve(id, &leg),
            Action::BlindTransfer { leg, destination } => {
                self.blind(agent_id, id, &leg, &destination, false)
            }
            Action::BlindConference { leg, destination } => {
                self.blind(agent_id, id, &leg, &destination, true)
            }
            Action::SendDtmf { leg, digits } => self.calls.send_dtmf(id, &leg, &digits),
        }?;
        self.finish(agent_id, interaction)
    }

    pub(super) fn consult(
        &mut self,
        agent_id: &str,
        id: CallId,
        destination: &str,
    ) -> Result<(), CtiError> {
        self.calls.can_consult(id)?;
        let target = self.target(agent_id, destination)?;
        self.calls.consult(id, target);
        Ok(())
    }

    pub(super) fn blind(
        &mut self,
        agent_id: &str,
        id: CallId,
        leg: &str,
        destination: &str,
        stays: bool,
    ) -> Result<(), CtiError> {
        let leg = self.calls.can_blind(id, leg)?;
        let target = self.target(agent_id, destination)?;
        self.calls.blind(id, leg, target, stays);
        Ok(())
    }

    /// Settle, and answer with the interaction as the operation left it (or as it is, if
    /// unchanged): what settling did to it follows in the events.
    pub(super) fn finish(&mut self, agent_id: &str, name: &str) -> Outcome<InteractionSnapshot> {
        let events = self.settle();
        let published = events.iter().find_map(|e| match e {
            AgentEvent::InteractionChanged {
                agent_id: to,
                interaction,
            } if to == agent_id && interaction.name == name => Some(interaction.clone()),
            _ => None,
        });
        let snapshot = match published {
            Some(snapshot) => snapshot,
            None => self.calls.snapshot(agent_id, name)?,
        };
        Ok((snapshot, events))
    }

    /// Check that `endpoint` is a telephony channel the agent holds with nothing live on it.
    pub(super) fn line(&mut self, agent_id: &str, endpoint: &str) -> Result<(), CtiError> {
        let live = self.calls.live_on(endpoint);
        let (_, channel) = self.channel_of(agent_id, endpoint)?;
        if channel.media != ChannelType::Telephony {
            return Err(err(
                CtiErrorCode::BadRequest,
                format!("channel `{endpoint}` is not a TELEPHONY channel: it cannot dial"),
            ));
        }
        if channel.holder.as_deref() != Some(agent_id) {
            return Err(err(
                CtiErrorCode::InvalidState,
                format!("agent `{agent_id}` does not hold channel `{endpoint}`"),
            ));
        }
        if live {
            return Err(err(
                CtiErrorCode::InvalidState,
                format!("channel `{endpoint}` has a live interaction: consult from it instead"),
            ));
        }
        Ok(())
    }

    /// Whom a call from `from` to `destination` reaches: an agent (by id or by endpoint)
    /// that holds a telephony channel with nothing live on it, or else an external number.
    pub(super) fn target(&self, from: &str, destination: &str) -> Result<Target, CtiError> {
        let destination = destination.trim();
        if destination.is_empty() {
            return Err(err(CtiErrorCode::BadRequest, "the destination is empty"));
        }
        let (agent_id, endpoint) = if self.agents.contains_key(destination) {
            (destination, self.phone_of(destination)?)
        } else if let Some(channel) = self
            .places
            .values()
            .flatten()
            .find(|c| c.endpoint == destination)
        {
            if channel.media != ChannelType::Telephony {
                return Err(err(
                    CtiErrorCode::BadRequest,
                    format!(
                        "channel `{destination}` is not a TELEPHONY channel: it cannot be called"
                    ),
                ));
            }
            let holder = channel.holder.as_deref().ok_or_else(|| {
                err(
                    CtiErrorCode::InvalidState,
                    format!("channel `{destination}` is not available: nobody holds it"),
                )
            })?;
            (holder, destination)
        } else {
            return Ok(Target::External(destination.to_owned()));
        };
        if agent_id == from {
            return Err(unavailable(agent_id, "an agent cannot call itself"));
        }
        if self.leaving.contains_key(agent_id) {
            return Err(unavailable(agent_id, "it is logging out"));
        }
        if self.calls.live_on(endpoint) {
            return Err(unavailable(agent_id, "busy"));
        }
        Ok(Target::Agent {
            agent_id: agent_id.to_owned(),
            endpoint: endpoint.to_owned(),
        })
    }

    /// The telephony channel a logged-in agent holds.
    pub(super) fn phone_of(&self, agent_id: &str) -> Result<&str, CtiError> {
        let place = self
            .logged_in
            .get(agent_id)
            .ok_or_else(|| unavailable(agent_id, "not logged in"))?;
        self.places
            .get(place)
            .into_iter()
            .flatten()
            .find(|c| c.media == ChannelType::Telephony && c.holder.as_deref() == Some(agent_id))
            .map(|c| c.endpoint.as_str())
            .ok_or_else(|| unavailable(agent_id, "it holds no telephony channel"))
    }
}
