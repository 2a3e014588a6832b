//! One module per control command; [`Control`] dispatches to them.

mod agent_info;
mod capabilities;
mod create_session;
mod dispose;
mod server_status;
mod validate_credentials;

use pb_protocol::control::ControlCommand;
use pb_protocol::{Command, CommandMessage};
use pb_runtime::{CtiCallError, Handler, Reply};

use crate::Control;

impl Handler for Control {
    async fn handle(&self, command: Command) -> Reply {
        let CommandMessage::Control(message) = command.message else {
            // The subscription only carries control subjects, whose decoding yields control
            // commands; answer rather than trust that.
            return Reply::failure(format!(
                "{} is not a control command",
                command.message.name()
            ));
        };
        match message {
            ControlCommand::Capabilities => capabilities::handle(self).await,
            ControlCommand::AgentInfo(query) => agent_info::handle(self, query).await,
            ControlCommand::ValidateAgentCredentials(credentials) => {
                validate_credentials::handle(self, credentials).await
            }
            ControlCommand::ServerStatus => server_status::handle(self).await,
            ControlCommand::CreateSession(request) => create_session::handle(self, request).await,
            ControlCommand::Dispose => dispose::handle(self).await,
        }
    }
}

/// A failed CTI call as a FAILURE reply; its text is the error's (never a secret).
fn cti_failure(error: CtiCallError) -> Reply {
    Reply::failure(error.to_string())
}
