//! The node's side of the manager's console commands: the event loop hands every control message
//! ([`route`]) to a worker thread ([`spawn_node_worker`]) that runs the command line through the
//! node's own console ([`crate::console::execute`], so the answer is exactly what the node's
//! console prints) and sends the answer back in chunks on the manager's reply group.
//!
//! The worker is a thread of its own because some commands wait for the loop (`config reload`
//! waits until the loop has re-read the file); running them on the loop would deadlock it.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::thread::JoinHandle;

use cohort_engine::console::control::{self, CommandMsg, ControlMsg};
use cohort_engine::group::Order;

use super::shared::{Delivery, Shared};
use crate::console::{ConsoleHandler, Identity};

/// Control messages waiting for the worker before the loop starts dropping them.
pub const CONTROL_QUEUE: usize = 4096;

/// The manager's private reply group: `#` and its node name (cut to the group layer's 64 bytes).
/// Names starting with `#` are private groups, as in Spread: `cluster membership` hides them.
pub fn reply_group(manager: &str) -> String {
    let mut g = String::from("#");
    for c in manager.chars() {
        if g.len() + c.len_utf8() > control::MAX_NAME {
            break;
        }
        g.push(c);
    }
    g
}

/// Whether `group` is a private group (see [`reply_group`]).
pub fn is_private_group(group: &str) -> bool {
    group.starts_with('#')
}

/// Whether the manager's commands and answers may travel on `group`: the control group, a
/// subcluster's group or a private group. Control-looking messages on any other group are
/// application traffic and are never run as commands.
pub fn is_control_group(group: &str, control_group: &str) -> bool {
    group == control_group || group.starts_with("ec_sc_") || is_private_group(group)
}

/// Installs the channel that [`route`] feeds and returns its receiving end.
pub fn subscribe(shared: &Shared) -> Receiver<Delivery> {
    let (tx, rx) = sync_channel(CONTROL_QUEUE);
    if let Ok(mut c) = shared.control.lock() {
        *c = Some(tx);
    }
    rx
}

/// Called by the loop for a control message: hands it to the worker without ever blocking.
pub fn route(shared: &Shared, d: Delivery) {
    let tx = shared.control.lock().ok().and_then(|c| c.clone());
    let Some(tx) = tx else {
        return;
    };
    if let Err(TrySendError::Full(d)) = tx.try_send(d) {
        tracing::warn!(group = %d.group, from = %d.sender.name, "control queue full: message dropped");
    }
}

/// Called by the loop for every message of a named group: copies it to the group's listeners.
pub fn tap(shared: &Shared, d: &Delivery) {
    let Ok(mut ls) = shared.listeners.lock() else {
        return;
    };
    ls.retain(|(g, tx)| {
        *g != d.group || !matches!(tx.try_send(d.clone()), Err(TrySendError::Disconnected(_)))
    });
}

/// Starts the node's worker: it runs every command addressed to this node and answers it.
pub fn spawn_node_worker(
    shared: Arc<Shared>,
    identity: Identity,
    handler: Arc<dyn ConsoleHandler>,
) -> std::io::Result<JoinHandle<()>> {
    let rx = subscribe(&shared);
    super::priority::spawn_daemon_thread("control".into(), move || {
        let span = tracing::info_span!("control", node = %identity.nodename);
        let _entered = span.enter();
        while let Ok(d) = rx.recv() {
            match ControlMsg::decode(&d.payload) {
                Ok(ControlMsg::Command(c)) => answer(&shared, &identity, handler.as_ref(), c),
                // Answers go to the manager's private group, which a node never joins.
                Ok(ControlMsg::Answer(_)) => {}
                Err(e) => {
                    tracing::warn!(from = %d.sender.name, error = %e, "control message dropped")
                }
            }
        }
    })
}

fn answer(shared: &Shared, identity: &Identity, handler: &dyn ConsoleHandler, c: CommandMsg) {
    if c.target.as_ref().is_some_and(|t| *t != identity.nodename) {
        return;
    }
    tracing::info!(request = c.request, command = %c.line, "running the manager's command");
    let (ok, body) = match crate::console::execute(identity, handler, &c.line, c.json) {
        Ok(b) => (true, b),
        Err(e) => (false, e),
    };
    let answer = control::answer_message(c.request, ok, body.as_bytes());
    shared.send_batch(&c.reply_group, vec![answer], Order::Fifo);
}

/// Messages waiting for a `listen` client before the loop drops them for that client.
pub const LISTEN_QUEUE: usize = 1024;

/// A `cohortctl listen <group>` subscription.
struct GroupListener {
    rx: Receiver<Delivery>,
    json: bool,
    shared: Arc<Shared>,
    group: String,
}

impl Drop for GroupListener {
    /// The client has gone: when it was the group's last listener, the node leaves the group
    /// again (unless the node or an application joined it too; the loop decides).
    fn drop(&mut self) {
        let last = self.shared.listen_counts.lock().is_ok_and(|mut c| {
            let n = c.entry(self.group.clone()).or_insert(1);
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&self.group);
                true
            } else {
                false
            }
        });
        if last {
            self.shared
                .request(super::shared::Request::ListenLeave(self.group.clone()));
        }
    }
}

impl crate::console::ListenSource for GroupListener {
    fn next(&mut self, wait: std::time::Duration) -> crate::console::ListenNext {
        use crate::console::ListenNext;
        match self.rx.recv_timeout(wait) {
            Ok(d) => ListenNext::Line(render_delivery(&d, self.json)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => ListenNext::Idle,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => ListenNext::Closed,
        }
    }
}

/// One group message as `listen` prints it: `[group] sender: text` (the payload as UTF-8, bad
/// bytes replaced), or a JSON object with the same fields.
pub fn render_delivery(d: &Delivery, json: bool) -> String {
    let text = String::from_utf8_lossy(&d.payload);
    if json {
        format!(
            "{}\n",
            serde_json::json!({
                "group": d.group,
                "sender": d.sender.name,
                "incarnation": d.sender.incarnation,
                "order": format!("{:?}", d.order),
                "payload": text,
            })
        )
    } else {
        format!("[{}] {}: {}\n", d.group, d.sender.name, text.trim_end())
    }
}

/// Joins `group` (if not yet a member) and returns its messages as they are delivered.
pub fn listen(
    shared: &Arc<Shared>,
    group: &str,
    json: bool,
) -> Result<Box<dyn crate::console::ListenSource>, String> {
    if group.is_empty() || group.len() > control::MAX_NAME {
        return Err(format!("invalid group name {group:?}: 1 to 64 bytes"));
    }
    let (tx, rx) = sync_channel(LISTEN_QUEUE);
    shared
        .listeners
        .lock()
        .map_err(|_| "listeners unavailable")?
        .push((group.to_owned(), tx));
    *shared
        .listen_counts
        .lock()
        .map_err(|_| "listeners unavailable")?
        .entry(group.to_owned())
        .or_insert(0) += 1;
    shared.request(super::shared::Request::ListenJoin(group.to_owned()));
    Ok(Box::new(GroupListener {
        rx,
        json,
        shared: shared.clone(),
        group: group.to_owned(),
    }))
}
