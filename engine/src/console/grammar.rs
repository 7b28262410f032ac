//! The console's command grammar: one table of command forms drives parsing ([`parse`]), tab
//! completion ([`complete`]) and the help listing ([`forms`]), so the three can never disagree.
//!
//! Words are separated by whitespace; keywords match case-insensitively, arguments keep their case.
//! Parsing never panics: any input gives a [`Command`] or a [`ParseError`] naming the offending
//! word, its column and what was expected there.

use std::fmt;
use std::net::IpAddr;

use super::shared_ops::{self, OutboundQuestion, SharedOp, keyword_is};

/// Which process accepts a command: a node (`cohortd`), the manager (`cohortd --manager`, Momentum's
/// eccmgr) or both. Momentum's `cluster ...` commands "do not execute when issued from within the
/// eccmgr service", and the manager's `broadcast` family means nothing on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Node,
    Manager,
    Both,
}

impl Scope {
    /// Whether a process of role `role` (`Node` or `Manager`) runs commands of this scope.
    pub fn allows(self, role: Scope) -> bool {
        self == Scope::Both || self == role || role == Scope::Both
    }
}

/// A parsed console command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help`: every command this process accepts.
    Help,
    /// `version`.
    Version,
    /// `config reload`: reload the configuration file.
    ConfigReload,
    /// `cluster ...`: the cluster module's node commands.
    Cluster(ClusterCommand),
    /// The manager's commands.
    Manager(ManagerCommand),
    /// `listen <group>`: join a named group and stream its messages (Spread's `spuser`; used
    /// with `log_group` to watch paniclog broadcasts). Only `cohortctl listen` streams; run as an
    /// ordinary command it is refused.
    Listen { group: String },
    /// `log append <log> <text>` (Cohort): append one record to a cluster journal of this node.
    LogAppend { log: String, text: String },
}

/// The `cluster ...` commands of the module page (71.19.4), plus Cohort's `cluster counters`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterCommand {
    Help,
    Info,
    Membership,
    Nodename,
    Nodeaddr,
    Reset,
    Abort {
        id: u64,
    },
    /// `cluster jobs` (Cohort extension): what `abort` can stop.
    Jobs,
    ArpShow,
    DuravipShow,
    DuravipShowTables,
    DuravipDebug {
        on: bool,
    },
    DuravipAnnounceView,
    DuravipReleaseAll,
    /// `cluster duravip move <ip> to <node>` (the module page also writes it without `to`).
    DuravipMove {
        ip: IpAddr,
        to: String,
    },
    /// `cluster duravip move <from_host> <to_host>`: every address `from` owns (the module page's
    /// other form).
    DuravipMoveNode {
        from: String,
        to: String,
    },
    SharedList,
    SharedShow {
        object: String,
        from: Option<String>,
    },
    ShowLogs,
    /// Cohort extension: the group transport's datagram counters.
    Counters,
    /// Cohort extension: an application's operation on a replicated object
    /// (`cluster shared cidr|gauge|throttle|cache|series ...`; see [`super::shared_ops`]).
    SharedOp(SharedOp),
}

/// The manager's (eccmgr's) console commands. A carried command is itself parsed, so a mistyped
/// command is refused at the manager instead of on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagerCommand {
    Broadcast {
        command: Box<Command>,
    },
    Unicast {
        node: String,
        command: Box<Command>,
    },
    Retrieve {
        command: Box<Command>,
    },
    RetrieveNode {
        node: String,
        command: Box<Command>,
    },
    SubclusterBroadcast {
        subcluster: String,
        command: Box<Command>,
    },
    SubclusterRetrieve {
        subcluster: String,
        command: Box<Command>,
    },
    FlushControlCache,
    ShowClusterMembership,
    Info,
    Shutdown,
}

impl Command {
    /// Which processes accept this command.
    pub fn scope(&self) -> Scope {
        match self {
            Command::Help
            | Command::Version
            | Command::ConfigReload
            | Command::Listen { .. }
            | Command::Cluster(ClusterCommand::Jobs | ClusterCommand::Abort { .. }) => Scope::Both,
            Command::Cluster(_) | Command::LogAppend { .. } => Scope::Node,
            Command::Manager(_) => Scope::Manager,
        }
    }
}

/// The canonical text of a command: keywords in lower case, single spaces. Parsing it gives the
/// same command back, so it is what the manager sends to nodes and keys its response cache by.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Help => f.write_str("help"),
            Command::Version => f.write_str("version"),
            Command::ConfigReload => f.write_str("config reload"),
            Command::Cluster(c) => write!(f, "cluster {c}"),
            Command::Manager(m) => m.fmt(f),
            Command::Listen { group } => write!(f, "listen {group}"),
            Command::LogAppend { log, text } => write!(f, "log append {log} {text}"),
        }
    }
}

impl fmt::Display for ClusterCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ClusterCommand as C;
        match self {
            C::Help => f.write_str("help"),
            C::Info => f.write_str("info"),
            C::Membership => f.write_str("membership"),
            C::Nodename => f.write_str("nodename"),
            C::Nodeaddr => f.write_str("nodeaddr"),
            C::Reset => f.write_str("reset"),
            C::Abort { id } => write!(f, "abort {id}"),
            C::Jobs => write!(f, "jobs"),
            C::ArpShow => f.write_str("arp show"),
            C::DuravipShow => f.write_str("duravip show"),
            C::DuravipShowTables => f.write_str("duravip show tables"),
            C::DuravipDebug { on: true } => f.write_str("duravip debug on"),
            C::DuravipDebug { on: false } => f.write_str("duravip debug off"),
            C::DuravipAnnounceView => f.write_str("duravip announce view"),
            C::DuravipReleaseAll => f.write_str("duravip release all"),
            C::DuravipMove { ip, to } => write!(f, "duravip move {ip} to {to}"),
            C::DuravipMoveNode { from, to } => write!(f, "duravip move {from} {to}"),
            C::SharedList => f.write_str("shared list"),
            C::SharedShow { object, from: None } => write!(f, "shared show {object}"),
            C::SharedShow {
                object,
                from: Some(node),
            } => write!(f, "shared show {object} from {node}"),
            C::ShowLogs => f.write_str("show logs"),
            C::Counters => f.write_str("counters"),
            C::SharedOp(op) => write!(f, "shared {op}"),
        }
    }
}

impl fmt::Display for ManagerCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ManagerCommand as M;
        match self {
            M::Broadcast { command } => write!(f, "broadcast {command}"),
            M::Unicast { node, command } => write!(f, "unicast {node} {command}"),
            M::Retrieve { command } => write!(f, "retrieve {command}"),
            M::RetrieveNode { node, command } => write!(f, "retrieve_node {node} {command}"),
            M::SubclusterBroadcast {
                subcluster,
                command,
            } => write!(f, "subcluster broadcast {subcluster} {command}"),
            M::SubclusterRetrieve {
                subcluster,
                command,
            } => write!(f, "subcluster retrieve {subcluster} {command}"),
            M::FlushControlCache => f.write_str("flush control cache"),
            M::ShowClusterMembership => f.write_str("show cluster membership"),
            M::Info => f.write_str("info"),
            M::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// Why a line is not a command. Columns are 1-based character positions in the line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty command; expected one of: {}", expected.join(", "))]
    Empty { expected: Vec<String> },
    #[error(
        "unknown word '{found}' at column {col}{}; expected one of: {}",
        after_text(after),
        expected.join(", ")
    )]
    UnexpectedWord {
        col: usize,
        found: String,
        after: String,
        expected: Vec<String>,
    },
    #[error("'{after}' is incomplete; expected one of: {}", expected.join(", "))]
    MissingWord {
        after: String,
        expected: Vec<String>,
    },
    #[error(
        "'{found}' at column {col}{} is not a valid {placeholder}: {reason}",
        after_text(after)
    )]
    BadArgument {
        col: usize,
        found: String,
        after: String,
        placeholder: &'static str,
        reason: &'static str,
    },
    #[error("unexpected word '{found}' at column {col}: '{after}' ends there")]
    TrailingWord {
        col: usize,
        found: String,
        after: String,
    },
    #[error("'{found}' at column {col} is a manager command and cannot be carried by '{after}'")]
    NestedManagerCommand {
        col: usize,
        found: String,
        after: String,
    },
}

