//! The lab's agents: generated from `SIM_AGENTS`, or read from a roster file.

use std::path::Path;

use pb_protocol::channel::ChannelType;
use serde::{Deserialize, Serialize};

/// One agent of the lab CTI, as the roster file spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRecord {
    pub agent_id: String,
    pub login: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
    pub switch_agent_id: String,
    /// The agent's own place (channel group).
    pub place: String,
    pub channels: Vec<ChannelRecord>,
}

/// One channel of an agent's place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub endpoint: String,
    #[serde(rename = "type")]
    pub media: ChannelType,
}

/// The roster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("cannot read roster file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("roster file {path} is not a JSON array of agents: {reason}")]
    Parse { path: String, reason: String },
    #[error("roster file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

const FIRST: [&str; 16] = [
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Dennis",
    "Radia", "Ken", "Hedy", "Tim", "Karen", "Niklaus",
];
const LAST: [&str; 16] = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Backus",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Thompson",
    "Lamarr",
    "Berners-Lee",
    "Sparck Jones",
    "Wirth",
];

/// `count` agents with ids from 1001 upward: login = id, password `pw-<id>`, place
/// `place-<id>` with a TELEPHONY channel `ext-<id>`, an EMAIL channel `mail-<id>` and a CHAT
/// channel `chat-<id>`.
pub(crate) fn generate(count: usize) -> Vec<AgentRecord> {
    (0..count)
        .map(|i| {
            let id = (1001 + i).to_string();
            AgentRecord {
                login: id.clone(),
                password: format!("pw-{id}"),
                first_name: FIRST[i % FIRST.len()].to_owned(),
                last_name: LAST[(i / FIRST.len()) % LAST.len()].to_owned(),
                switch_agent_id: format!("sw-{id}"),
                place: format!("place-{id}"),
                channels: vec![
                    ChannelRecord {
                        endpoint: format!("ext-{id}"),
                        media: ChannelType::Telephony,
                    },
                    ChannelRecord {
                        endpoint: format!("mail-{id}"),
                        media: ChannelType::Email,
                    },
                    ChannelRecord {
                        endpoint: format!("chat-{id}"),
                        media: ChannelType::Chat,
                    },
                ],
                agent_id: id,
            }
        })
        .collect()
}

/// Read a roster file: a JSON array of [`AgentRecord`]s with unique ids, logins and endpoints.
pub fn load(path: &Path) -> Result<Vec<AgentRecord>, RosterError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RosterError::Read {
        path: shown.clone(),
        source,
    })?;
    let agents: Vec<AgentRecord> = serde_json::from_str(&text).map_err(|e| RosterError::Parse {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    validate(&agents).map_err(|reason| RosterError::Invalid {
        path: shown,
        reason,
    })?;
    Ok(agents)
}

fn validate(agents: &[AgentRecord]) -> Result<(), String> {
    use std::collections::{HashMap, HashSet};
    let mut ids = HashSet::new();
    let mut logins = HashSet::new();
    // Agents sharing a place may list its channels again; one endpoint in two places may not.
    let mut place_of: HashMap<&str, &str> = HashMap::new();
    for a in agents {
        if a.agent_id.is_empty() || !ids.insert(&a.agent_id) {
            return Err(format!("agent id `{}` is empty or repeated", a.agent_id));
        }
        if !logins.insert(&a.login) {
            return Err(format!("login `{}` is repeated", a.login));
        }
        for c in &a.channels {
            if let Some(other) = place_of.insert(&c.endpoint, &a.place)
                && other != a.place
            {
                return Err(format!(
                    "endpoint `{}` is in two places, `{other}` and `{}`",
                    c.endpoint, a.place
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_roster() {
        let r = generate(3);
        assert_eq!(r[0].agent_id, "1001");
        assert_eq!(r[0].login, "1001");
        assert_eq!(r[0].password, "pw-1001");
        assert_eq!(r[2].place, "place-1003");
        assert_eq!(r[0].channels[0].endpoint, "ext-1001");
        assert_eq!(r[0].channels.len(), 3);
    }

    #[test]
    fn roster_file_round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("roster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, serde_json::to_string(&generate(2)).unwrap()).unwrap();
        assert_eq!(load(&good).unwrap(), generate(2));
        let dup = dir.join("dup.json");
        let mut agents = generate(2);
        agents[1].agent_id = "1001".into();
        std::fs::write(&dup, serde_json::to_string(&agents).unwrap()).unwrap();
        assert!(load(&dup).unwrap_err().to_string().contains("repeated"));
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{").unwrap();
        assert!(matches!(load(&bad), Err(RosterError::Parse { .. })));
        assert!(matches!(
            load(&dir.join("missing.json")),
            Err(RosterError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
