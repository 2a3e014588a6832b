//! Membership: replicas register, ping one another, fence themselves when cut off, and
//! take over the units of a peer that is gone (one compare-and-set per unit, so that each
//! unit has one owner even when two replicas adopt at once); the sweep for units an
//! interrupted adoption left to nobody.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::RequestErrorKind;
use async_nats::header::HeaderMap;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;

use super::fence::{self, Suspect};
use super::{CHECK_HEADER, Owner, PING_HEADER, Shared};
use crate::connect::is_connected;
use crate::kv::key;
use crate::serve::NATS_STEP;

impl<H: Owner> Shared<H> {
    /// Take `unit` over from `dead` (or claim it back, `dead` being this replica), unless
    /// someone already did. True if this replica did.
    pub(super) async fn take_over(self: &Arc<Self>, unit: &str, dead: &str) -> bool {
        let key = self.owner_key(unit);
        let Ok(Some(entry)) = self.owners.entry(&key).await else {
            return false;
        };
        if entry.operation != kv::Operation::Put || entry.value != dead.as_bytes() {
            return false;
        }
        if self
            .owners
            .update(&key, self.me.clone().into(), entry.revision)
            .await
            .is_err()
        {
            return false;
        }
        if dead != self.me {
            tracing::warn!(%unit, %dead, "owner gone: unit taken over");
        }
        let _ = self.to_actor(unit, None);
        true
    }

