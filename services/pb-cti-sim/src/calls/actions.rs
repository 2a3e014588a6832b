//! What agents and customers do to an interaction: hang up, accept, reject, complete, set
//! data, answer, release, hold, retrieve, consult, transfer, conference, alternate, blind
//! transfer or conference, DTMF.

use super::*;

impl Calls {
    /// The customer leaves: an offer waiting is dropped; a call's external parties hang up;
    /// a chat or an email is closed.
    pub(crate) fn hangup(&mut self, name: &str) -> Result<(), CtiError> {
        if let Some(seq) = self
            .queue
            .iter()
            .find(|(_, q)| q.name == name)
            .map(|(seq, _)| *seq)
        {
            self.queue.remove(&seq);
            self.counts.abandoned += 1;
            return Ok(());
        }
        let (id, call) = self
            .named_call(name)
            .ok_or_else(|| bad(format!("the CTI has no interaction or offer `{name}`")))?;
        let state = call.state();
        if !state.is_live() {
            return Err(invalid(format!(
                "interaction `{name}` is {}: its customer has left already",
                upper(state)
            )));
        }
        let switches: Option<Vec<SwitchId>> = match &call.progress {
            Progress::Legs(legs) => Some(
                legs.iter()
                    .filter(|l| l.state != Ended)
                    .map(|l| l.switch)
                    .collect(),
            ),
            Progress::Stage(_) => None,
        };
        match switches {
            Some(switches) => self.drop_externals(name, switches)?,
            None => self.set_stage(id, InteractionState::Ended),
        }
        if state == InteractionState::Alerting {
            self.counts.abandoned += 1;
        }
        Ok(())
    }

    /// Every external party of these calls at the switch hangs up.
    pub(super) fn drop_externals(
        &mut self,
        name: &str,
        switches: Vec<SwitchId>,
    ) -> Result<(), CtiError> {
        let external = |p: &Party| matches!(p, Party::External(_));
        let any = switches.iter().any(|s| {
            self.switches
                .get(s)
                .is_some_and(|ps| ps.iter().any(external))
        });
        if !any {
            return Err(invalid(format!(
                "call `{name}` has no external party to hang up"
            )));
        }
        for switch in switches {
            if let Some(parties) = self.switches.get_mut(&switch) {
                parties.retain(|p| !external(p));
            }
            self.check(switch);
        }
        Ok(())
    }

    /// Take an ALERTING interaction: a chat or an email STARTS, a call's primary is answered.
    pub(crate) fn accept(&mut self, id: CallId) -> Result<(), CtiError> {
        let call = self.call(id)?;
        call.expect(
            InteractionState::Alerting,
            "an ALERTING interaction can be accepted",
        )?;
        match call.live(Primary).map(|(leg, _)| leg) {
            Some(leg) => self.answer_leg(id, leg),
            None => self.set_stage(id, InteractionState::Started),
        }
        Ok(())
    }

    /// Give an ALERTING interaction back: COMPLETED for this agent, an offer back in the
    /// queue for the others.
    pub(crate) fn reject(&mut self, id: CallId) -> Result<(), CtiError> {
        self.call(id)?.expect(
            InteractionState::Alerting,
            "an ALERTING interaction can be rejected",
        )?;
        self.give_up(id, true);
        Ok(())
    }

    /// Finish an ENDED interaction, or a STARTED chat or email.
    pub(crate) fn complete(&mut self, id: CallId) -> Result<(), CtiError> {
        let call = self.call(id)?;
        match (call.state(), &call.progress) {
            (InteractionState::Ended, _) | (InteractionState::Started, Progress::Stage(_)) => {}
            (InteractionState::Started, Progress::Legs(_)) => {
                return Err(invalid(format!(
                    "call `{}` is STARTED: release the call first",
                    call.name
                )));
            }
            (state, _) => {
                return Err(invalid(format!(
                    "interaction `{}` is {}: only an ENDED interaction, or a STARTED chat or \
                     email, can be completed",
                    call.name,
                    upper(state)
                )));
            }
        }
        self.close(id);
        self.counts.completed += 1;
        Ok(())
    }

