//! The console's DuraVIP renderings: `cluster duravip show` in the documented shape, `cluster duravip
//! show tables` as XML, and the JSON forms of both for `--json`.
//!
//! `cluster duravip show`, per address (ascending):
//!
//! ```text
//! IP[/binding...]: (FLAGS) SERVICES[ follows IP]
//! \t[view stable for N seconds]
//! \t[configuration stable for N seconds]
//! MARK\tNODE SERVICES          (one line per member configured for the address, in view order)
//! ```
//!
//! FLAGS are `owned` or `unowned` (whether the address has an owner in the view, whichever node it
//! is), `safe` or `UNSAFE` (the members announce different services), then `in conflict` when
//! members name different preferred nodes and `BROKEN` when the address is not managed (binding
//! names differ, or its follow target is unusable). MARK is ` *  ` on the owner's line and four
//! spaces on the others: in the documented sample the asterisk is on a different node for
//! different addresses of one machine's output, so it marks the owner. SERVICES are `multivip`
//! (a binding), `smtp` (an ESMTP listener), or both. ` follows IP` is Cohort's addition for a
//! `Duravip_Follow` address.
//!
//! The data is the DuraVIP machine's [`crate::duravip::Status`]; this module only renders it,
//! through the console's one [`Render`] trait.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::render::Render;
use crate::duravip::Status;

/// `cluster duravip show`: [`Status`] as text and JSON.
impl Render for Status {
    fn text(&self) -> String {
        let status = self;
        let mut out = String::from("DuraVIP State:\n");
        if status.fenced {
            // Cohort extension (duravip_quorum = majority); absent otherwise, as in Momentum.
            out.push_str("[fenced: this node's view holds no majority of the configured peers]\n");
        }
        for e in &status.entries {
            out.push_str(&e.ip.to_string());
            for b in &e.bindings {
                out.push('/');
                out.push_str(b);
            }
            let _ = write!(out, ": ({})", e.flags().join(","));
            if !e.services.is_empty() {
                let _ = write!(out, " {}", e.services);
            }
            if let Some(f) = e.follows {
                let _ = write!(out, " follows {f}");
            }
            out.push('\n');
            let _ = writeln!(
                out,
                "\t[view stable for {} seconds]",
                status.view_stable_secs
            );
            let _ = writeln!(
                out,
                "\t[configuration stable for {} seconds]",
                e.configuration_stable_secs
            );
            for m in &e.members {
                let mark = if m.owner { " *  " } else { "    " };
                let _ = writeln!(out, "{mark}\t{} {}", m.name, m.services);
            }
        }
        out
    }

