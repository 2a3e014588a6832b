//! Agents and their channels at the lab CTI: login to a place, activate and deactivate a
//! channel, agent states (pending while an interaction is live), logout, and channels
//! added to or removed from a place at the CTI.

use super::*;

impl Lab {
    /// Authenticate an agent and log it into a place (default: its own). Logging in again
    /// at the same place changes nothing.
    pub fn login(
        &mut self,
        agent_id: &str,
        password: &str,
        place: Option<&str>,
    ) -> Outcome<AgentSnapshot> {
        let agent = self.usable_agent(agent_id)?;
        if agent.password != password {
            return Err(err(
                CtiErrorCode::BadCredentials,
                format!("wrong password for agent `{agent_id}`"),
            ));
        }
        let place = place.unwrap_or(&agent.place).to_owned();
        if !self.places.contains_key(&place) {
            return Err(err(
                CtiErrorCode::BadRequest,
                format!("the CTI knows no place `{place}`"),
            ));
        }
        if let Some(current) = self.logged_in.get(agent_id)
            && *current != place
        {
            return Err(err(
                CtiErrorCode::InvalidState,
                format!("agent `{agent_id}` is logged in at `{current}`; log out first"),
            ));
        }
        self.logged_in.insert(agent_id.to_owned(), place.clone());
        Ok((self.snapshot_of(agent_id, &place), Vec::new()))
    }

    /// The channel `endpoint` of the place `agent_id` is logged into.
    pub(super) fn channel_of(
        &mut self,
        agent_id: &str,
        endpoint: &str,
    ) -> Result<(String, &mut Channel), CtiError> {
        self.usable_agent(agent_id)?;
        let place = self.logged_in.get(agent_id).cloned().ok_or_else(|| {
            err(
                CtiErrorCode::InvalidState,
                format!("agent `{agent_id}` is not logged in at the CTI"),
            )
        })?;
        let channel = self
            .places
            .get_mut(&place)
            .and_then(|cs| cs.iter_mut().find(|c| c.endpoint == endpoint))
            .ok_or_else(|| {
                err(
                    CtiErrorCode::BadRequest,
                    format!("place `{place}` has no channel `{endpoint}`"),
                )
            })?;
        Ok((place, channel))
    }

    /// A logged-in agent takes a channel of its place (no change if it holds it already).
    pub fn activate(&mut self, agent_id: &str, endpoint: &str) -> Outcome<ChannelSnapshot> {
        let (place, channel) = self.channel_of(agent_id, endpoint)?;
        match channel.holder.as_deref() {
            Some(holder) if holder == agent_id => return Ok((channel.snapshot(), Vec::new())),
            Some(holder) => {
                return Err(err(
                    CtiErrorCode::InvalidState,
                    format!("channel `{endpoint}` is held by agent `{holder}`"),
                ));
            }
            None => {}
        }
        channel.set(Some(agent_id.to_owned()), AgentState::NotReady, None);
        let channel = channel.clone();
        self.calls.freed(endpoint);
        let events = self.changed(&place, &channel, None);
        Ok((channel.snapshot(), events))
    }

    /// An agent gives a channel back (no change if it does not hold it); not while an
    /// interaction on it is live.
    pub fn deactivate(&mut self, agent_id: &str, endpoint: &str) -> Outcome<ChannelSnapshot> {
        let live = self.calls.live_on(endpoint);
        let (place, channel) = self.channel_of(agent_id, endpoint)?;
        if channel.holder.as_deref() != Some(agent_id) {
            return Ok((channel.snapshot(), Vec::new()));
        }
        if live {
            return Err(err(
                CtiErrorCode::InvalidState,
                format!("channel `{endpoint}` has a live interaction"),
            ));
        }
        channel.set(None, AgentState::NotReady, None);
        let channel = channel.clone();
        let who = agent_id.to_owned();
        let events = self.changed(&place, &channel, Some(&who));
        Ok((channel.snapshot(), events))
    }

    /// Give every channel back and leave the place; [`AgentEvent::LoggedOut`] follows. While
    /// the agent dials or handles an interaction, the logout waits for it to end
    /// ([`AgentSnapshot::logout_pending`]). Logging out an agent that is not logged in
    /// changes nothing.
    pub fn logout(&mut self, agent_id: &str, reason: Option<String>) -> Outcome<AgentSnapshot> {
        self.link_up()?;
        let own = self.agent(agent_id)?.place.clone();
        let Some(place) = self.logged_in.get(agent_id).cloned() else {
            return Ok((self.snapshot_of(agent_id, &own), Vec::new()));
        };
        self.leaving.insert(agent_id.to_owned(), reason);
        let events = self.settle();
        Ok((self.snapshot_of(agent_id, &place), events))
    }

