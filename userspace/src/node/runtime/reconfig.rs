//! `config reload` (and SIGHUP) and `cluster reset`: what the event loop does to its node
//! machine, data plane, journals and status when the configuration or the incarnation changes.

use std::time::Instant;

use cohort_engine::config;
use cohort_engine::group::{MemberId, Time};
use cohort_engine::udp::Outgoing;

use super::host::start_dataplane;
use super::{Node, RunError};
use crate::node::{identity, reload, setup};

impl Node {
    /// `cluster reset`: leave the cluster and come back at once as a new incarnation, which forces
    /// a fresh view and a new DuraVIP negotiation (Momentum restarted Spread for this).
    pub(super) fn reset(&mut self, now: Time) -> Result<(), RunError> {
        let mut id = self
            .shared
            .status
            .lock()
            .map_err(|_| RunError::Endpoint("status poisoned".into()))?
            .identity
            .clone();
        id.incarnation = identity::fresh_incarnation();
        let me = MemberId::new(id.nodename.clone(), id.incarnation);
        // Say goodbye first, so peers install the smaller view at once instead of suspecting us.
        let goodbye = self
            .node
            .reset(now, me.clone())
            .map_err(|e| RunError::Endpoint(e.to_string()))?;
        for t in goodbye {
            let _ = self.io.send_batch(&[Outgoing {
                to: t.destination,
                data: &t.payload,
            }]);
        }
        self.drain_node();
        if let Ok(mut s) = self.shared.status.lock() {
            s.identity = id;
            s.me = me;
            s.view = self.node.endpoint().view().clone();
            s.infos = self.node.infos().clone();
            s.groups.clear();
        }
        tracing::info!("cluster reset: rejoining as a new incarnation");
        Ok(())
    }

    /// `config reload` and SIGHUP: re-reads the configuration file and applies it, or refuses it
    /// whole (the running configuration stays); the answer, stored for the console, says which.
    pub(super) fn reload(&mut self, now: Time) {
        let msg = match self.try_reload(now) {
            Ok(msg) => {
                tracing::info!("{msg}");
                msg
            }
            Err(why) => {
                tracing::error!("config reload refused, running configuration kept: {why}");
                format!("reload refused, running configuration kept: {why}")
            }
        };
        if let Ok(mut s) = self.shared.status.lock() {
            s.last_reload = Some(msg);
        }
    }

    /// Loads the file, compares it with the running configuration ([`reload::diff`]) and, when
    /// nothing in it needs a restart, applies it: the node machine (transport timing, replicated
    /// objects, DuraVIP configuration and timing, ARP cache lifetime), the application handle,
    /// the data plane, the ARP collection, the journals and the paniclog.
    pub(super) fn try_reload(&mut self, now: Time) -> Result<String, String> {
        let (path, old) = {
            let s = self
                .shared
                .status
                .lock()
                .map_err(|_| "status unavailable")?;
            (s.config_path.clone(), s.config.clone())
        };
        let Some(path) = path else {
            return Ok("running on the embedded configuration: nothing to reload".into());
        };
        let new = config::load_file(&path).map_err(|e| e.to_string())?.config;
        let diff = reload::diff(&old, &new);
        if !diff.refused.is_empty() {
            return Err(format!(
                "{} cannot change without a restart",
                diff.refused.join(", ")
            ));
        }
        if diff.is_empty() {
            return Ok("configuration reloaded: nothing changed".into());
        }
        let plan = setup::plan(&new, self.manager).map_err(|e| e.to_string())?;
        self.node
            .reconfigure(now, plan.reconfig())
            .map_err(|e| e.to_string())?;
        // The log service's handshakes use the new keyring from now on.
        if let Ok(mut k) = self.shared.cluster_key.write() {
            *k = plan.key.clone();
        }
        let objects = self
            .shared
            .replicator
            .lock()
            .map(|r| r.objects().clone())
            .map_err(|_| "replication state unavailable")?;
        if let Ok(mut o) = self.shared.objects.write() {
            *o = objects;
        }
        if !self.manager {
            match &mut self.dataplane {
                Some(dp) => {
                    if let Err(e) = dp.reconfigure(&new, Instant::now()) {
                        tracing::error!(error = %e, "data plane reload failed");
                    }
                    dp.set_owned(&self.owned, Instant::now());
                }
                None if !plan.vip_addrs.is_empty() => {
                    let ip = plan.identity.addr.ip();
                    self.dataplane = start_dataplane(&new, ip, &plan.identity.nodename);
                    if let Some(dp) = &mut self.dataplane {
                        dp.set_owned(&self.owned, Instant::now());
                    }
                }
                None => {}
            }
        }
        if self.arp_every != plan.arp_every {
            self.next_arp = now;
        }
        self.arp_every = plan.arp_every;
        self.arp_scope = plan.arp_scope;
        self.vip_addrs = plan.vip_addrs;
        if !self.manager {
            self.shared.journals.reload(&new);
        }
        crate::node::paniclog::reload(self.shared.clone(), &new);
        self.duravip_dirty = true;
        if let Ok(mut s) = self.shared.status.lock() {
            s.config = new;
        }
        Ok(format!(
            "configuration reloaded: {}",
            diff.applied.join("; ")
        ))
    }
}
