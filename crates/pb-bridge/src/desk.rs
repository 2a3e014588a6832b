//! The automatic agent desk: logs a set of agents in and handles every interaction that
//! reaches their channels as an agent would. For each one (its own task, so they run
//! concurrently while each destination's commands stay in order): take it (create it, read
//! it, create its conversations), answer the call or accept the chat or email, talk for a
//! while, release the call, set a disposition, complete it and dispose its destinations.
//! An interaction the customer ends first goes straight to the disposition. On stop the
//! agents are made not ready, the interactions in hand are finished, and the agents are
//! logged out; the report has rates, handling times and each command's latencies.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pb_protocol::channel::{ChannelCommand, ChannelEvent, ChannelType, InteractionRef};
use pb_protocol::conversation::ConversationCommand;
use pb_protocol::interaction::{
    InteractionCommand, InteractionEvent, InteractionInit, InteractionState,
};
use pb_protocol::session::ReasonCode;
use pb_protocol::{Event, EventMessage, Target};
use pb_runtime::shutdown::Shutdown;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::flow::{Driver, FlowError, Latencies, LoggedIn};
use crate::interaction::{StepError, child, id_of, set_disposition};
use crate::report::{self, Progress};

/// How the desk works.
#[derive(Debug, Clone)]
pub struct DeskConfig {
    /// Its agents: `first..first+agents` (sessions `desk-<id>`).
    pub first: u64,
    pub agents: usize,
    /// How long each interaction is talked (or chatted, or written) through.
    pub talk: Duration,
    /// The `disposition` set on each interaction before it is completed.
    pub disposition: String,
    /// Stop after this long (counted once the agents are logged in); `None`: on shutdown.
    pub run_for: Option<Duration>,
    /// Show progress on standard error.
    pub progress: bool,
}

/// Why the desk could not run.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error(
        "the desk could not log its agents in: {0} (agents left logged in by an earlier run \
         are logged out with `pb-bridge logout desk-<id>`; or choose others with --first)"
    )]
    Login(FlowError),
    #[error("the desk cannot watch events: {0}")]
    Watch(FlowError),
}

/// What a desk run did.
#[derive(Debug)]
pub struct DeskReport {
    pub agents: usize,
    pub talk: Duration,
    /// From the agents' login to the last interaction finished.
    pub elapsed: Duration,
    /// Each interaction handled to the end: its media and handling time (from its
    /// announcement to its destinations disposed).
    pub handled: Vec<(ChannelType, Duration)>,
    pub failures: usize,
    pub first_failure: Option<String>,
    /// Interactions still in hand when the desk gave up waiting for them at stop.
    pub unfinished: usize,
    /// Agents whose logout failed, and why.
    pub logout_failures: Vec<String>,
    /// Interactions whose end was read from their init, as a bridge does, because its
    /// event never came (a replica killed between its answer and its events).
    pub missed_events: Vec<String>,
    /// Response times of the commands sent for the interactions, by message name.
    pub latencies: Latencies,
}

/// The order of an interaction's handling, for the table.
const ORDER: [&str; 11] = [
    "channel.request.createinteraction",
    "interaction.query.init",
    "interaction.request.createconversation",
    "conversation.query.init",
    "conversation.request.answer",
    "interaction.request.accept",
    "conversation.request.release",
    "interaction.request.setdata",
    "interaction.request.complete",
    "conversation.request.dispose",
    "interaction.request.dispose",
];

impl DeskReport {
    /// Whether every interaction was handled and every agent logged out.
    pub fn clean(&self) -> bool {
        self.failures == 0 && self.unfinished == 0 && self.logout_failures.is_empty()
    }

    fn rate(&self, count: usize) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The handling times of `media` (every media when `None`).
    fn times(&self, media: Option<ChannelType>) -> Vec<Duration> {
        self.handled
            .iter()
            .filter(|(m, _)| media.is_none_or(|want| *m == want))
            .map(|(_, took)| *took)
            .collect()
    }

