//! The interaction commands: init, accept / reject / complete, setdata, and for telephony
//! consult, transfer, conference, alternate and createconversation; dispose. Every action is
//! the CTI's to judge: one that does not fit the interaction's state is refused with the
//! CTI's reason.

use pb_cti::Action;
use pb_protocol::channel::ChannelType;
use pb_protocol::interaction::{
    InteractionCommand, InteractionEvent, InteractionInit, InteractionState,
};
use pb_protocol::session::CreateChild;
use pb_protocol::{Event, Kind, Target};
use pb_runtime::Reply;
use pb_runtime::owned::Unit;
use pb_runtime::state::Loaded;

use crate::Groups;
use crate::state::{AgentTree, Conversation, InteractionSeen};

pub async fn handle(
    groups: &Groups,
    ctx: &mut Unit,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
    message: InteractionCommand,
) -> Reply {
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let Some(interaction) = loaded.value.interactions.get(target) else {
        return Reply::failure("the interaction vanished");
    };
    let name = interaction.name.clone();
    let media = interaction.media;
    let action = match message {
        InteractionCommand::Init => return init(groups, unit, target, loaded).await,
        InteractionCommand::Dispose => {
            return super::dispose(groups, ctx, (Kind::Interaction, target), None).await;
        }
        _ if !interaction.initialised() => {
            return Reply::failure("interaction.query.init has not been answered yet");
        }
        m @ (InteractionCommand::Consult(_)
        | InteractionCommand::Transfer
        | InteractionCommand::Conference
        | InteractionCommand::Alternate
        | InteractionCommand::CreateConversation(_))
            if media != ChannelType::Telephony =>
        {
            return Reply::failure(format!(
                "{} is for telephony interactions; `{name}` is {}",
                m.name(),
                media.as_str()
            ));
        }
        InteractionCommand::CreateConversation(child) => {
            return create_conversation(groups, ctx, target, loaded, child).await;
        }
        InteractionCommand::Accept => Action::Accept,
        InteractionCommand::Reject => Action::Reject,
        InteractionCommand::Complete => Action::Complete,
        InteractionCommand::SetData(data) => {
            if let Err(e) =
                crate::state::room_for_data(&loaded.value, target, &data.data, ctx.limits())
            {
                return Reply::failure(format!("interaction-data not set: {e}"));
            }
            Action::SetData { data: data.data }
        }
        InteractionCommand::Consult(consult) => Action::Consult {
            destination: consult.destination,
        },
        InteractionCommand::Transfer => Action::Transfer,
        InteractionCommand::Conference => Action::Conference,
        InteractionCommand::Alternate => Action::Alternate,
    };
    super::act(groups, unit, loaded, name, action).await
}

/// The interaction as the CTI has it now; a COMPLETED one, which cannot change any more (and
/// which the CTI may have forgotten), as it was completed. A chat or email still alerting
/// then raises `interaction.alerting` (reference §9.5.3): its first event, after the first
/// init answer (an init asked again, a bridge's retry say, is answered afresh and raises
/// nothing again).
async fn init(
    groups: &Groups,
    unit: &str,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
) -> Reply {
    let Some(interaction) = loaded.value.interactions.get_mut(target) else {
        return Reply::failure("the interaction vanished");
    };
    let telephony = interaction.media == ChannelType::Telephony;
    if let Some(seen) = interaction.reported.as_ref().filter(|_| interaction.over()) {
        return Reply::body(pb_protocol::to_body(&InteractionInit {
            state: seen.state,
            data: seen.data.clone(),
            conversations: telephony.then(Default::default),
        }));
    }
    let snapshot = match groups.interaction(unit, &interaction.name).await {
        Ok(snapshot) => snapshot,
        Err(failure) => return failure,
    };
    let conversations = telephony.then(|| snapshot.conversations());
    if let Some(Err(why)) = conversations.as_ref().map(|c| c.fit(snapshot.state)) {
        return Reply::failure(format!(
            "the CTI reports interaction `{}` in a state this client cannot show: {why}",
            snapshot.name
        ));
    }
    let first = interaction.reported.is_none();
    interaction.reported = Some(InteractionSeen::of(&snapshot));
    interaction.revision = snapshot.revision;
    let body = pb_protocol::to_body(&InteractionInit {
        state: snapshot.state,
        data: snapshot.data,
        conversations,
    });
    if let Err(e) = groups.store.save(unit, loaded).await {
        return Reply::from(e);
    }
    let reply = Reply::body(body);
    if first && !telephony && snapshot.state == InteractionState::Alerting {
        reply.with_event(Event::new(target.clone(), InteractionEvent::Alerting))
    } else {
        reply
    }
}

/// The conversation destination `<interaction>.<id>` for a leg the bridge was told of (by
/// the init answer or `interaction.conversation.added`).
async fn create_conversation(
    groups: &Groups,
    ctx: &mut Unit,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
    child: CreateChild,
) -> Reply {
    let Some(interaction) = loaded.value.interactions.get(target) else {
        return Reply::failure("the interaction vanished");
    };
    let known = interaction
        .reported
        .as_ref()
        .is_some_and(|seen| seen.legs.contains(&child.name));
    let unknown = (!known).then(|| {
        format!(
            "interaction `{}` has no conversation `{}` (a conversation is created after interaction.query.init or interaction.conversation.added names it)",
            interaction.name, child.name
        )
    });
    let conversation = Conversation {
        interaction: interaction.name.clone(),
        leg: child.name.clone(),
        reported: None,
        revision: 0,
    };
    let at = (Kind::Conversation, target);
    super::create(
        groups,
        ctx,
        loaded,
        at,
        (&child.id, &child.name),
        unknown,
        |tree, t| {
            tree.conversations.insert(t, conversation);
        },
    )
    .await
}