    /// Merge attached data: top-level keys replace, `null` removes.
    pub(crate) fn set_data(&mut self, id: CallId, data: Body) -> Result<(), CtiError> {
        let call = self.calls.get_mut(&id).ok_or_else(|| no_call(id))?;
        for (key, value) in data {
            if value.is_null() {
                call.data.remove(&key);
            } else {
                call.data.insert(key, value);
            }
        }
        self.touch(id);
        Ok(())
    }

    /// Answer an ALERTING leg.
    pub(crate) fn answer(&mut self, id: CallId, leg: &str) -> Result<(), CtiError> {
        let (at, l) = self.call(id)?.named(leg)?;
        leg_in(l, &[Alerting], "an ALERTING conversation can be answered")?;
        self.answer_leg(id, at);
        Ok(())
    }

    /// The leg is CONNECTED, and so are the legs dialing it.
    pub(super) fn answer_leg(&mut self, id: CallId, leg: usize) {
        self.set_leg(id, leg, Connected);
        if let Some(switch) = self.leg_ref(id, leg).map(|l| l.switch) {
            self.connect_dialing(switch);
        }
    }

    /// Hang a live leg up.
    pub(crate) fn release(&mut self, id: CallId, leg: &str) -> Result<(), CtiError> {
        let (at, l) = self.call(id)?.named(leg)?;
        leg_in(l, &LIVE, "a live conversation can be released")?;
        self.leave(id, at);
        Ok(())
    }

    /// Hold a CONNECTED leg.
    pub(crate) fn hold(&mut self, id: CallId, leg: &str) -> Result<(), CtiError> {
        self.flip(
            id,
            leg,
            Connected,
            Held,
            "a CONNECTED conversation can be held",
        )
    }

    /// Retrieve a HELD leg.
    pub(crate) fn retrieve(&mut self, id: CallId, leg: &str) -> Result<(), CtiError> {
        self.flip(
            id,
            leg,
            Held,
            Connected,
            "a HELD conversation can be retrieved",
        )
    }

    pub(super) fn flip(
        &mut self,
        id: CallId,
        leg: &str,
        from: ConversationState,
        to: ConversationState,
        only: &str,
    ) -> Result<(), CtiError> {
        let (at, l) = self.call(id)?.named(leg)?;
        leg_in(l, &[from], only)?;
        self.set_leg(id, at, to);
        Ok(())
    }

    /// Whether the call can consult: STARTED, with no live consult.
    pub(crate) fn can_consult(&self, id: CallId) -> Result<(), CtiError> {
        let call = self.call(id)?;
        call.telephony()?;
        call.expect(InteractionState::Started, "a STARTED call can consult")?;
        match call.live(Consult) {
            Some((_, leg)) => Err(invalid(format!(
                "call `{}` already consults on `{}`",
                call.name, leg.name
            ))),
            None => Ok(()),
        }
    }