fn after_text(after: &str) -> String {
    if after.is_empty() {
        String::new()
    } else {
        format!(" after '{after}'")
    }
}

/// An argument slot in a command form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A job id (non-negative integer).
    JobId,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A node name.
    Node,
    /// A node name that is not written like an address (where an address could stand instead).
    Host,
    /// A subcluster name.
    Subcluster,
    /// A shared object's name.
    Object,
    /// The rest of the line, itself a node command.
    Command,
    /// A group name (1 to 64 bytes).
    Group,
    /// The rest of the line as written (a log record).
    Text,
    /// A cluster log's name (`mainlog`).
    Log,
    /// An IPv4 or IPv6 netblock (`10.1.0.0/16`, `2001:db8::/32`) or address (a host prefix).
    Net,
    /// A non-negative integer amount (at most `i64::MAX`).
    Amount,
    /// A key of a replicated object (a domain, a throttle or series name, a cache key, ...).
    Key,
    /// A `Binding`'s name (outbound events).
    Binding,
    /// A gauge cache's name.
    Cache,
    /// A destination domain (outbound events).
    Domain,
    /// A cache value: one word, kept as typed.
    Value,
    /// A series name (`connect`, `delivery`, ... or a named audit series).
    Series,
    /// A series item: an address, a netblock or a word.
    Item,
    /// A throttle rate: `N` events per second or `N/SECONDS`.
    Rate,
    /// A cache time to live: seconds, or minutes/hours with an `M`/`H` suffix; 0 never expires.
    Ttl,
}

impl Arg {
    /// The placeholder shown in help and error messages.
    pub fn placeholder(self) -> &'static str {
        match self {
            Arg::JobId => "<id>",
            Arg::Ip => "<ip>",
            Arg::Node | Arg::Host => "<node>",
            Arg::Subcluster => "<subcluster>",
            Arg::Object => "<object>",
            Arg::Command => "<command>",
            Arg::Group => "<group>",
            Arg::Text => "<text>",
            Arg::Log => "<log>",
            Arg::Net => "<net>",
            Arg::Amount => "<n>",
            Arg::Key => "<key>",
            Arg::Binding => "<binding>",
            Arg::Cache => "<cache>",
            Arg::Domain => "<domain>",
            Arg::Value => "<value>",
            Arg::Series => "<series>",
            Arg::Item => "<item>",
            Arg::Rate => "<rate>",
            Arg::Ttl => "<ttl>",
        }
    }

    /// `None` when `word` fits this slot, else why not.
    fn reject(self, word: &str) -> Option<&'static str> {
        match self {
            Arg::JobId => word
                .parse::<u64>()
                .is_err()
                .then_some("a job id is a non-negative integer"),
            Arg::Ip => word
                .parse::<IpAddr>()
                .is_err()
                .then_some("expected an IPv4 or IPv6 address"),
            Arg::Group => (word.len() > 64).then_some("a group name is 1 to 64 bytes"),
            Arg::Net => shared_ops::parse_net(word)
                .is_none()
                .then_some("expected an IPv4 or IPv6 address or netblock (address/prefix length)"),
            Arg::Amount => shared_ops::parse_amount(word)
                .is_none()
                .then_some("expected a non-negative integer"),
            Arg::Rate => shared_ops::parse_rate(word)
                .is_none()
                .then_some("expected N (per second) or N/SECONDS with SECONDS at least 1"),
            Arg::Ttl => crate::replicate::cache::parse_ttl(word)
                .is_err()
                .then_some("expected seconds, or minutes/hours ending in M/H"),
            Arg::Host => (word.contains(':')
                || word.chars().all(|c| c.is_ascii_digit() || c == '.'))
            .then_some("a node name, not an address"),
            Arg::Node
            | Arg::Subcluster
            | Arg::Object
            | Arg::Command
            | Arg::Key
            | Arg::Binding
            | Arg::Cache
            | Arg::Domain
            | Arg::Value
            | Arg::Series
            | Arg::Item
            | Arg::Text
            | Arg::Log => None,
        }
    }
}

/// One word of a command form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    Keyword(&'static str),
    Arg(Arg),
}

/// One command form of the grammar: its words, who accepts it and a one-line description.
#[derive(Debug)]
pub struct Form {
    /// The words in order; an [`Arg::Command`] slot is always last.
    pub words: &'static [Word],
    /// Which processes accept the form.
    pub scope: Scope,
    /// One-line description for help.
    pub summary: &'static str,
    /// Left out of help (an alternative spelling of a listed form).
    pub hidden: bool,
    build: fn(&mut Captured) -> Command,
}