    /// The closing table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "desk: {} agents for {:.2} s, talking {} ms\nhandled: {} (failed {}, unfinished {}, an event missed {}) = {:.2} interactions/s\n",
            self.agents,
            self.elapsed.as_secs_f64(),
            self.talk.as_millis(),
            self.handled.len(),
            self.failures,
            self.unfinished,
            self.missed_events.len(),
            self.rate(self.handled.len()),
        );
        let by_media: Vec<_> = ChannelType::ALL
            .into_iter()
            .map(|m| (m, self.times(Some(m))))
            .filter(|(_, times)| !times.is_empty())
            .collect();
        for (media, times) in &by_media {
            out.push_str(&format!(
                "  {:<11} {:>7} = {:.2}/s\n",
                media.as_str(),
                times.len(),
                self.rate(times.len())
            ));
        }
        let all = self.times(None);
        let mut rows: Vec<_> = by_media
            .iter()
            .map(|(media, times)| (media.as_str(), times.as_slice()))
            .collect();
        rows.push(("all", &all));
        out.push('\n');
        out.push_str(&report::latency_table("handling time", rows));
        out.push('\n');
        out.push_str(&report::latency_table(
            "message",
            report::by_message(&self.latencies, &ORDER),
        ));
        if let Some(first) = &self.first_failure {
            out.push_str(&format!("\nfirst failure: {first}\n"));
        }
        for failure in &self.logout_failures {
            out.push_str(&format!("logout failed: {failure}\n"));
        }
        out
    }
}

/// Run a desk with `driver` until `config.run_for` has passed or `shutdown` fires; then
/// make its agents not ready, finish what is in hand and log them out.
pub async fn run(
    driver: &Driver,
    config: &DeskConfig,
    mut shutdown: Shutdown,
) -> Result<DeskReport, DeskError> {
    // Watch first: an interaction can be routed as soon as a channel is ready.
    let mut events = driver
        .events(driver.subjects().all_events())
        .await
        .map_err(DeskError::Watch)?;
    let logged = log_in(driver, config).await?;
    let started = Instant::now();
    let mut desk = Desk::new(driver, config, &logged);
    let progress = config.progress.then(Progress::line);
    let every = progress
        .as_ref()
        .map_or(Duration::from_secs(1), Progress::every);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let stop = async {
        let run_out = async {
            match config.run_for {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.requested() => {}
            _ = run_out => {}
        }
    };
    tokio::pin!(stop);
    // Once stopped: finish what is in hand, for as long as its steps can take (the limit
    // is set on stopping).
    let drain = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain);
    let mut draining = false;
    // Made not ready while the events go on being dispatched: the interactions in hand
    // wait for theirs meanwhile.
    let stopping = not_ready(driver, &logged);
    tokio::pin!(stopping);
    let mut stopped = false;
    while !(stopped && desk.tasks.is_empty()) {
        tokio::select! {
            _ = &mut stop, if !draining => draining = true,
            () = &mut stopping, if draining && !stopped => {
                stopped = true;
                let limit = config.talk + driver.timeout() * ORDER.len() as u32;
                drain.as_mut().reset(tokio::time::Instant::now() + limit);
            }
            _ = &mut drain, if stopped => break,
            Some(message) = events.next() => desk.dispatch(&message),
            Some(finished) = desk.tasks.join_next() => desk.record(finished),
            _ = ticker.tick() => desk.show(progress.as_ref(), started),
        }
    }
    if let Some(progress) = progress {
        progress.finish();
    }
    let elapsed = started.elapsed();
    let unfinished = desk.tasks.len();
    desk.tasks.abort_all();
    let logout_failures = driver
        .logout_all(&logged, LOGIN_CONCURRENCY)
        .await
        .into_iter()
        .map(|(agent, e)| format!("agent {agent}: {e}"))
        .collect();
    Ok(DeskReport {
        agents: config.agents,
        talk: config.talk,
        elapsed,
        handled: desk.handled,
        failures: desk.failures,
        first_failure: desk.first_failure,
        missed_events: desk.missed_events,
        unfinished,
        logout_failures,
        latencies: desk.driver.latencies(),
    })
}

/// How many agents log in (and out) at once.
const LOGIN_CONCURRENCY: usize = 16;

