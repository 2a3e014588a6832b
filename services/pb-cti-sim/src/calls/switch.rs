//! The calls at the switch: each a set of parties (external numbers and agents' legs),
//! joined, left and ended; far ends reached and answered after their timer.

use super::*;

impl Calls {
    /// A new agent's call, ALERTING until a call's legs say otherwise.
    pub(super) fn open(
        &mut self,
        name: String,
        agent: String,
        endpoint: String,
        media: ChannelType,
        data: Body,
        ticket: Option<Ticket>,
    ) -> CallId {
        let id = self.serial();
        let progress = if media == ChannelType::Telephony {
            Progress::Legs(Vec::new())
        } else {
            Progress::Stage(InteractionState::Alerting)
        };
        self.names.insert(name.clone(), id);
        self.calls.insert(
            id,
            AgentCall {
                name,
                agent,
                endpoint,
                media,
                data,
                progress,
                completed: false,
                revision: 0,
                ticket,
                digits: BTreeMap::new(),
            },
        );
        self.touch(id);
        id
    }

    pub(super) fn switch(&mut self, parties: Vec<Party>) -> SwitchId {
        let id = self.serial();
        self.switches.insert(id, parties);
        id
    }

    /// A new leg of the call, in the call at the switch `switch`.
    pub(super) fn add_leg(
        &mut self,
        id: CallId,
        role: ConversationRole,
        state: ConversationState,
        switch: SwitchId,
    ) {
        let Some(AgentCall {
            name,
            progress: Progress::Legs(legs),
            ..
        }) = self.calls.get_mut(&id)
        else {
            return;
        };
        let name = match role {
            Primary => format!("{name}.p"),
            Consult => format!(
                "{name}.c{}",
                legs.iter().filter(|l| l.role == Consult).count() + 1
            ),
        };
        legs.push(Leg {
            name,
            role,
            state,
            remote: String::new(),
            switch,
        });
        let leg = legs.len() - 1;
        self.touch(id);
        self.join(switch, Party::Agent { call: id, leg });
    }

    pub(super) fn join(&mut self, switch: SwitchId, party: Party) {
        if let Some((id, leg)) = party.leg()
            && let Some(l) = self.leg_mut(id, leg)
        {
            l.switch = switch;
        }
        if let Some(parties) = self.switches.get_mut(&switch) {
            parties.push(party);
        }
        self.remotes(switch);
    }

    /// The leg leaves its call at the switch and ends; a primary takes its live consult
    /// with it.
    pub(super) fn leave(&mut self, id: CallId, leg: usize) {
        let Some(l) = self.leg_mut(id, leg) else {
            return;
        };
        if l.state == Ended {
            return;
        }
        l.state = Ended;
        let (switch, role) = (l.switch, l.role);
        self.touch(id);
        if let Some(parties) = self.switches.get_mut(&switch) {
            parties.retain(|p| *p != Party::Agent { call: id, leg });
            self.check(switch);
        }
        if role == Primary
            && let Some((consult, _)) = self.calls.get(&id).and_then(|c| c.live(Consult))
        {
            self.leave(id, consult);
        }
    }

    /// A call at the switch with fewer than two parties or no agent's leg ends; otherwise
    /// its legs' remotes follow its parties.
    pub(super) fn check(&mut self, switch: SwitchId) {
        let Some(parties) = self.switches.get(&switch) else {
            return;
        };
        if parties.len() >= 2 && parties.iter().any(|p| p.leg().is_some()) {
            self.remotes(switch);
        } else if let Some(parties) = self.switches.remove(&switch) {
            for (id, leg) in parties.iter().filter_map(Party::leg) {
                self.leave(id, leg);
            }
        }
    }

    /// How the other parties see this one: its number, or its agent's endpoint.
    pub(super) fn address(&self, party: &Party) -> String {
        match party {
            Party::External(number) => number.clone(),
            Party::Agent { call, .. } => self
                .calls
                .get(call)
                .map(|c| c.endpoint.clone())
                .unwrap_or_default(),
        }
    }

    /// Every leg in the call at the switch sees the other parties, comma-separated.
    pub(super) fn remotes(&mut self, switch: SwitchId) {
        let Some(parties) = self.switches.get(&switch) else {
            return;
        };
        let addresses: Vec<String> = parties.iter().map(|p| self.address(p)).collect();
        let legs: Vec<(usize, (CallId, usize))> = parties
            .iter()
            .enumerate()
            .filter_map(|(at, p)| Some((at, p.leg()?)))
            .collect();
        for (at, (id, leg)) in legs {
            let remote = addresses
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != at)
                .map(|(_, a)| a.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let changed = match self.leg_mut(id, leg) {
                Some(l) if l.remote != remote => {
                    l.remote = remote;
                    true
                }
                _ => false,
            };
            if changed {
                self.touch(id);
            }
        }
    }

    /// The target joins the call at the switch: another agent gets a new call, ALERTING,
    /// with this data; an external number answers after the answer delay.
    pub(super) fn reach(&mut self, switch: SwitchId, target: Target, data: Body) {
        match target {
            Target::Agent { agent_id, endpoint } => {
                let name = self.name("call");
                let id = self.open(name, agent_id, endpoint, ChannelType::Telephony, data, None);
                self.add_leg(id, Primary, Alerting, switch);
            }
            Target::External(number) => {
                self.join(switch, Party::External(number));
                self.timers.push((self.answer, Timer::Answer(switch)));
            }
        }
    }

    /// The agents' legs DIALING in the call at the switch are answered.
    pub(super) fn connect_dialing(&mut self, switch: SwitchId) {
        let legs: Vec<(CallId, usize)> = self
            .switches
            .get(&switch)
            .map(|parties| parties.iter().filter_map(Party::leg).collect())
            .unwrap_or_default();
        for (id, leg) in legs {
            if self.leg_ref(id, leg).is_some_and(|l| l.state == Dialing) {
                self.set_leg(id, leg, Connected);
            }
        }
    }

    /// A timer is due.
    pub(crate) fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Answer(switch) => self.connect_dialing(switch),
        }
    }

    /// A new call from the agent's telephony channel, DIALING, to the target; its name.
    pub(crate) fn dial(&mut self, agent_id: &str, endpoint: &str, target: Target) -> String {
        let name = self.name("call");
        let id = self.open(
            name.clone(),
            agent_id.to_owned(),
            endpoint.to_owned(),
            ChannelType::Telephony,
            Body::new(),
            None,
        );
        let switch = self.switch(Vec::new());
        self.add_leg(id, Primary, Dialing, switch);
        self.reach(switch, target, Body::new());
        name
    }
}