    /// Hold the primary and dial a consult leg to the target, which gets a copy of the data.
    pub(crate) fn consult(&mut self, id: CallId, target: Target) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let data = call.data.clone();
        let connected = call
            .live(Primary)
            .filter(|(_, l)| l.state == Connected)
            .map(|(leg, _)| leg);
        if let Some(leg) = connected {
            self.set_leg(id, leg, Held);
        }
        let switch = self.switch(Vec::new());
        self.add_leg(id, Consult, Dialing, switch);
        self.reach(switch, target, data);
    }

    /// The call's live primary and answered (CONNECTED or HELD) consult.
    pub(super) fn answered_consult(
        &self,
        id: CallId,
        what: &str,
    ) -> Result<(usize, usize), CtiError> {
        let call = self.call(id)?;
        call.telephony()?;
        // Answered: connected, or held after an alternate.
        let consult = call
            .live(Consult)
            .filter(|(_, l)| matches!(l.state, Connected | Held));
        match (call.live(Primary), consult) {
            (Some((primary, _)), Some((consult, _))) => Ok((primary, consult)),
            _ => Err(invalid(format!(
                "call `{}` has no answered consult to {what}",
                call.name
            ))),
        }
    }

    /// The consult's other parties join the primary's call; the agent leaves both.
    pub(crate) fn transfer(&mut self, id: CallId) -> Result<(), CtiError> {
        let (primary, consult) = self.answered_consult(id, "transfer to")?;
        self.merge(id, primary, consult);
        self.leave(id, primary);
        Ok(())
    }

    /// The consult's other parties join the primary's call, which the agent takes back.
    pub(crate) fn conference(&mut self, id: CallId) -> Result<(), CtiError> {
        let (primary, consult) = self.answered_consult(id, "conference")?;
        self.merge(id, primary, consult);
        if self.leg_ref(id, primary).is_some_and(|l| l.state == Held) {
            self.set_leg(id, primary, Connected);
        }
        Ok(())
    }

    /// The consult's other parties move to the primary's call at the switch; the consult
    /// leg ends.
    pub(super) fn merge(&mut self, id: CallId, primary: usize, consult: usize) {
        let (Some(to), Some(from)) = (
            self.leg_ref(id, primary).map(|l| l.switch),
            self.leg_ref(id, consult).map(|l| l.switch),
        ) else {
            return;
        };
        let ours = Party::Agent {
            call: id,
            leg: consult,
        };
        let moved: Vec<Party> = self
            .switches
            .get_mut(&from)
            .map(|parties| {
                let moved = parties.iter().filter(|p| **p != ours).cloned().collect();
                parties.retain(|p| *p == ours);
                moved
            })
            .unwrap_or_default();
        for party in moved {
            self.join(to, party);
        }
        self.leave(id, consult);
    }

    /// Swap the primary and the consult: the CONNECTED one is held, the HELD one retrieved.
    pub(crate) fn alternate(&mut self, id: CallId) -> Result<(), CtiError> {
        let call = self.call(id)?;
        call.telephony()?;
        let (Some((primary, p)), Some((consult, c))) = (call.live(Primary), call.live(Consult))
        else {
            return Err(invalid(format!(
                "call `{}` has no consult to alternate with",
                call.name
            )));
        };
        let (hold, retrieve) = match (p.state, c.state) {
            (Held, Connected) => (consult, primary),
            (Connected, Held) => (primary, consult),
            _ => {
                return Err(invalid(format!(
                    "alternating needs one CONNECTED and one HELD conversation: `{}` is {}, \
                     `{}` is {}",
                    p.name,
                    upper(p.state),
                    c.name,
                    upper(c.state)
                )));
            }
        };
        self.set_leg(id, hold, Held);
        self.set_leg(id, retrieve, Connected);
        Ok(())
    }

    /// The leg a blind transfer or conference starts from: CONNECTED or HELD.
    pub(crate) fn can_blind(&self, id: CallId, leg: &str) -> Result<usize, CtiError> {
        let (at, l) = self.call(id)?.named(leg)?;
        leg_in(
            l,
            &[Connected, Held],
            "a CONNECTED or HELD conversation can be blind transferred or conferenced",
        )?;
        Ok(at)
    }

    /// The target joins the leg's call at the switch (another agent with a copy of the
    /// data); the leg leaves unless it `stays` (a conference).
    pub(crate) fn blind(&mut self, id: CallId, leg: usize, target: Target, stays: bool) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let data = call.data.clone();
        let Some(switch) = call.legs().get(leg).map(|l| l.switch) else {
            return;
        };
        self.reach(switch, target, data);
        if !stays {
            self.leave(id, leg);
        }
    }

    /// Send DTMF digits on a CONNECTED leg: recorded for the leg, no change of state.
    pub(crate) fn send_dtmf(
        &mut self,
        id: CallId,
        leg: &str,
        digits: &str,
    ) -> Result<(), CtiError> {
        let valid = |d: char| d.is_ascii_digit() || "*#ABCD".contains(d);
        if digits.is_empty() || !digits.chars().all(valid) {
            return Err(bad(format!(
                "DTMF digits `{digits}`: only 0-9, *, # and A-D can be sent"
            )));
        }
        let (_, l) = self.call(id)?.named(leg)?;
        leg_in(l, &[Connected], "a CONNECTED conversation can send DTMF")?;
        let leg = l.name.clone();
        if let Some(call) = self.calls.get_mut(&id) {
            call.digits.entry(leg).or_default().push_str(digits);
        }
        Ok(())
    }
}
