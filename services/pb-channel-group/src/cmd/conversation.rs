//! The conversation commands: init, answer, release, hold, retrieve, blind transfer, blind
//! conference, DTMF, dispose. Each acts on the call leg at the CTI, which refuses what does
//! not fit the leg's state with its reason.

use pb_cti::Action;
use pb_protocol::conversation::ConversationCommand;
use pb_protocol::{Kind, Target};
use pb_runtime::Reply;
use pb_runtime::owned::Unit;
use pb_runtime::state::Loaded;

use crate::Groups;
use crate::state::{AgentTree, Conversation};

pub async fn handle(
    groups: &Groups,
    ctx: &mut Unit,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
    message: ConversationCommand,
) -> Reply {
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let Some(conversation) = loaded.value.conversations.get(target) else {
        return Reply::failure("the conversation vanished");
    };
    let leg = conversation.leg.clone();
    let action = match message {
        ConversationCommand::Init => return init(groups, unit, target, loaded).await,
        ConversationCommand::Dispose => {
            return super::dispose(groups, ctx, (Kind::Conversation, target), None).await;
        }
        _ if conversation.reported.is_none() => {
            return Reply::failure("conversation.query.init has not been answered yet");
        }
        ConversationCommand::Answer => Action::Answer { leg },
        ConversationCommand::Release => Action::Release { leg },
        ConversationCommand::Hold => Action::Hold { leg },
        ConversationCommand::Retrieve => Action::Retrieve { leg },
        ConversationCommand::BlindTransfer(to) => Action::BlindTransfer {
            leg,
            destination: to.destination,
        },
        ConversationCommand::BlindConference(to) => Action::BlindConference {
            leg,
            destination: to.destination,
        },
        ConversationCommand::SendDtmf(dtmf) => Action::SendDtmf {
            leg,
            digits: dtmf.digits,
        },
    };
    let interaction = conversation.interaction.clone();
    super::act(groups, unit, loaded, interaction, action).await
}

/// The leg as the CTI has it now; an ended leg, which cannot change any more (and which the
/// CTI may have forgotten), as it ended.
async fn init(
    groups: &Groups,
    unit: &str,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
) -> Reply {
    let Some(conversation) = loaded.value.conversations.get_mut(target) else {
        return Reply::failure("the conversation vanished");
    };
    if let Some(ended) = conversation
        .reported
        .as_ref()
        .filter(|_| conversation.over())
    {
        return Reply::body(pb_protocol::to_body(ended));
    }
    let snapshot = match groups.interaction(unit, &conversation.interaction).await {
        Ok(snapshot) => snapshot,
        Err(failure) => return failure,
    };
    let Some(leg) = snapshot.leg(&conversation.leg) else {
        return Reply::failure(format!(
            "interaction `{}` has no conversation `{}` at the CTI",
            snapshot.name, conversation.leg
        ));
    };
    let seen = Conversation::seen(leg);
    let body = pb_protocol::to_body(&seen);
    conversation.reported = Some(seen);
    conversation.revision = snapshot.revision;
    match groups.store.save(unit, loaded).await {
        Ok(()) => Reply::body(body),
        Err(e) => Reply::from(e),
    }
}