    fn json(&self) -> Value {
        let status = self;
        let entries: Vec<Value> = status
            .entries
            .iter()
            .map(|e| {
                json!({
                    "ip": e.ip.to_string(),
                    "bindings": e.bindings,
                    "flags": e.flags(),
                    "services": e.services,
                    "follows": e.follows.map(|f| f.to_string()),
                    "view_stable_secs": status.view_stable_secs,
                    "configuration_stable_secs": e.configuration_stable_secs,
                    "members": e.members.iter().map(|m| json!({
                        "name": m.name,
                        "services": m.services,
                        "owner": m.owner,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "node": status.node,
            "view_id": status.view_id,
            "fenced": status.fenced,
            "entries": entries,
        })
    }
}

/// `cluster duravip show tables`: the state tables as XML. Schema (Cohort's own; Momentum's is
/// undocumented):
///
/// ```text
/// <duravip node= view= leader= [fenced="true"] phase= view_mature= node_mature= node_withdrawn= view_stable= debug=>
///   <address ip= owned= safe= conflict= handoff= configuration_stable= [owner=] [preference=]
///            [follows=] [broken=binding_names|binding_elsewhere|follow_mismatch|follow_target]>
///     <binding name=/>*  <service name=multivip|smtp/>*
///     <member name= incarnation= index= services= owner= holds= candidate= this_node=/>*
///   </address>*
/// </duravip>
/// ```
///
/// `view` and `leader` are absent without a view; booleans are `true`/`false`; `services` on a
/// member is a space-separated list.
#[derive(Clone, Copy, Debug)]
pub struct DuravipTables<'a>(pub &'a Status);

impl Render for DuravipTables<'_> {
    fn text(&self) -> String {
        let status = self.0;
        let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(o, "<duravip node=\"{}\"", esc(&status.node));
        if let Some(v) = status.view_id {
            let _ = write!(o, " view=\"{v}\"");
        }
        if let Some(l) = &status.leader {
            let _ = write!(o, " leader=\"{}\"", esc(l));
        }
        if status.fenced {
            o.push_str(" fenced=\"true\"");
        }
        let _ = writeln!(
            o,
            " phase=\"{}\" view_mature=\"{}\" node_mature=\"{}\" node_withdrawn=\"{}\" view_stable=\"{}\" debug=\"{}\">",
            status.phase,
            status.view_mature,
            status.node_mature,
            status.node_withdrawn,
            status.view_stable_secs,
            status.debug
        );
        for e in &status.entries {
            let _ = write!(
                o,
                "  <address ip=\"{}\" owned=\"{}\" safe=\"{}\" conflict=\"{}\" handoff=\"{}\" configuration_stable=\"{}\"",
                e.ip, e.owned, e.safe, e.conflict, e.handoff, e.configuration_stable_secs
            );
            if let Some(x) = &e.owner {
                let _ = write!(o, " owner=\"{}\"", esc(x));
            }
            if let Some(x) = &e.preference {
                let _ = write!(o, " preference=\"{}\"", esc(x));
            }
            if let Some(x) = e.follows {
                let _ = write!(o, " follows=\"{x}\"");
            }
            if let Some(b) = e.broken {
                let _ = write!(o, " broken=\"{}\"", b.word());
            }
            o.push_str(">\n");
            for b in &e.bindings {
                let _ = writeln!(o, "    <binding name=\"{}\"/>", esc(b));
            }
            for s in e.services.words() {
                let _ = writeln!(o, "    <service name=\"{s}\"/>");
            }
            for m in &e.members {
                let _ = writeln!(
                    o,
                    "    <member name=\"{}\" incarnation=\"{}\" index=\"{}\" services=\"{}\" owner=\"{}\" holds=\"{}\" candidate=\"{}\" this_node=\"{}\"/>",
                    esc(&m.name),
                    m.incarnation,
                    m.index,
                    m.services,
                    m.owner,
                    m.holds,
                    m.candidate,
                    m.this_node
                );
            }
            o.push_str("  </address>\n");
        }
        o.push_str("</duravip>\n");
        o
    }

    /// The whole status.
    fn json(&self) -> Value {
        serde_json::to_value(self.0).unwrap_or_else(|e| json!({ "error": e.to_string() }))
    }
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duravip::ownership::Broken;
    use crate::duravip::{Services, StatusEntry, StatusMember};

    fn member(name: &str, index: usize, owner: bool, this: bool) -> StatusMember {
        StatusMember {
            name: name.into(),
            incarnation: 7,
            index,
            services: Services::MULTIVIP,
            owner,
            holds: owner,
            candidate: true,
            this_node: this,
        }
    }

    fn entry(ip: &str, bindings: &[&str], cfg: u64, owner: usize) -> StatusEntry {
        let names = ["labrat-2", "labrat-1", "labrat-4"];
        StatusEntry {
            ip: ip.parse().expect("ip"),
            bindings: bindings.iter().map(|b| (*b).to_owned()).collect(),
            services: Services::MULTIVIP,
            owned: true,
            safe: true,
            conflict: false,
            broken: None,
            preference: None,
            follows: None,
            owner: Some(names[owner].to_owned()),
            handoff: false,
            configuration_stable_secs: cfg,
            members: names
                .iter()
                .enumerate()
                .map(|(i, n)| member(n, i, i == owner, i == 2))
                .collect(),
        }
    }

    fn sample_status() -> Status {
        Status {
            node: "labrat-4".into(),
            view_id: Some(3),
            leader: Some("labrat-2".into()),
            phase: "run",
            view_mature: true,
            node_mature: true,
            node_withdrawn: false,
            fenced: false,
            view_stable_secs: 5420,
            debug: false,
            params: crate::duravip::Params::default(),
            entries: vec![
                entry(
                    "10.80.116.50",
                    &[
                        "flowgomail-hotmail-50",
                        "flowgomail-hotmail-51",
                        "flowgomail-hotmail-52",
                    ],
                    5409,
                    2,
                ),
                entry("10.80.116.53", &["flowgomail-hotmail-53"], 5466, 0),
                entry("10.80.116.54", &["flowgomail-hotmail-54"], 5465, 0),
            ],
        }
    }

    /// The module page's sample, byte for byte (without the prompt line and the trailing `...`).
    const SAMPLE: &str = "DuraVIP State:
10.80.116.50/flowgomail-hotmail-50/flowgomail-hotmail-51/flowgomail-hotmail-52: (owned,safe) multivip
\t[view stable for 5420 seconds]
\t[configuration stable for 5409 seconds]
    \tlabrat-2 multivip
    \tlabrat-1 multivip
 *  \tlabrat-4 multivip
10.80.116.53/flowgomail-hotmail-53: (owned,safe) multivip
\t[view stable for 5420 seconds]
\t[configuration stable for 5466 seconds]
 *  \tlabrat-2 multivip
    \tlabrat-1 multivip
    \tlabrat-4 multivip
10.80.116.54/flowgomail-hotmail-54: (owned,safe) multivip
\t[view stable for 5420 seconds]
\t[configuration stable for 5465 seconds]
 *  \tlabrat-2 multivip
    \tlabrat-1 multivip
    \tlabrat-4 multivip
";

    #[test]
    fn show_reproduces_the_documented_sample() {
        assert_eq!(sample_status().text(), SAMPLE);
    }

    #[test]
    fn flags_and_extensions() {
        let mut s = sample_status();
        s.entries.truncate(1);
        let e = &mut s.entries[0];
        e.owned = false;
        e.safe = false;
        e.conflict = true;
        e.services = Services::ALL;
        e.follows = Some("10.2.1.1".parse().expect("ip"));
        for m in &mut e.members {
            m.owner = false;
        }
        let text = s.text();
        let first = text.lines().nth(1).expect("address line");
        assert_eq!(
            first,
            "10.80.116.50/flowgomail-hotmail-50/flowgomail-hotmail-51/flowgomail-hotmail-52: \
             (unowned,UNSAFE,in conflict) multivip smtp follows 10.2.1.1"
        );
        assert!(!text.contains(" *  "), "no owner, no asterisk");
        s.entries[0].broken = Some(Broken::BindingNames);
        assert!(s.text().contains("(unowned,UNSAFE,in conflict,BROKEN)"));
        let xml = DuravipTables(&s).text();
        assert!(xml.contains("broken=\"binding_names\""), "{xml}");
    }

    #[test]
    fn xml_and_json_forms() {
        let mut s = sample_status();
        s.node = "a<&\"b".into();
        let xml = DuravipTables(&s).text();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<duravip node=\"a&lt;&amp;&quot;b\" view=\"3\" leader=\"labrat-2\" phase=\"run\""));
        assert_eq!(xml.matches("<address ").count(), 3);
        assert_eq!(xml.matches("</address>").count(), 3);
        assert_eq!(xml.matches("<member ").count(), 9);
        assert!(xml.contains(
            "<address ip=\"10.80.116.53\" owned=\"true\" safe=\"true\" conflict=\"false\" handoff=\"false\" configuration_stable=\"5466\" owner=\"labrat-2\">"
        ));
        assert!(xml.contains("<binding name=\"flowgomail-hotmail-51\"/>"));
        assert!(xml.trim_end().ends_with("</duravip>"));
        let j = s.json();
        assert_eq!(j["entries"][0]["flags"], json!(["owned", "safe"]));
        assert_eq!(j["entries"][0]["members"][2]["owner"], json!(true));
        assert_eq!(j["entries"][1]["services"], json!(["multivip"]));
        let t = DuravipTables(&s).json();
        assert_eq!(t["view_stable_secs"], json!(5420));
        assert_eq!(t["entries"][2]["owner"], json!("labrat-2"));
        assert_eq!(t["entries"][0]["members"][2]["this_node"], json!(true));
    }
}