    /// Ping every other registered replica; take over the units of one that is gone. A peer
    /// is gone after [`fence::GONE_AFTER`] checks in a row found nobody on its node subject,
    /// and no verdict is reached while this replica's connection is young.
    pub(super) async fn check_members(self: Arc<Self>) {
        let peers = self.peers().await;
        self.note_peers(&peers);
        if self.connection_young() {
            return;
        }
        // A peer that found this replica gone has deleted its record: it has (or is)
        // taking over its agents, so stop serving them and register again.
        let mine = self.members.entry(self.member_key(&self.me)).await;
        if !self.fenced.load(std::sync::atomic::Ordering::SeqCst)
            && matches!(mine, Ok(e) if e.as_ref().is_none_or(|e| e.operation != kv::Operation::Put))
        {
            tracing::warn!("a peer judged this replica gone: handing its agents over");
            self.fence();
            self.recover().await;
            return;
        }
        if self
            .sweep_due
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.adopt_orphans(&peers).await;
        }
        let silent =
            futures::future::join_all(peers.iter().map(|(_, peer)| self.silent(peer))).await;
        for ((member_key, peer), silent) in peers.into_iter().zip(silent) {
            if !silent {
                self.suspects.lock().expect("suspects lock").remove(&peer);
            } else if self.missed(&peer) {
                self.adopt(&member_key, &peer).await;
            }
        }
    }

    /// Remember the peers registered now; one gone since the last check means an adoption
    /// began, and an adopter that dies half-way leaves units to nobody: a sweep is due.
    pub(super) fn note_peers(&self, peers: &[(String, String)]) {
        let now: std::collections::HashSet<String> =
            peers.iter().map(|(_, peer)| peer.clone()).collect();
        let mut known = self.known_peers.lock().expect("known peers lock");
        if known.iter().any(|peer| !now.contains(peer)) {
            self.sweep_due
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        *known = now;
    }

    /// Whether nobody listens on `replica`'s node subject (a ping has no responders). A
    /// ping that times out is no verdict: a replica slowed down (its link congested, its
    /// machine busy) is alive, and taking its agents from it would do more harm than good.
    pub(super) async fn silent(&self, replica: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(PING_HEADER, "1");
        let ping = async_nats::Request::new()
            .headers(headers)
            .timeout(Some(Duration::from_secs(2)));
        matches!(
            self.context.client.send_request(self.node_of(replica), ping).await,
            Err(e) if e.kind() == RequestErrorKind::NoResponders
        )
    }

    /// `peer` did not answer: count it (at most one miss per check period); whether it is
    /// now judged gone ([`fence::GONE_AFTER`] misses).
    pub(super) fn missed(&self, peer: &str) -> bool {
        let mut suspects = self.suspects.lock().expect("suspects lock");
        let mut suspect = suspects.get(peer).copied();
        let gone = Suspect::missed(&mut suspect, Instant::now(), self.check_every);
        match suspect {
            Some(s) if !gone => {
                suspects.insert(peer.to_owned(), s);
            }
            _ => {
                suspects.remove(peer);
            }
        }
        gone
    }

    /// Cut off from NATS for too long, or judged gone by a peer: stop serving every agent
    /// at once (mid-work included), before a peer can take them over.
    pub(super) fn fence(&self) {
        let actors: Vec<_> = {
            let mut actors = self.actors.lock().expect("actors lock");
            self.fenced.store(true, std::sync::atomic::Ordering::SeqCst);
            actors.drain().collect()
        };
        for (_, actor) in &actors {
            actor.task.abort();
        }
        tracing::warn!(
            units = actors.len(),
            "cut off from NATS: serving no agent until back (a peer may take them over)"
        );
    }

    /// Watch the connection: fence this replica when it has been down too long; once it
    /// is back, [`Shared::recover`].
    pub(super) async fn guard(self: Arc<Self>) {
        let client = &self.context.client;
        if !self.fenced.load(std::sync::atomic::Ordering::SeqCst) {
            if crate::connect::disconnected_for(client) >= fence::fence_after(self.check_every) {
                self.fence();
            }
        } else if is_connected(client) {
            self.recover().await;
        }
    }

    /// Back on NATS after a fence: register again, then claim back, one by one, the units
    /// the owners bucket still names this replica for. Each claim is a compare-and-set on
    /// the unit's owner record, as a peer's take-over is: where a peer is adopting them
    /// (it deleted the membership record), exactly one of the two gets each unit. Nothing
    /// here trusts a read to be current (a node catching up can serve an old one): every
    /// write is conditioned on the revision read, and a refused one is tried again at the
    /// next look.
    pub(super) async fn recover(self: &Arc<Self>) {
        // Read whole first: registered again, this replica is no orphan owner any more.
        let Some(units) = self.units_owned_by(&self.me).await else {
            return; // at the next look
        };
        let mine = self.member_key(&self.me);
        let Ok(entry) = self.members.entry(&mine).await else {
            return; // not reachable yet: at the next look
        };
        let registered = match entry {
            Some(entry) => self
                .members
                .update(&mine, self.me.clone().into(), entry.revision)
                .await
                .is_ok(),
            None => self
                .members
                .create(&mine, self.me.clone().into())
                .await
                .is_ok(),
        };
        if !registered {
            return;
        }
        self.fenced
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let mut resumed = 0;
        for unit in units {
            if self.take_over(&unit, &self.me).await {
                resumed += 1;
            }
        }
        tracing::warn!(resumed, "back on NATS: serving agents again");
    }

    /// This replica is going: ask the others to check on it now, rather than at their next
    /// round, so its units are taken over at once.
    pub(super) async fn nudge_peers(&self) {
        for (_, peer) in self.peers().await {
            let mut headers = HeaderMap::new();
            headers.insert(CHECK_HEADER, "1");
            let _ = self
                .context
                .client
                .publish_with_headers(self.node_of(&peer), headers, Bytes::new())
                .await;
        }
        let _ = tokio::time::timeout(NATS_STEP, self.context.client.flush()).await;
    }

    /// The other registered replicas: (member key, replica name).
    pub(super) async fn peers(&self) -> Vec<(String, String)> {
        let prefix = format!("{}.", key(&[self.service]));
        let mine = self.member_key(&self.me);
        let mut peers = Vec::new();
        // Bounded: a listing cut short by a JetStream fail-over must not hold every later
        // check up (none would ever judge a peer gone).
        let listed = tokio::time::timeout(NATS_STEP, async {
            if let Ok(mut keys) = self.members.keys().await {
                while let Some(Ok(k)) = keys.next().await {
                    if let Some(peer) = k.strip_prefix(&prefix)
                        && k != mine
                    {
                        peers.push((k.clone(), crate::kv::unkey(peer)));
                    }
                }
            }
        })
        .await;
        if listed.is_err() {
            tracing::warn!("listing the replicas timed out: checking the ones listed");
        }
        peers
    }

    /// `dead` is gone: whoever deletes its registration takes over its units.
    pub(super) async fn adopt(self: &Arc<Self>, member_key: &str, dead: &str) {
        let Ok(Some(entry)) = self.members.entry(member_key).await else {
            return;
        };
        if entry.operation != kv::Operation::Put
            || self
                .members
                .delete_expect_revision(member_key, Some(entry.revision))
                .await
                .is_err()
        {
            return; // another replica is adopting
        }
        tracing::warn!(%dead, "replica gone: taking over its units");
        let Some(units) = self.units_owned_by(dead).await else {
            // Its record is gone: the sweep for units nobody owns takes them.
            tracing::warn!(%dead, "cannot read the owners now: the sweep takes its units");
            self.sweep_due
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        let mut adopted = 0;
        for unit in units {
            if self.take_over(&unit, dead).await {
                adopted += 1;
            }
        }
        tracing::warn!(%dead, adopted, "units taken over");
    }

    /// The units the owners bucket names `replica` as the owner of; `None` if it could not
    /// be read whole.
    pub(super) async fn units_owned_by(&self, replica: &str) -> Option<Vec<String>> {
        Some(
            self.owner_entries()
                .await?
                .into_iter()
                .filter(|(_, owner)| owner == replica)
                .map(|(unit, _)| unit)
                .collect(),
        )
    }

    /// Every unit of this service with its owner, as the owners bucket has them; `None` if
    /// the bucket could not be read to its last entry (a store failing over): a decision
    /// taken on part of the list would leave the rest to nobody.
    pub(super) async fn owner_entries(&self) -> Option<Vec<(String, String)>> {
        let prefix = format!("{}.", key(&[self.service]));
        let mut watch = self
            .owners
            .watch_with_history(format!("{prefix}>"))
            .await
            .ok()?;
        let mut entries = Vec::new();
        loop {
            let entry = match tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
                Ok(Some(Ok(entry))) => entry,
                // Quiet from the start: nothing is owned.
                Err(_) if entries.is_empty() => return Some(entries),
                _ => return None,
            };
            if entry.operation == kv::Operation::Put
                && let Some(unit) = entry.key.strip_prefix(&prefix)
            {
                entries.push((
                    crate::kv::unkey(unit),
                    String::from_utf8_lossy(&entry.value).into_owned(),
                ));
            }
            if entry.delta == 0 {
                return Some(entries);
            }
        }
    }

    /// Take over the units whose owner is none of the `peers` registered (nor this replica)
    /// and does not answer: an adopter that died half-way through an adoption (it deletes
    /// the dead replica's record first) left them to nobody.
    pub(super) async fn adopt_orphans(self: &Arc<Self>, peers: &[(String, String)]) {
        let Some(entries) = self.owner_entries().await else {
            // At the next check.
            self.sweep_due
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        for (owner, units) in orphans(entries, &self.me, peers) {
            if !self.silent(&owner).await {
                continue;
            }
            let mut adopted = 0;
            for unit in &units {
                if self.take_over(unit, &owner).await {
                    adopted += 1;
                }
            }
            tracing::warn!(%owner, adopted, "units of a replica nobody adopted taken over");
        }
    }
}

/// The units of `entries` (unit, owner) whose owner is neither `me` nor one of the
/// registered `peers` (member key, replica), by owner: what an adoption interrupted
/// half-way left to nobody (the dead replica's record is deleted first).
fn orphans(
    entries: Vec<(String, String)>,
    me: &str,
    peers: &[(String, String)],
) -> HashMap<String, Vec<String>> {
    let mut orphans: HashMap<String, Vec<String>> = HashMap::new();
    for (unit, owner) in entries {
        if owner != me && !peers.iter().any(|(_, peer)| *peer == owner) {
            orphans.entry(owner).or_default().push(unit);
        }
    }
    orphans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(unit, owner)| (unit.to_string(), owner.to_string()))
            .collect()
    }

    #[test]
    fn only_units_of_unregistered_owners_are_orphans() {
        let peers = [("pb.m.channelgroup.b".to_owned(), "b".to_owned())];
        let entries = owned(&[("1", "me"), ("2", "b"), ("3", "gone"), ("4", "gone")]);
        let found = orphans(entries, "me", &peers);
        assert_eq!(found.len(), 1);
        assert_eq!(found["gone"], ["3", "4"]);
        assert!(orphans(owned(&[("1", "me"), ("2", "b")]), "me", &peers).is_empty());
    }
}