impl Form {
    /// The form as help prints it, e.g. `cluster abort <id>`.
    pub fn usage(&self) -> String {
        self.words
            .iter()
            .map(|w| match w {
                Word::Keyword(k) => *k,
                Word::Arg(a) => a.placeholder(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Argument values captured while matching a form, in order of appearance.
#[derive(Default)]
struct Captured {
    id: Option<u64>,
    ip: Option<IpAddr>,
    names: std::collections::VecDeque<String>,
    command: Option<Command>,
    text: Option<String>,
    nets: std::collections::VecDeque<ipnet::IpNet>,
    amounts: std::collections::VecDeque<i64>,
}

// The builders below take what their own form's words captured; `forms_build_their_examples`
// parses every form, so a mismatch between a form and its builder fails that test.
impl Captured {
    fn name(&mut self) -> String {
        self.names
            .pop_front()
            .expect("the form has a name slot here")
    }
    fn id(&mut self) -> u64 {
        self.id.take().expect("the form has an <id> slot")
    }
    fn ip(&mut self) -> IpAddr {
        self.ip.take().expect("the form has an <ip> slot")
    }
    fn text(&mut self) -> String {
        self.text.take().expect("the form has a <text> slot")
    }
    fn command(&mut self) -> Box<Command> {
        Box::new(self.command.take().expect("the form has a <command> slot"))
    }
    fn net(&mut self) -> ipnet::IpNet {
        self.nets.pop_front().expect("the form has a <net> slot")
    }
    fn amount(&mut self) -> i64 {
        self.amounts.pop_front().expect("the form has an <n> slot")
    }
}

use Word::{Arg as A, Keyword as K};

macro_rules! form {
    ($scope:ident, $summary:expr, [$($w:expr),+], $build:expr) => {
        Form { words: &[$($w),+], scope: Scope::$scope, summary: $summary, hidden: false, build: $build }
    };
    (hidden $scope:ident, $summary:expr, [$($w:expr),+], $build:expr) => {
        Form { words: &[$($w),+], scope: Scope::$scope, summary: $summary, hidden: true, build: $build }
    };
}

fn cluster(c: ClusterCommand) -> Command {
    Command::Cluster(c)
}

fn shared_op(c: &mut Captured, op: impl FnOnce(&mut Captured) -> SharedOp) -> Command {
    cluster(ClusterCommand::SharedOp(op(c)))
}

fn gauge_cache_init(c: &mut Captured, replicate: bool) -> SharedOp {
    let cache = c.name();
    let max = c.amount().unsigned_abs();
    let ttl = crate::replicate::cache::parse_ttl(&c.name()).expect("the <ttl> slot checked it");
    SharedOp::GaugeCacheInit {
        cache,
        max,
        ttl,
        replicate,
    }
}

fn outbound_ask(c: &mut Captured, what: OutboundQuestion) -> SharedOp {
    SharedOp::OutboundAsk {
        what,
        object: c.name(),
        binding: c.name(),
        domain: c.name(),
    }
}

fn manager(m: ManagerCommand) -> Command {
    Command::Manager(m)
}

static FORMS: &[Form] = &[
    form!(
        Both,
        "Abort the job with the specified id.",
        [K("cluster"), K("abort"), A(Arg::JobId)],
        |c| cluster(ClusterCommand::Abort { id: c.id() })
    ),
    form!(
        Both,
        "List the jobs cluster abort can stop: the manager's log pulls and DuraVIP moves in progress.",
        [K("cluster"), K("jobs")],
        |_| cluster(ClusterCommand::Jobs)
    ),
    form!(
        Node,
        "Show the cluster-wide shared ARP cache: IP, MAC and age.",
        [K("cluster"), K("arp"), K("show")],
        |_| cluster(ClusterCommand::ArpShow)
    ),
    form!(
        Node,
        "Show the group transport's datagram counters (Cohort).",
        [K("cluster"), K("counters")],
        |_| cluster(ClusterCommand::Counters)
    ),
    form!(
        Node,
        "Announce a view update using the current local view.",
        [K("cluster"), K("duravip"), K("announce"), K("view")],
        |_| cluster(ClusterCommand::DuravipAnnounceView)
    ),
    form!(
        Node,
        "Turn DuraVIP debugging on.",
        [K("cluster"), K("duravip"), K("debug"), K("on")],
        |_| cluster(ClusterCommand::DuravipDebug { on: true })
    ),
    form!(
        Node,
        "Turn DuraVIP debugging off.",
        [K("cluster"), K("duravip"), K("debug"), K("off")],
        |_| cluster(ClusterCommand::DuravipDebug { on: false })
    ),
    form!(
        Node,
        "Move a DuraVIP to a node (safe only as 'broadcast ...' from the manager).",
        [
            K("cluster"),
            K("duravip"),
            K("move"),
            A(Arg::Ip),
            K("to"),
            A(Arg::Node)
        ],
        |c| cluster(ClusterCommand::DuravipMove {
            ip: c.ip(),
            to: c.name()
        })
    ),
    form!(hidden Node, "Move a DuraVIP to a node (the module page's spelling).",
        [K("cluster"), K("duravip"), K("move"), A(Arg::Ip), A(Arg::Node)],
        |c| cluster(ClusterCommand::DuravipMove { ip: c.ip(), to: c.name() })),
    form!(
        Node,
        "Move every DuraVIP one node owns to another node.",
        [
            K("cluster"),
            K("duravip"),
            K("move"),
            A(Arg::Host),
            A(Arg::Node)
        ],
        |c| cluster(ClusterCommand::DuravipMoveNode {
            from: c.name(),
            to: c.name()
        })
    ),
    form!(
        Node,
        "Release every DuraVIP this node owns.",
        [K("cluster"), K("duravip"), K("release"), K("all")],
        |_| cluster(ClusterCommand::DuravipReleaseAll)
    ),
    form!(
        Node,
        "Show the current state of the DuraVIP bindings.",
        [K("cluster"), K("duravip"), K("show")],
        |_| cluster(ClusterCommand::DuravipShow)
    ),
    form!(
        Node,
        "Show the DuraVIP state tables in XML.",
        [K("cluster"), K("duravip"), K("show"), K("tables")],
        |_| cluster(ClusterCommand::DuravipShowTables)
    ),
    form!(
        Node,
        "Display the available cluster console commands.",
        [K("cluster"), K("help")],
        |_| cluster(ClusterCommand::Help)
    ),
    form!(
        Node,
        "Display the current operating status and parameters.",
        [K("cluster"), K("info")],
        |_| cluster(ClusterCommand::Info)
    ),
    form!(
        Node,
        "Show the members of the current view.",
        [K("cluster"), K("membership")],
        |_| cluster(ClusterCommand::Membership)
    ),
    form!(
        Node,
        "Show the cluster protocol service address.",
        [K("cluster"), K("nodeaddr")],
        |_| cluster(ClusterCommand::Nodeaddr)
    ),
    form!(
        Node,
        "Show the name of the local node.",
        [K("cluster"), K("nodename")],
        |_| cluster(ClusterCommand::Nodename)
    ),
    form!(
        Node,
        "Reset the node's cluster membership (rejoin; renegotiates DuraVIPs).",
        [K("cluster"), K("reset")],
        |_| cluster(ClusterCommand::Reset)
    ),
    form!(
        Node,
        "Display the currently managed shared objects.",
        [K("cluster"), K("shared"), K("list")],
        |_| cluster(ClusterCommand::SharedList)
    ),
    form!(
        Node,
        "Display a shared object's cluster-wide view.",
        [K("cluster"), K("shared"), K("show"), A(Arg::Object)],
        |c| cluster(ClusterCommand::SharedShow {
            object: c.name(),
            from: None
        })
    ),
    form!(
        Node,
        "Display a shared object as one node contributes it.",
        [
            K("cluster"),
            K("shared"),
            K("show"),
            A(Arg::Object),
            K("from"),
            A(Arg::Node)
        ],
        |c| {
            let object = c.name();
            cluster(ClusterCommand::SharedShow {
                object,
                from: Some(c.name()),
            })
        }
    ),
    // Applications' operations on replicated objects (Cohort; console::shared_ops).
    form!(
        Node,
        "Add one to a prefix's count in a CIDR tree (this node's contribution).",
        [
            K("cluster"),
            K("shared"),
            K("cidr"),
            K("incr"),
            A(Arg::Object),
            A(Arg::Net)
        ],
        |c| shared_op(c, |c| SharedOp::CidrAdd {
            object: c.name(),
            net: c.net(),
            delta: 1
        })
    ),
    form!(
        Node,
        "Add n to a prefix's count in a CIDR tree (this node's contribution).",
        [
            K("cluster"),
            K("shared"),
            K("cidr"),
            K("incr"),
            A(Arg::Object),
            A(Arg::Net),
            A(Arg::Amount)
        ],
        |c| shared_op(c, |c| SharedOp::CidrAdd {
            object: c.name(),
            net: c.net(),
            delta: c.amount()
        })
    ),
    form!(
        Node,
        "Subtract one from a prefix's count in a CIDR tree (this node's contribution).",
        [
            K("cluster"),
            K("shared"),
            K("cidr"),
            K("decr"),
            A(Arg::Object),
            A(Arg::Net)
        ],
        |c| shared_op(c, |c| SharedOp::CidrAdd {
            object: c.name(),
            net: c.net(),
            delta: -1
        })
    ),
    form!(
        Node,
        "Subtract n from a prefix's count in a CIDR tree (this node's contribution).",
        [
            K("cluster"),
            K("shared"),
            K("cidr"),
            K("decr"),
            A(Arg::Object),
            A(Arg::Net),
            A(Arg::Amount)
        ],
        |c| shared_op(c, |c| SharedOp::CidrAdd {
            object: c.name(),
            net: c.net(),
            delta: -c.amount()
        })
    ),
    form!(
        Node,
        "Add one to a gauge's value (this node's contribution).",
        [
            K("cluster"),
            K("shared"),
            K("gauge"),
            K("incr"),
            A(Arg::Object),
            A(Arg::Key)
        ],
        |c| shared_op(c, |c| SharedOp::GaugeAdd {
            object: c.name(),
            key: c.name(),
            delta: 1
        })
    ),
    form!(
        Node,
        "Add n to a gauge's value (this node's contribution).",
        [
            K("cluster"),
            K("shared"),
            K("gauge"),
            K("incr"),
            A(Arg::Object),
            A(Arg::Key),
            A(Arg::Amount)
        ],
        |c| shared_op(c, |c| SharedOp::GaugeAdd {
            object: c.name(),
            key: c.name(),
            delta: c.amount()
        })
    ),
    form!(
        Node,
        "Subtract one from a gauge's value (this node's contribution).",
        [
            K("cluster"),
            K("shared"),
            K("gauge"),
            K("decr"),
            A(Arg::Object),
            A(Arg::Key)
        ],
        |c| shared_op(c, |c| SharedOp::GaugeAdd {
            object: c.name(),
            key: c.name(),
            delta: -1
        })
    ),
    form!(
        Node,
        "Subtract n from a gauge's value (this node's contribution).",
        [
            K("cluster"),
            K("shared"),
            K("gauge"),
            K("decr"),
            A(Arg::Object),
            A(Arg::Key),
            A(Arg::Amount)
        ],
        |c| shared_op(c, |c| SharedOp::GaugeAdd {
            object: c.name(),
            key: c.name(),
            delta: -c.amount()
        })
    ),
    form!(
        Node,
        "Count a netblock in a CIDR tree's global view.",
        [
            K("cluster"),
            K("shared"),
            K("cidr"),
            K("count"),
            A(Arg::Object),
            A(Arg::Net)
        ],
        |c| shared_op(c, |c| SharedOp::CidrCount {
            object: c.name(),
            net: c.net(),
            local: false
        })
    ),
    form!(
        Node,
        "Count a netblock in this node's contribution to a CIDR tree.",
        [
            K("cluster"),
            K("shared"),
            K("cidr"),
            K("count"),
            A(Arg::Object),
            A(Arg::Net),
            K("local")
        ],
        |c| shared_op(c, |c| SharedOp::CidrCount {
            object: c.name(),
            net: c.net(),
            local: true
        })
    ),
    form!(
        Node,
        "Read a gauge's global value.",
        [
            K("cluster"),
            K("shared"),
            K("gauge"),
            K("get"),
            A(Arg::Object),
            A(Arg::Key)
        ],
        |c| shared_op(c, |c| SharedOp::GaugeGet {
            object: c.name(),
            key: c.name(),
            local: false
        })
    ),
    form!(
        Node,
        "Read this node's contribution to a gauge.",
        [
            K("cluster"),
            K("shared"),
            K("gauge"),
            K("get"),
            A(Arg::Object),
            A(Arg::Key),
            K("local")
        ],
        |c| shared_op(c, |c| SharedOp::GaugeGet {
            object: c.name(),
            key: c.name(),
            local: true
        })
    ),
    form!(
        Node,
        "Define a cluster-wide throttle of N events per second or N/SECONDS.",
        [
            K("cluster"),
            K("shared"),
            K("throttle"),
            K("create"),
            A(Arg::Object),
            A(Arg::Key),
            A(Arg::Rate)
        ],
        |c| shared_op(c, |c| {
            let (object, name) = (c.name(), c.name());
            let (limit, period) =
                shared_ops::parse_rate(&c.name()).expect("the <rate> slot checked it");
            SharedOp::ThrottleCreate {
                object,
                name,
                limit,
                period,
            }
        })
    ),
    form!(
        Node,
        "Count one event against a throttle.",
        [
            K("cluster"),
            K("shared"),
            K("throttle"),
            K("inc"),
            A(Arg::Object),
            A(Arg::Key)
        ],
        |c| shared_op(c, |c| SharedOp::ThrottleInc {
            object: c.name(),
            name: c.name(),
            n: 1
        })
    ),
    form!(
        Node,
        "Count n events against a throttle.",
        [
            K("cluster"),
            K("shared"),
            K("throttle"),
            K("inc"),
            A(Arg::Object),
            A(Arg::Key),
            A(Arg::Amount)
        ],
        |c| shared_op(c, |c| SharedOp::ThrottleInc {
            object: c.name(),
            name: c.name(),
            n: c.amount()
        })
    ),
    form!(
        Node,
        "Whether a throttle is over its cluster-wide budget (true/false).",
        [
            K("cluster"),
            K("shared"),
            K("throttle"),
            K("check"),
            A(Arg::Object),
            A(Arg::Key)
        ],
        |c| shared_op(c, |c| SharedOp::ThrottleCheck {
            object: c.name(),
            name: c.name()
        })
    ),
    form!(
        Node,
        "Seconds to delay an event of an over-budget throttle (0 within budget).",
        [
            K("cluster"),
            K("shared"),
            K("throttle"),
            K("tarpit"),
            A(Arg::Object),
            A(Arg::Key)
        ],
        |c| shared_op(c, |c| SharedOp::ThrottleTarpit {
            object: c.name(),
            name: c.name()
        })
    ),
    form!(
        Node,
        "Whether a message (OBTM) or connection (OBTC) on a binding to a domain is over its configured cluster_outbound_throttle_* (true/false).",
        [
            K("cluster"),
            K("shared"),
            K("outbound"),
            K("check"),
            A(Arg::Object),
            A(Arg::Binding),
            A(Arg::Domain)
        ],
        |c| shared_op(c, |c| outbound_ask(c, OutboundQuestion::Check))
    ),
    form!(
        Node,
        "Seconds to delay a message (OBTM) or connection (OBTC) on a binding to a domain (0 within budget).",
        [
            K("cluster"),
            K("shared"),
            K("outbound"),
            K("tarpit"),
            A(Arg::Object),
            A(Arg::Binding),
            A(Arg::Domain)
        ],
        |c| shared_op(c, |c| outbound_ask(c, OutboundQuestion::Tarpit))
    ),
    form!(
        Node,
        "Which configured throttle applies to a binding and a domain (its name, or none).",
        [
            K("cluster"),
            K("shared"),
            K("outbound"),
            K("which"),
            A(Arg::Object),
            A(Arg::Binding),
            A(Arg::Domain)
        ],
        |c| shared_op(c, |c| outbound_ask(c, OutboundQuestion::Which))
    ),
    form!(
        Node,
        "Count one message (OBTM) or connection (OBTC) on a binding to a domain against its throttle.",
        [
            K("cluster"),
            K("shared"),
            K("outbound"),
            K("inc"),
            A(Arg::Object),
            A(Arg::Binding),
            A(Arg::Domain)
        ],
        |c| shared_op(c, |c| SharedOp::OutboundInc {
            object: c.name(),
            binding: c.name(),
            domain: c.name(),
            n: 1
        })
    ),
    form!(
        Node,
        "Count n messages (OBTM) or connections (OBTC) on a binding to a domain against its throttle.",
        [
            K("cluster"),
            K("shared"),
            K("outbound"),
            K("inc"),
            A(Arg::Object),
            A(Arg::Binding),
            A(Arg::Domain),
            A(Arg::Amount)
        ],
        |c| shared_op(c, |c| SharedOp::OutboundInc {
            object: c.name(),
            binding: c.name(),
            domain: c.name(),
            n: c.amount()
        })
    ),
    form!(
        Node,
        "An outbound connection opened on a binding to a domain at an address (counted by outbound_cidr, outbound_domains, outbound_binding_domains).",
        [
            K("cluster"),
            K("shared"),
            K("outbound"),
            K("open"),
            A(Arg::Binding),
            A(Arg::Domain),
            A(Arg::Ip)
        ],
        |c| shared_op(c, |c| SharedOp::OutboundConnection {
            binding: c.name(),
            domain: c.name(),
            address: c.ip(),
            delta: 1
        })
    ),
    form!(
        Node,
        "An outbound connection closed (the counts of outbound open, taken back).",
        [
            K("cluster"),
            K("shared"),
            K("outbound"),
            K("close"),
            A(Arg::Binding),
            A(Arg::Domain),
            A(Arg::Ip)
        ],
        |c| shared_op(c, |c| SharedOp::OutboundConnection {
            binding: c.name(),
            domain: c.name(),
            address: c.ip(),
            delta: -1
        })
    ),
    form!(
        Node,
        "Define a gauge cache: at most <n> entries, each dropped <ttl> after its last change (0 never), on this node only.",
        [
            K("cluster"),
            K("shared"),
            K("gauge_cache"),
            K("init"),
            A(Arg::Cache),
            A(Arg::Amount),
            A(Arg::Ttl)
        ],
        |c| shared_op(c, |c| gauge_cache_init(c, false))
    ),
    form!(
        Node,
        "Define a gauge cache replicated across the cluster (needs a Replicate scope with parameters = \"gauge_cache\").",
        [
            K("cluster"),
            K("shared"),
            K("gauge_cache"),
            K("init"),
            A(Arg::Cache),
            A(Arg::Amount),
            A(Arg::Ttl),
            K("replicate")
        ],
        |c| shared_op(c, |c| gauge_cache_init(c, true))
    ),
    form!(
        Node,
        "Add n to a gauge cache entry (created if absent).",
        [
            K("cluster"),
            K("shared"),
            K("gauge_cache"),
            K("add"),
            A(Arg::Cache),
            A(Arg::Key),
            A(Arg::Amount)
        ],
        |c| shared_op(c, |c| SharedOp::GaugeCacheAdd {
            cache: c.name(),
            key: c.name(),
            delta: c.amount()
        })
    ),
    form!(
        Node,
        "Subtract n from a gauge cache entry (created if absent).",
        [
            K("cluster"),
            K("shared"),
            K("gauge_cache"),
            K("sub"),
            A(Arg::Cache),
            A(Arg::Key),
            A(Arg::Amount)
        ],
        |c| shared_op(c, |c| SharedOp::GaugeCacheAdd {
            cache: c.name(),
            key: c.name(),
            delta: -c.amount()
        })
    ),
    form!(
        Node,
        "A gauge cache entry's value (cluster-wide for a replicated cache; 0 when absent).",
        [
            K("cluster"),
            K("shared"),
            K("gauge_cache"),
            K("show"),
            A(Arg::Cache),
            A(Arg::Key)
        ],
        |c| shared_op(c, |c| SharedOp::GaugeCacheShow {
            cache: c.name(),
            key: c.name()
        })
    ),
    form!(
        Node,
        "Forget a gauge cache entry on this node.",
        [
            K("cluster"),
            K("shared"),
            K("gauge_cache"),
            K("delete"),
            A(Arg::Cache),
            A(Arg::Key)
        ],
        |c| shared_op(c, |c| SharedOp::GaugeCacheDelete {
            cache: c.name(),
            key: c.name()
        })
    ),
    form!(
        Node,
        "The gauge caches defined on this node.",
        [K("cluster"), K("shared"), K("gauge_cache"), K("list")],
        |c| shared_op(c, |_| SharedOp::GaugeCacheList)
    ),
    form!(
        Node,
        "Write a cache key (never expires).",
        [
            K("cluster"),
            K("shared"),
            K("cache"),
            K("set"),
            A(Arg::Object),
            A(Arg::Key),
            A(Arg::Value)
        ],
        |c| shared_op(c, |c| SharedOp::CacheSet {
            object: c.name(),
            key: c.name(),
            value: c.name(),
            ttl: 0
        })
    ),
    form!(
        Node,
        "Write a cache key with a time to live.",
        [
            K("cluster"),
            K("shared"),
            K("cache"),
            K("set"),
            A(Arg::Object),
            A(Arg::Key),
            A(Arg::Value),
            A(Arg::Ttl)
        ],
        |c| shared_op(c, |c| {
            let (object, key, value) = (c.name(), c.name(), c.name());
            let ttl =
                crate::replicate::cache::parse_ttl(&c.name()).expect("the <ttl> slot checked it");
            SharedOp::CacheSet {
                object,
                key,
                value,
                ttl,
            }
        })
    ),
    form!(
        Node,
        "Read a cache key.",
        [
            K("cluster"),
            K("shared"),
            K("cache"),
            K("get"),
            A(Arg::Object),
            A(Arg::Key)
        ],
        |c| shared_op(c, |c| SharedOp::CacheGet {
            object: c.name(),
            key: c.name()
        })
    ),
    form!(
        Node,
        "Count one event of a series for an address, block or word.",
        [
            K("cluster"),
            K("shared"),
            K("series"),
            K("add"),
            A(Arg::Object),
            A(Arg::Series),
            A(Arg::Item)
        ],
        |c| shared_op(c, |c| SharedOp::SeriesAdd {
            object: c.name(),
            series: c.name(),
            item: c.name(),
            n: 1
        })
    ),
    form!(
        Node,
        "Count n events of a series for an address, block or word.",
        [
            K("cluster"),
            K("shared"),
            K("series"),
            K("add"),
            A(Arg::Object),
            A(Arg::Series),
            A(Arg::Item),
            A(Arg::Amount)
        ],
        |c| shared_op(c, |c| SharedOp::SeriesAdd {
            object: c.name(),
            series: c.name(),
            item: c.name(),
            n: c.amount()
        })
    ),
    form!(
        Node,
        "Events of a series over its first monitor's windows, global view.",
        [
            K("cluster"),
            K("shared"),
            K("series"),
            K("count"),
            A(Arg::Object),
            A(Arg::Series),
            A(Arg::Item)
        ],
        |c| shared_op(c, |c| SharedOp::SeriesCount {
            object: c.name(),
            series: c.name(),
            item: c.name(),
            local: false
        })
    ),
    form!(
        Node,
        "Events of a series over its first monitor's windows, this node's.",
        [
            K("cluster"),
            K("shared"),
            K("series"),
            K("count"),
            A(Arg::Object),
            A(Arg::Series),
            A(Arg::Item),
            K("local")
        ],
        |c| shared_op(c, |c| SharedOp::SeriesCount {
            object: c.name(),
            series: c.name(),
            item: c.name(),
            local: true
        })
    ),
    form!(
        Node,
        "Show the size and subscribers of the cluster logs.",
        [K("cluster"), K("show"), K("logs")],
        |_| cluster(ClusterCommand::ShowLogs)
    ),
    form!(
        Both,
        "Reload the configuration file.",
        [K("config"), K("reload")],
        |_| Command::ConfigReload
    ),
    form!(
        Both,
        "Display the available console commands.",
        [K("help")],
        |_| Command::Help
    ),
    form!(
        Both,
        "Join a group and print its messages as they arrive (cohortctl listen).",
        [K("listen"), A(Arg::Group)],
        |c| Command::Listen { group: c.name() }
    ),
    form!(Both, "Show the version.", [K("version")], |_| {
        Command::Version
    }),
    form!(
        Node,
        "Append one record to a cluster journal of this node.",
        [K("log"), K("append"), A(Arg::Log), A(Arg::Text)],
        |c| Command::LogAppend {
            log: c.name(),
            text: c.text(),
        }
    ),
    form!(
        Manager,
        "Broadcast a console command to the cluster.",
        [K("broadcast"), A(Arg::Command)],
        |c| manager(ManagerCommand::Broadcast {
            command: c.command()
        })
    ),
    form!(
        Manager,
        "Unicast a console command to the specified node.",
        [K("unicast"), A(Arg::Node), A(Arg::Command)],
        |c| manager(ManagerCommand::Unicast {
            node: c.name(),
            command: c.command()
        })
    ),
    form!(
        Manager,
        "Retrieve the responses to a broadcast command.",
        [K("retrieve"), A(Arg::Command)],
        |c| manager(ManagerCommand::Retrieve {
            command: c.command()
        })
    ),
    form!(
        Manager,
        "Retrieve one node's response to a unicast or broadcast command.",
        [K("retrieve_node"), A(Arg::Node), A(Arg::Command)],
        |c| manager(ManagerCommand::RetrieveNode {
            node: c.name(),
            command: c.command()
        })
    ),
    form!(
        Manager,
        "Broadcast a console command to one subcluster.",
        [
            K("subcluster"),
            K("broadcast"),
            A(Arg::Subcluster),
            A(Arg::Command)
        ],
        |c| manager(ManagerCommand::SubclusterBroadcast {
            subcluster: c.name(),
            command: c.command()
        })
    ),
    form!(
        Manager,
        "Retrieve the responses of one subcluster.",
        [
            K("subcluster"),
            K("retrieve"),
            A(Arg::Subcluster),
            A(Arg::Command)
        ],
        |c| manager(ManagerCommand::SubclusterRetrieve {
            subcluster: c.name(),
            command: c.command()
        })
    ),
    form!(
        Manager,
        "Clear the results buffer of broadcast commands.",
        [K("flush"), K("control"), K("cache")],
        |_| manager(ManagerCommand::FlushControlCache)
    ),
    form!(
        Manager,
        "Show current cluster members and their roles.",
        [K("show"), K("cluster"), K("membership")],
        |_| manager(ManagerCommand::ShowClusterMembership)
    ),
    form!(
        Manager,
        "Show general information about the cluster group and this node.",
        [K("info")],
        |_| manager(ManagerCommand::Info)
    ),
    form!(
        Manager,
        "Shut the cluster manager down.",
        [K("shutdown")],
        |_| manager(ManagerCommand::Shutdown)
    ),
];

/// Every command form, in help order (hidden alternative spellings included; see [`Form::hidden`]).
pub fn forms() -> &'static [Form] {
    FORMS
}

/// A word of the line and the 1-based column (in characters) it starts at, and its byte offset.
#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    text: &'a str,
    /// The whole line (a `<text>` slot takes it from this token on, spacing kept).
    line: &'a str,
    col: usize,
    byte: usize,
}

fn tokenize(line: &str) -> Vec<Token<'_>> {
    let mut out = Vec::with_capacity(8);
    let mut start: Option<(usize, usize)> = None;
    for (col0, (byte, ch)) in line.char_indices().enumerate() {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some((byte, col0 + 1)),
            (true, Some((b, col))) => {
                out.push(Token {
                    text: &line[b..byte],
                    line,
                    col,
                    byte: b,
                });
                start = None;
            }
            _ => {}
        }
    }
    if let Some((b, col)) = start {
        out.push(Token {
            text: &line[b..],
            line,
            col,
            byte: b,
        });
    }
    out
}

fn joined(tokens: &[Token<'_>]) -> String {
    tokens.iter().map(|t| t.text).collect::<Vec<_>>().join(" ")
}

fn expected_at(alive: &[&Form], i: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in alive {
        if let Some(w) = f.words.get(i) {
            let s = match w {
                Word::Keyword(k) => (*k).to_owned(),
                Word::Arg(a) => a.placeholder().to_owned(),
            };
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// The forms still matching after word `i` is `tok`: keywords win over argument slots, so that
/// `cluster duravip move 10.0.0.1 to` asks for the node instead of taking `to` as one.
fn step<'f>(alive: &[&'f Form], i: usize, tok: &str) -> Vec<&'f Form> {
    let kw: Vec<&Form> = alive
        .iter()
        .copied()
        .filter(|f| matches!(f.words.get(i), Some(Word::Keyword(k)) if keyword_is(k, tok)))
        .collect();
    if !kw.is_empty() {
        return kw;
    }
    alive
        .iter()
        .copied()
        .filter(|f| matches!(f.words.get(i), Some(Word::Arg(a)) if a.reject(tok).is_none()))
        .collect()
}

fn top_forms(nested: bool) -> Vec<&'static Form> {
    // Every parse starts from these; filtering the table once keeps that off each request.
    static TOP: std::sync::OnceLock<[Vec<&'static Form>; 2]> = std::sync::OnceLock::new();
    let [all, nestable] = TOP.get_or_init(|| {
        [
            FORMS.iter().collect(),
            FORMS.iter().filter(|f| f.scope != Scope::Manager).collect(),
        ]
    });
    if nested {
        nestable.clone()
    } else {
        all.clone()
    }
}

/// Parse one console line. Never panics; see [`ParseError`] for what a failure reports.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let tokens = tokenize(line);
    parse_tokens(&tokens, &[], false)
}

fn parse_tokens(
    tokens: &[Token<'_>],
    outer: &[Token<'_>],
    nested: bool,
) -> Result<Command, ParseError> {
    let mut alive = top_forms(nested);
    if tokens.is_empty() {
        return if outer.is_empty() {
            Err(ParseError::Empty {
                expected: expected_at(&alive, 0),
            })
        } else {
            Err(ParseError::MissingWord {
                after: joined(outer),
                expected: vec![Arg::Command.placeholder().to_owned()],
            })
        };
    }
    let mut captured = Captured::default();
    let prefix = |i: usize| {
        let mut all: Vec<Token<'_>> = outer.to_vec();
        all.extend_from_slice(&tokens[..i]);
        joined(&all)
    };
    for (i, tok) in tokens.iter().enumerate() {
        let next = step(&alive, i, tok.text);
        if next.is_empty() {
            if nested && i == 0 {
                let manager_word = FORMS.iter().any(|f| {
                    f.scope == Scope::Manager
                        && matches!(f.words.first(), Some(Word::Keyword(k)) if k.eq_ignore_ascii_case(tok.text))
                });
                if manager_word {
                    return Err(ParseError::NestedManagerCommand {
                        col: tok.col,
                        found: tok.text.to_owned(),
                        after: joined(outer),
                    });
                }
            }
            let bad_arg = alive.iter().find_map(|f| match f.words.get(i) {
                Some(Word::Arg(a)) => a.reject(tok.text).map(|r| (*a, r)),
                _ => None,
            });
            if let Some((arg, reason)) = bad_arg {
                return Err(ParseError::BadArgument {
                    col: tok.col,
                    found: tok.text.to_owned(),
                    after: prefix(i),
                    placeholder: arg.placeholder(),
                    reason,
                });
            }
            let expected = expected_at(&alive, i);
            if expected.is_empty() {
                return Err(ParseError::TrailingWord {
                    col: tok.col,
                    found: tok.text.to_owned(),
                    after: prefix(i),
                });
            }
            return Err(ParseError::UnexpectedWord {
                col: tok.col,
                found: tok.text.to_owned(),
                after: prefix(i),
                expected,
            });
        }
        alive = next;
        // A <command> slot takes the rest of the line; it is always a form's last word.
        if let Some(form) = alive
            .iter()
            .copied()
            .find(|f| f.words.get(i) == Some(&Word::Arg(Arg::Command)))
        {
            let mut outer_now = outer.to_vec();
            outer_now.extend_from_slice(&tokens[..i]);
            captured.command = Some(parse_tokens(&tokens[i..], &outer_now, true)?);
            return Ok((form.build)(&mut captured));
        }
        // A <text> slot takes the rest of the line as written; it is always a form's last word.
        if let Some(form) = alive
            .iter()
            .copied()
            .find(|f| f.words.get(i) == Some(&Word::Arg(Arg::Text)))
        {
            captured.text = Some(tok.line[tok.byte..].trim_end().to_owned());
            return Ok((form.build)(&mut captured));
        }
        if let Some(Word::Arg(a)) = alive[0].words.get(i) {
            match a {
                Arg::JobId => captured.id = tok.text.parse().ok(),
                Arg::Ip => captured.ip = tok.text.parse().ok(),
                Arg::Net => captured.nets.extend(shared_ops::parse_net(tok.text)),
                Arg::Amount => captured.amounts.extend(shared_ops::parse_amount(tok.text)),
                _ => captured.names.push_back(tok.text.to_owned()),
            }
        }
    }
    // A form ending here wins; with none, say what the line still needs.
    if let Some(form) = alive.iter().find(|f| f.words.len() == tokens.len()) {
        return Ok((form.build)(&mut captured));
    }
    let after = prefix(tokens.len());
    let expected = expected_at(&alive, tokens.len());
    Err(ParseError::MissingWord { after, expected })
}

/// Completions of a partial line: the keywords that may follow, filtered by the partial last word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Byte offset in the line where the word being completed starts (the line's end when the
    /// line ends in whitespace).
    pub start: usize,
    /// The keywords that fit there, in grammar order, without duplicates.
    pub candidates: Vec<&'static str>,
}

/// What may complete `line` (the text left of the cursor). Argument slots offer nothing: their
/// values (node names, addresses) are live data the client does not have.
pub fn complete(line: &str) -> Completion {
    let tokens = tokenize(line);
    let ends_in_space = line.chars().last().is_none_or(char::is_whitespace);
    let (done, partial, start) = match tokens.split_last() {
        Some((last, rest)) if !ends_in_space => (rest, last.text, last.byte),
        _ => (&tokens[..], "", line.len()),
    };
    let candidates = complete_tokens(done, partial, false);
    Completion { start, candidates }
}

fn complete_tokens(done: &[Token<'_>], partial: &str, nested: bool) -> Vec<&'static str> {
    let mut alive = top_forms(nested);
    for (i, tok) in done.iter().enumerate() {
        alive = step(&alive, i, tok.text);
        if alive
            .iter()
            .any(|f| f.words.get(i) == Some(&Word::Arg(Arg::Command)))
        {
            return complete_tokens(&done[i..], partial, true);
        }
        if alive.is_empty() {
            return Vec::new();
        }
    }
    let n = done.len();
    if alive
        .iter()
        .any(|f| f.words.get(n) == Some(&Word::Arg(Arg::Command)))
    {
        return complete_tokens(&[], partial, true);
    }
    let mut out: Vec<&'static str> = Vec::new();
    for f in &alive {
        if let Some(Word::Keyword(k)) = f.words.get(n)
            && k.len() >= partial.len()
            && k[..partial.len()].eq_ignore_ascii_case(partial)
            && !out.contains(k)
        {
            out.push(k);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(form: &Form) -> String {
        form.words
            .iter()
            .map(|w| match w {
                Word::Keyword(k) => (*k).to_owned(),
                Word::Arg(Arg::JobId) => "42".to_owned(),
                Word::Arg(Arg::Ip) => "10.0.0.1".to_owned(),
                Word::Arg(Arg::Node | Arg::Host) => "relay-0-1".to_owned(),
                Word::Arg(Arg::Subcluster) => "east".to_owned(),
                Word::Arg(Arg::Object) => "inbound_cidr".to_owned(),
                Word::Arg(Arg::Command) => "cluster info".to_owned(),
                Word::Arg(Arg::Group) => "ec_paniclog".to_owned(),
                Word::Arg(Arg::Text) => "a  log line".to_owned(),
                Word::Arg(Arg::Log) => "mainlog".to_owned(),
                Word::Arg(Arg::Net) => "10.1.0.0/16".to_owned(),
                Word::Arg(Arg::Amount) => "42".to_owned(),
                Word::Arg(Arg::Key) => "example.com".to_owned(),
                Word::Arg(Arg::Binding) => "b1".to_owned(),
                Word::Arg(Arg::Cache) => "senders".to_owned(),
                Word::Arg(Arg::Domain) => "aol.com".to_owned(),
                Word::Arg(Arg::Value) => "Some-Value".to_owned(),
                Word::Arg(Arg::Series) => "connect".to_owned(),
                Word::Arg(Arg::Item) => "192.0.2.7".to_owned(),
                Word::Arg(Arg::Rate) => "10/60".to_owned(),
                Word::Arg(Arg::Ttl) => "30".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn log_append_keeps_the_text_as_written() {
        assert_eq!(
            parse("log append mainlog  a\tlog   line  "),
            Ok(Command::LogAppend {
                log: "mainlog".into(),
                text: "a\tlog   line".into(),
            })
        );
        assert!(matches!(
            parse("log append mainlog"),
            Err(ParseError::MissingWord { .. })
        ));
    }

    #[test]
    fn forms_build_their_examples() {
        for form in forms() {
            let line = example(form);
            let cmd = parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            // The canonical text parses back to the same command.
            assert_eq!(parse(&cmd.to_string()), Ok(cmd.clone()), "{line}");
            if !form.hidden {
                assert_eq!(cmd.to_string(), line);
            }
            assert!(form.scope == cmd.scope() || form.scope == Scope::Both);
        }
    }

    #[test]
    fn every_documented_command() {
        use ClusterCommand as C;
        use ManagerCommand as M;
        let cases: Vec<(&str, Command)> = vec![
            ("cluster help", cluster(C::Help)),
            ("cluster info", cluster(C::Info)),
            ("cluster membership", cluster(C::Membership)),
            ("cluster nodename", cluster(C::Nodename)),
            ("cluster nodeaddr", cluster(C::Nodeaddr)),
            ("cluster reset", cluster(C::Reset)),
            ("cluster abort 17", cluster(C::Abort { id: 17 })),
            ("cluster jobs", cluster(C::Jobs)),
            ("cluster arp show", cluster(C::ArpShow)),
            ("cluster duravip show", cluster(C::DuravipShow)),
            ("cluster duravip show tables", cluster(C::DuravipShowTables)),
            (
                "cluster duravip debug on",
                cluster(C::DuravipDebug { on: true }),
            ),
            (
                "cluster duravip debug off",
                cluster(C::DuravipDebug { on: false }),
            ),
            (
                "cluster duravip announce view",
                cluster(C::DuravipAnnounceView),
            ),
            ("cluster duravip release all", cluster(C::DuravipReleaseAll)),
            (
                "cluster duravip move 10.0.5.139 to relay-0-2",
                cluster(C::DuravipMove {
                    ip: "10.0.5.139".parse().unwrap(),
                    to: "relay-0-2".into(),
                }),
            ),
            (
                "cluster duravip move relay-0-1 relay-0-2",
                cluster(C::DuravipMoveNode {
                    from: "relay-0-1".into(),
                    to: "relay-0-2".into(),
                }),
            ),
            (
                "cluster duravip move fe80::1 relay-0-2",
                cluster(C::DuravipMove {
                    ip: "fe80::1".parse().unwrap(),
                    to: "relay-0-2".into(),
                }),
            ),
            ("cluster shared list", cluster(C::SharedList)),
            (
                "cluster shared show inbound_cidr",
                cluster(C::SharedShow {
                    object: "inbound_cidr".into(),
                    from: None,
                }),
            ),
            (
                "cluster shared show outbound_domain from relay-0-1",
                cluster(C::SharedShow {
                    object: "outbound_domain".into(),
                    from: Some("relay-0-1".into()),
                }),
            ),
            ("cluster show logs", cluster(C::ShowLogs)),
            ("cluster counters", cluster(C::Counters)),
            ("config reload", Command::ConfigReload),
            ("help", Command::Help),
            ("version", Command::Version),
            (
                "broadcast cluster duravip announce view",
                manager(M::Broadcast {
                    command: Box::new(cluster(C::DuravipAnnounceView)),
                }),
            ),
            (
                "unicast relay-0-1 cluster info",
                manager(M::Unicast {
                    node: "relay-0-1".into(),
                    command: Box::new(cluster(C::Info)),
                }),
            ),
            (
                "retrieve cluster nodename",
                manager(M::Retrieve {
                    command: Box::new(cluster(C::Nodename)),
                }),
            ),
            (
                "retrieve_node relay-0-1 config reload",
                manager(M::RetrieveNode {
                    node: "relay-0-1".into(),
                    command: Box::new(Command::ConfigReload),
                }),
            ),
            (
                "subcluster broadcast east cluster reset",
                manager(M::SubclusterBroadcast {
                    subcluster: "east".into(),
                    command: Box::new(cluster(C::Reset)),
                }),
            ),
            (
                "subcluster retrieve east cluster reset",
                manager(M::SubclusterRetrieve {
                    subcluster: "east".into(),
                    command: Box::new(cluster(C::Reset)),
                }),
            ),
            ("flush control cache", manager(M::FlushControlCache)),
            ("show cluster membership", manager(M::ShowClusterMembership)),
            ("info", manager(M::Info)),
            ("shutdown", manager(M::Shutdown)),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Ok(want), "{line}");
        }
    }

    #[test]
    fn keywords_ignore_case_and_spacing_arguments_keep_case() {
        assert_eq!(
            parse("  CLUSTER\tShared  show Inbound_CIDR   FROM Relay-0-1 "),
            Ok(cluster(ClusterCommand::SharedShow {
                object: "Inbound_CIDR".into(),
                from: Some("Relay-0-1".into())
            }))
        );
    }

    #[test]
    fn errors_name_the_word_and_what_was_expected() {
        let e = parse("clustr info").unwrap_err();
        assert!(
            matches!(&e, ParseError::UnexpectedWord { col: 1, found, .. } if found == "clustr")
        );
        let msg = e.to_string();
        assert!(msg.contains("'clustr'") && msg.contains("cluster") && msg.contains("version"));

        let e = parse("cluster duravip bogus").unwrap_err();
        assert_eq!(
            e,
            ParseError::UnexpectedWord {
                col: 17,
                found: "bogus".into(),
                after: "cluster duravip".into(),
                expected: vec![
                    "announce".into(),
                    "debug".into(),
                    "move".into(),
                    "release".into(),
                    "show".into()
                ],
            }
        );
        assert_eq!(
            e.to_string(),
            "unknown word 'bogus' at column 17 after 'cluster duravip'; expected one of: announce, debug, move, release, show"
        );

        assert_eq!(
            parse("cluster duravip"),
            Err(ParseError::MissingWord {
                after: "cluster duravip".into(),
                expected: vec![
                    "announce".into(),
                    "debug".into(),
                    "move".into(),
                    "release".into(),
                    "show".into()
                ],
            })
        );
        let e = parse("cluster abort x1").unwrap_err();
        assert!(matches!(
            &e,
            ParseError::BadArgument {
                col: 15,
                placeholder: "<id>",
                ..
            }
        ));
        let e = parse("cluster duravip move 10.0.0.300 to a").unwrap_err();
        assert!(matches!(
            &e,
            ParseError::BadArgument {
                col: 22,
                placeholder: "<ip>",
                ..
            }
        ));
        assert_eq!(
            parse("cluster duravip move 10.0.0.3 to"),
            Err(ParseError::MissingWord {
                after: "cluster duravip move 10.0.0.3 to".into(),
                expected: vec!["<node>".into()]
            })
        );
        assert_eq!(
            parse("cluster info now"),
            Err(ParseError::TrailingWord {
                col: 14,
                found: "now".into(),
                after: "cluster info".into()
            })
        );
        assert!(matches!(parse(""), Err(ParseError::Empty { .. })));
        assert!(matches!(parse(" \t "), Err(ParseError::Empty { .. })));
    }

    #[test]
    fn carried_commands_are_checked() {
        assert_eq!(
            parse("broadcast"),
            Err(ParseError::MissingWord {
                after: "broadcast".into(),
                expected: vec!["<command>".into()]
            })
        );
        // The nested error points into the original line.
        let e = parse("unicast n1 cluster nodenam").unwrap_err();
        assert_eq!(
            e,
            ParseError::UnexpectedWord {
                col: 20,
                found: "nodenam".into(),
                after: "unicast n1 cluster".into(),
                expected: forms()
                    .iter()
                    .filter_map(|f| match (f.words.first(), f.words.get(1)) {
                        (Some(Word::Keyword("cluster")), Some(Word::Keyword(k))) =>
                            Some((*k).to_owned()),
                        _ => None,
                    })
                    .fold(Vec::new(), |mut v, k| {
                        if !v.contains(&k) {
                            v.push(k)
                        }
                        v
                    }),
            }
        );
        assert!(matches!(
            parse("broadcast shutdown"),
            Err(ParseError::NestedManagerCommand { col: 11, .. })
        ));
        assert!(matches!(
            parse("broadcast broadcast cluster info"),
            Err(ParseError::NestedManagerCommand { .. })
        ));
    }

    #[test]
    fn listen_takes_a_group_name() {
        assert_eq!(
            parse("LISTEN ec_paniclog"),
            Ok(Command::Listen {
                group: "ec_paniclog".into()
            })
        );
        assert_eq!(
            parse("listen ec_paniclog").map(|c| c.to_string()),
            Ok("listen ec_paniclog".to_owned())
        );
        let long = "g".repeat(65);
        assert!(matches!(
            parse(&format!("listen {long}")),
            Err(ParseError::BadArgument {
                col: 8,
                placeholder: "<group>",
                ..
            })
        ));
        assert!(matches!(
            parse("listen"),
            Err(ParseError::MissingWord { .. })
        ));
        assert_eq!(parse("listen g").map(|c| c.scope()), Ok(Scope::Both));
    }

    #[test]
    fn scopes() {
        assert_eq!(parse("cluster info").unwrap().scope(), Scope::Node);
        assert_eq!(parse("info").unwrap().scope(), Scope::Manager);
        assert_eq!(parse("version").unwrap().scope(), Scope::Both);
        assert!(Scope::Both.allows(Scope::Node));
        assert!(!Scope::Manager.allows(Scope::Node));
        assert!(!Scope::Node.allows(Scope::Manager));
    }

    #[test]
    fn completions() {
        let c = complete("");
        assert_eq!(c.start, 0);
        assert!(c.candidates.contains(&"cluster") && c.candidates.contains(&"broadcast"));
        let c = complete("clu");
        assert_eq!(
            c,
            Completion {
                start: 0,
                candidates: vec!["cluster"]
            }
        );
        let c = complete("cluster d");
        assert_eq!(
            c,
            Completion {
                start: 8,
                candidates: vec!["duravip"]
            }
        );
        assert_eq!(complete("cluster duravip show ").candidates, vec!["tables"]);
        assert_eq!(
            complete("cluster duravip debug ").candidates,
            vec!["on", "off"]
        );
        assert_eq!(complete("cluster s").candidates, vec!["shared", "show"]);
        assert_eq!(complete("CLUSTER SH").candidates, vec!["shared", "show"]);
        assert_eq!(complete("cluster shared show x ").candidates, vec!["from"]);
        assert!(complete("cluster abort ").candidates.is_empty());
        assert!(complete("nonsense ").candidates.is_empty());
        // Inside a carried command, node commands complete; manager ones do not.
        let c = complete("broadcast ");
        assert!(c.candidates.contains(&"cluster") && !c.candidates.contains(&"shutdown"));
        assert_eq!(
            complete("unicast n1 cluster me").candidates,
            vec!["membership"]
        );
        assert_eq!(complete("subcluster b").candidates, vec!["broadcast"]);
        let c = complete("subcluster broadcast east cluster duravip a");
        assert_eq!(c.candidates, vec!["announce"]);
        assert_eq!(c.start, "subcluster broadcast east cluster duravip ".len());
    }

    #[test]
    fn every_completion_leads_to_a_command() {
        // Walk the completion tree from the empty line: each keyword offered extends a line that
        // is either a command or a prefix of one (its parse fails only for a missing word).
        let mut frontier = vec![String::new()];
        let mut seen = 0;
        while let Some(line) = frontier.pop() {
            for k in complete(&line).candidates {
                let next = format!("{line}{k} ");
                seen += 1;
                assert!(seen < 10_000, "completion tree does not end");
                match parse(&next) {
                    Ok(_) | Err(ParseError::MissingWord { .. }) => {}
                    Err(e) => panic!("{next:?}: {e}"),
                }
                frontier.push(next);
            }
        }
        assert!(seen > 30);
    }

    proptest::proptest! {
        #[test]
        fn parse_and_complete_never_panic(s in "\\PC{0,80}") {
            let _ = parse(&s);
            let c = complete(&s);
            proptest::prop_assert!(c.start <= s.len() && s.is_char_boundary(c.start));
        }

        #[test]
        fn words_from_the_grammar_never_panic(
            words in proptest::collection::vec(
                proptest::sample::select(vec![
                    "cluster", "duravip", "move", "to", "show", "shared", "from", "broadcast",
                    "unicast", "subcluster", "retrieve", "10.0.0.1", "x", "42", "on", "info",
                ]),
                0..9,
            )
        ) {
            let line = words.join(" ");
            if let Ok(cmd) = parse(&line) {
                proptest::prop_assert_eq!(parse(&cmd.to_string()), Ok(cmd));
            }
            let _ = complete(&line);
        }
    }
}