/// Log the desk's agents in; if one fails, log the others out again.
async fn log_in(driver: &Driver, config: &DeskConfig) -> Result<Vec<LoggedIn>, DeskError> {
    let done = AtomicUsize::new(0);
    let results = driver
        .login_range(
            config.first,
            config.agents,
            LOGIN_CONCURRENCY,
            "desk",
            &done,
        )
        .await;
    let mut logged = Vec::new();
    let mut failure = None;
    for result in results {
        match result {
            Ok(l) => logged.push(l),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        None => Ok(logged),
        Some(e) => {
            // Best effort: the login failure is what the user needs to see.
            driver.logout_all(&logged, LOGIN_CONCURRENCY).await;
            Err(DeskError::Login(e))
        }
    }
}

/// Make every channel not ready, so that the CTI routes nothing more to the desk (a
/// channel busy with an interaction becomes not ready when it ends). A channel that
/// refuses is not fatal: the desk still handles what reaches it, then logs out.
async fn not_ready(driver: &Driver, logged: &[LoggedIn]) {
    let channels = logged.iter().flat_map(|l| &l.channels);
    futures::stream::iter(channels)
        .for_each_concurrent(LOGIN_CONCURRENCY, |channel| async move {
            let reason = ReasonCode {
                reason_code: Some("desk stopping".into()),
            };
            if let Err(e) = driver
                .act(&channel.target, ChannelCommand::NotReady(reason))
                .await
            {
                tracing::warn!("{e}");
            }
        })
        .await;
}

/// One interaction's task finished.
struct Finished {
    target: String,
    media: ChannelType,
    took: Duration,
    /// Whether an event never came and the interaction's init was read instead.
    result: Result<bool, StepError>,
}

/// The dispatcher's state: which channels are the desk's, which interactions are in hand.
struct Desk {
    /// Records every command's response time.
    driver: Driver,
    talk: Duration,
    disposition: String,
    channels: HashSet<String>,
    /// The events of each interaction in hand go to its task.
    in_hand: HashMap<String, mpsc::UnboundedSender<InteractionEvent>>,
    tasks: JoinSet<Finished>,
    handled: Vec<(ChannelType, Duration)>,
    failures: usize,
    first_failure: Option<String>,
    missed_events: Vec<String>,
}

impl Desk {
    fn new(driver: &Driver, config: &DeskConfig, logged: &[LoggedIn]) -> Self {
        Self {
            driver: driver.clone().recording(),
            talk: config.talk,
            disposition: config.disposition.clone(),
            channels: logged
                .iter()
                .flat_map(|l| &l.channels)
                .map(|c| c.target.clone())
                .collect(),
            in_hand: HashMap::new(),
            tasks: JoinSet::new(),
            handled: Vec::new(),
            failures: 0,
            first_failure: None,
            missed_events: Vec::new(),
        }
    }

    /// Act on one event: a new interaction on one of the desk's channels starts a task;
    /// an event of an interaction in hand goes to its task.
    fn dispatch(&mut self, message: &crate::link::Delivered) {
        let subjects = self.driver.subjects();
        let Ok(event) = Event::decode(subjects, &message.subject, &message.payload) else {
            return;
        };
        match event.message {
            EventMessage::Channel(ChannelEvent::InteractionAdded(added))
                if self.channels.contains(event.target.as_str()) =>
            {
                self.start(&event.target, added);
            }
            EventMessage::Interaction(e) => {
                if let Some(task) = self.in_hand.get(event.target.as_str()) {
                    // A task that has finished no longer listens; nothing is lost.
                    let _ = task.send(e);
                }
            }
            _ => {}
        }
    }

    fn start(&mut self, channel: &Target, added: InteractionRef) {
        let id = id_of(&added.name);
        let target = match child(channel.as_str(), &id, "channel.request.createinteraction") {
            Ok(target) => target,
            Err(e) => return self.fail(e.into()),
        };
        if self.in_hand.contains_key(&target) {
            return; // announced again (a replica took the agent over): already in hand
        }
        let (events, receiver) = mpsc::unbounded_channel();
        self.in_hand.insert(target.clone(), events);
        let work = Work {
            driver: self.driver.clone(),
            channel: channel.as_str().to_owned(),
            id,
            talk: self.talk,
            disposition: self.disposition.clone(),
        };
        let started = Instant::now();
        self.tasks.spawn(async move {
            let media = added.media;
            let result = work.handle(added, receiver).await;
            Finished {
                target,
                media,
                took: started.elapsed(),
                result,
            }
        });
    }

    fn record(&mut self, finished: Result<Finished, tokio::task::JoinError>) {
        match finished {
            Ok(done) => {
                self.in_hand.remove(&done.target);
                match done.result {
                    Ok(missed) => {
                        if missed {
                            self.missed_events.push(done.target);
                        }
                        self.handled.push((done.media, done.took));
                    }
                    Err(e) => self.fail(e),
                }
            }
            // Tasks are aborted only after the last record: this is a panic, a bug.
            Err(e) => self.fail(StepError::Task(e.to_string())),
        }
    }

    fn fail(&mut self, e: StepError) {
        self.failures += 1;
        self.first_failure.get_or_insert_with(|| e.to_string());
    }

    fn show(&self, progress: Option<&Progress>, started: Instant) {
        if let Some(progress) = progress {
            let handled = self.handled.len();
            let rate = handled as f64 / started.elapsed().as_secs_f64().max(1e-9);
            progress.say(format!(
                "desk: handled {handled} ({rate:.1}/s), in progress {}, failed {}",
                self.tasks.len(),
                self.failures
            ));
        }
    }
}

/// What one interaction's task needs.
struct Work {
    driver: Driver,
    channel: String,
    id: String,
    talk: Duration,
    disposition: String,
}

impl Work {
    /// Handle interaction `added` from its announcement to its destinations disposed;
    /// `events` are its interaction events. Whether an event never came (its end read
    /// from the interaction's init instead).
    async fn handle(
        self,
        added: InteractionRef,
        events: mpsc::UnboundedReceiver<InteractionEvent>,
    ) -> Result<bool, StepError> {
        let driver = &self.driver;
        let taken = driver.take(&self.channel, &added.name, &self.id).await?;
        let mut state = Tracked {
            driver,
            target: &taken.target,
            state: taken.init.state,
            events,
        };
        let call = added.media == ChannelType::Telephony;
        let mut missed = false;
        if state.live() {
            if call {
                let primary = taken.primary().ok_or_else(|| StepError::NoPrimary {
                    target: taken.target.clone(),
                    verb: "answer",
                })?;
                state
                    .step(&primary.target, ConversationCommand::Answer)
                    .await?;
            } else {
                state
                    .step(&taken.target, InteractionCommand::Accept)
                    .await?;
            }
            state.wait_end(self.talk).await;
            if call {
                if let Some(primary) = taken.primary().filter(|_| state.live()) {
                    state
                        .step(&primary.target, ConversationCommand::Release)
                        .await?;
                }
                if !state.wait_end(driver.timeout()).await {
                    // As a bridge does: read the interaction, which tells its state.
                    let init: InteractionInit = driver
                        .query(&taken.target, InteractionCommand::Init)
                        .await?;
                    state.advance(init.state);
                    if state.live() {
                        return Err(StepError::NoEvent {
                            target: taken.target.clone(),
                            event: "interaction.statechanged ENDED",
                            after: "conversation.request.release",
                            waited: driver.timeout(),
                        });
                    }
                    missed = true;
                }
            }
        }
        if state.state != InteractionState::Completed {
            driver
                .act(&taken.target, set_disposition(&self.disposition))
                .await?;
            driver
                .act(&taken.target, InteractionCommand::Complete)
                .await?;
        }
        for leg in &taken.conversations {
            driver
                .act(&leg.target, ConversationCommand::Dispose)
                .await?;
        }
        driver
            .act(&taken.target, InteractionCommand::Dispose)
            .await?;
        Ok(missed)
    }
}

/// An interaction's state as its events tell it.
struct Tracked<'a> {
    driver: &'a Driver,
    target: &'a str,
    state: InteractionState,
    events: mpsc::UnboundedReceiver<InteractionEvent>,
}