    /// The logout takes effect: the agent's alerting interactions leave it, its ended ones
    /// are COMPLETED, its channels are given back.
    pub(super) fn log_out_now(&mut self, agent_id: &str, reason: Option<String>) -> Vec<Outgoing> {
        self.calls.give_back(agent_id);
        let Some(place) = self.logged_in.remove(agent_id) else {
            return Vec::new();
        };
        let mut freed = Vec::new();
        for channel in self.places.get_mut(&place).into_iter().flatten() {
            if channel.holder.as_deref() == Some(agent_id) {
                channel.set(None, AgentState::NotReady, None);
                freed.push(channel.clone());
            }
        }
        let who = agent_id.to_owned();
        let mut events = Vec::new();
        for channel in freed {
            events.extend(self.changed(&place, &channel, Some(&who)));
        }
        events.push(AgentEvent::LoggedOut {
            agent_id: who,
            reason_code: reason,
        });
        events
    }

    /// Add a channel to a place (an administrator's change at the CTI).
    pub(crate) fn add_channel(
        &mut self,
        place: &str,
        endpoint: &str,
        media: ChannelType,
    ) -> Outcome<Done> {
        self.link_up()?;
        if self
            .places
            .values()
            .flatten()
            .any(|c| c.endpoint == endpoint)
        {
            return Err(err(
                CtiErrorCode::InvalidState,
                format!("channel `{endpoint}` already exists"),
            ));
        }
        let Some(channels) = self.places.get_mut(place) else {
            return Err(err(
                CtiErrorCode::BadRequest,
                format!("the CTI knows no place `{place}`"),
            ));
        };
        let mut channel = Channel::new(endpoint, media);
        channel.revision = self.revision_base;
        channels.push(channel.clone());
        let events = self
            .audience(place, &[])
            .into_iter()
            .map(|who| AgentEvent::ChannelAdded {
                agent_id: who,
                place: place.to_owned(),
                channel: channel.snapshot(),
            })
            .collect();
        Ok((Done {}, events))
    }

    /// Remove a channel nobody holds from a place.
    pub(crate) fn remove_channel(&mut self, place: &str, endpoint: &str) -> Outcome<Done> {
        self.link_up()?;
        let Some(channels) = self.places.get_mut(place) else {
            return Err(err(
                CtiErrorCode::BadRequest,
                format!("the CTI knows no place `{place}`"),
            ));
        };
        let Some(at) = channels.iter().position(|c| c.endpoint == endpoint) else {
            return Err(err(
                CtiErrorCode::BadRequest,
                format!("place `{place}` has no channel `{endpoint}`"),
            ));
        };
        if let Some(holder) = &channels[at].holder {
            return Err(err(
                CtiErrorCode::InvalidState,
                format!("channel `{endpoint}` is held by agent `{holder}`"),
            ));
        }
        let removed = channels.remove(at);
        let logged_here: Vec<String> = self
            .logged_in
            .iter()
            .filter(|(_, p)| p.as_str() == place)
            .map(|(a, _)| a.clone())
            .collect();
        let mut audience = self.audience(place, &[]);
        for agent in logged_here {
            if !audience.contains(&agent) {
                audience.push(agent);
            }
        }
        let events = audience
            .into_iter()
            .map(|who| AgentEvent::ChannelRemoved {
                agent_id: who,
                place: place.to_owned(),
                endpoint: removed.endpoint.clone(),
                media: removed.media,
            })
            .collect();
        Ok((Done {}, events))
    }

    /// Set an agent's state on a channel it holds. While an interaction on the channel is
    /// live, the change waits for it to end ([`ChannelSnapshot::pending_state`]).
    pub(crate) fn set_state(
        &mut self,
        agent_id: &str,
        endpoint: &str,
        state: AgentState,
        reason: Option<String>,
    ) -> Outcome<ChannelSnapshot> {
        let busy = self.calls.live_on(endpoint);
        let (place, channel) = self.channel_of(agent_id, endpoint)?;
        if channel.holder.as_deref() != Some(agent_id) {
            return Err(err(
                CtiErrorCode::InvalidState,
                format!("agent `{agent_id}` does not hold channel `{endpoint}`"),
            ));
        }
        let reason = match state {
            AgentState::NotReady | AgentState::WorkNotReady => reason,
            AgentState::Ready | AgentState::WorkReady => None,
        };
        let changed = if busy {
            channel.wait(state, reason)
        } else {
            channel.change(state, reason)
        };
        let channel = channel.clone();
        if channel.pending.is_some() {
            self.waiting.insert(endpoint.to_owned(), place.clone());
        }
        let mut events = if changed {
            self.changed(&place, &channel, None)
        } else {
            Vec::new()
        };
        events.extend(self.settle());
        Ok((channel.snapshot(), events))
    }
}
