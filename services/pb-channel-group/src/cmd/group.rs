//! `channelgroup.query.init`, `channelgroup.request.createchannel`,
//! `channelgroup.request.dispose`.

use pb_protocol::channel::ChannelType;
use pb_protocol::channel_group::{
    ChannelGroupCommand, ChannelGroupInit, ChannelInGroup, CreateChannel,
};
use pb_protocol::{Kind, Target};
use pb_runtime::Reply;
use pb_runtime::owned::Unit;
use pb_runtime::state::Loaded;

use crate::Groups;
use crate::state::{AgentTree, Channel};

pub async fn handle(
    groups: &Groups,
    ctx: &mut Unit,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
    message: ChannelGroupCommand,
) -> Reply {
    let unit = ctx.name().to_owned();
    match message {
        ChannelGroupCommand::Init => init(groups, &unit, target, loaded).await,
        ChannelGroupCommand::CreateChannel(create) => {
            create_channel(groups, ctx, target, loaded, create).await
        }
        ChannelGroupCommand::Dispose => {
            super::dispose(groups, ctx, (Kind::ChannelGroup, target), None).await
        }
    }
}

/// The place's channels as the CTI has them now.
async fn init(
    groups: &Groups,
    unit: &str,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
) -> Reply {
    let snapshot = match groups.snapshot(unit).await {
        Ok(snapshot) => snapshot,
        Err(failure) => return failure,
    };
    let Some(group) = loaded.value.groups.get_mut(target) else {
        return Reply::failure("the channel group vanished");
    };
    if snapshot.place != group.place {
        return Reply::failure(format!(
            "agent `{unit}` is logged in at `{}`, not at this group's `{}`",
            snapshot.place, group.place
        ));
    }
    group.channels = snapshot
        .channels
        .iter()
        .map(|c| ChannelInGroup {
            end_point: c.endpoint.clone(),
            channel_type: c.media,
        })
        .collect();
    group.initialised = true;
    let body = pb_protocol::to_body(&ChannelGroupInit {
        channels: group.channels.clone(),
    });
    match groups.store.save(unit, loaded).await {
        Ok(()) => Reply::body(body),
        Err(e) => Reply::from(e),
    }
}

/// A channel of the group's place; its type must be the CTI's media, or UNSUPPORTED.
async fn create_channel(
    groups: &Groups,
    ctx: &mut Unit,
    target: &Target,
    loaded: &mut Loaded<AgentTree>,
    create: CreateChannel,
) -> Reply {
    let Some(group) = loaded.value.groups.get(target) else {
        return Reply::failure("the channel group vanished");
    };
    if !group.initialised {
        return Reply::failure(
            "channelgroup.query.init has not been answered yet: channels come after it",
        );
    }
    let Some(known) = group.channels.iter().find(|c| c.end_point == create.name) else {
        return Reply::failure(format!(
            "channel group `{}` has no channel `{}`",
            group.place, create.name
        ));
    };
    let unsupported = create.channel_type == ChannelType::Unsupported;
    if !unsupported && create.channel_type != known.channel_type {
        return Reply::failure(format!(
            "channel `{}` is {}, not {}",
            create.name,
            known.channel_type.as_str(),
            create.channel_type.as_str()
        ));
    }
    let channel = Channel {
        endpoint: create.name.clone(),
        media: known.channel_type,
        unsupported,
        reported: None,
        revision: 0,
        interactions: Default::default(),
    };
    let at = (Kind::Channel, target);
    super::create(
        groups,
        ctx,
        loaded,
        at,
        (&create.id, &create.name),
        None,
        |tree, t| {
            tree.channels.insert(t, channel);
        },
    )
    .await
}