impl Tracked<'_> {
    /// Alerting, dialing or started: the customer is still there.
    fn live(&self) -> bool {
        self.state.is_live()
    }

    /// Take `state` unless it is older than the one known (an event read after a later
    /// answer): an interaction only moves on, from alerting or dialing to completed.
    fn advance(&mut self, state: InteractionState) {
        let rank = |s| match s {
            InteractionState::Alerting | InteractionState::Dialing => 0,
            InteractionState::Started => 1,
            InteractionState::Ended => 2,
            InteractionState::Completed => 3,
        };
        if rank(state) >= rank(self.state) {
            self.state = state;
        }
    }

    /// Follow the events for up to `wait`, or until the interaction is no longer live;
    /// whether it is no longer live.
    async fn wait_end(&mut self, wait: Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        while self.live() {
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(InteractionEvent::StateChanged(changed))) => self.advance(changed.state),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        !self.live()
    }

    /// Send `message` to `target`; a FAILURE because the customer left meanwhile (the
    /// interaction, read again, is no longer live) is no failure: the work goes on.
    async fn step(
        &mut self,
        target: &str,
        message: impl Into<pb_protocol::CommandMessage>,
    ) -> Result<(), StepError> {
        match self.driver.act(target, message).await {
            Ok(_) => Ok(()),
            Err(e @ FlowError::Failure { .. }) => {
                let init: InteractionInit = self
                    .driver
                    .query(self.target, InteractionCommand::Init)
                    .await?;
                self.advance(init.state);
                if self.live() { Err(e.into()) } else { Ok(()) }
            }
            Err(e) => Err(e.into()),
        }
    }
}
