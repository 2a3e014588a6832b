//! Internal requests: the session service's creation of a channel group, and releasing
//! every destination of an agent (control disposed).

use bytes::Bytes;
use pb_protocol::internal::{CREATE, GroupCreate, InternalReply, RELEASE};
use pb_protocol::{Event, Kind};
use pb_runtime::owned::Unit;

use crate::Groups;
use crate::state::Group;

pub async fn handle(
    groups: &Groups,
    ctx: &mut Unit,
    op: &str,
    payload: Bytes,
) -> (InternalReply, Vec<Event>) {
    let reply = match op {
        CREATE => match serde_json::from_slice::<GroupCreate>(&payload) {
            Ok(create) => self::create(groups, ctx, create).await,
            Err(e) => InternalReply::Error(format!("malformed create request: {e}")),
        },
        RELEASE => release(groups, ctx).await,
        other => InternalReply::Error(format!(
            "the channel-group service has no internal request `{other}`"
        )),
    };
    (reply, Vec::new())
}

/// Record the group before answering, so it answers on its subject (contract §5.5).
async fn create(groups: &Groups, ctx: &mut Unit, create: GroupCreate) -> InternalReply {
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let mut loaded = match groups.store.load(unit).await {
        Ok(loaded) => loaded,
        Err(e) => return InternalReply::Error(e.to_string()),
    };
    if let Some(existing) = loaded.value.groups.get(&create.target) {
        return if existing.place == create.place {
            ctx.listen(Kind::ChannelGroup, &create.target).await.into()
        } else {
            InternalReply::Error(format!(
                "destination `{}` is already another channel group",
                create.target
            ))
        };
    }
    loaded.value.groups.insert(
        create.target.clone(),
        Group {
            place: create.place,
            initialised: false,
            channels: Vec::new(),
        },
    );
    if let Err(e) = groups.store.save(unit, &mut loaded).await {
        return InternalReply::Error(e.to_string());
    }
    ctx.listen(Kind::ChannelGroup, &create.target).await.into()
}

async fn release(groups: &Groups, ctx: &mut Unit) -> InternalReply {
    let unit = ctx.name().to_owned();
    let unit = unit.as_str();
    let mut loaded = match groups.store.load(unit).await {
        Ok(loaded) => loaded,
        Err(e) => return InternalReply::Error(e.to_string()),
    };
    let tree = std::mem::take(&mut loaded.value);
    if let Err(e) = groups.store.save(unit, &mut loaded).await {
        return InternalReply::Error(e.to_string());
    }
    for (kind, target) in tree.destinations() {
        ctx.forget(kind, &target).await;
    }
    InternalReply::Ok
}
