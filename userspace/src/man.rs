//! Man pages generated from the binaries' own clap definitions and from the configuration's
//! option tables, so they cannot drift from what the programs accept: `cohortd --man` prints
//! cohortd(8), `cohortctl --man` cohortctl(1), `cohort-jlog --man` cohort-jlog(1),
//! `cohort-bench --man` cohort-bench(1), and `cohortd --man-config` cohort.conf(5). `ci/package`
//! installs them.

use clap::CommandFactory;
use cohort_engine::config::options::{self, Reload, Row};

/// When the first argument is `--man`, prints the man page of `C` in `section` and returns true
/// (the caller exits); else returns false. Checked before the arguments are parsed, so a
/// program whose parser requires a subcommand still answers it.
pub fn intercept<C: CommandFactory>(section: &'static str) -> bool {
    if std::env::args().nth(1).as_deref() != Some("--man") {
        return false;
    }
    let mut out = Vec::new();
    let cmd = C::command();
    if let Err(e) = clap_mangen::Man::new(cmd).section(section).render(&mut out) {
        eprintln!("cannot render the man page: {e}");
    }
    print!("{}", String::from_utf8_lossy(&out));
    true
}

/// Escapes text for roff: backslashes, and a leading dot or quote.
fn roff(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('`', "");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn table(out: &mut String, scope: &str, opts: &[Row]) {
    out.push_str(&format!(".SS {scope} {{ }}\n"));
    for o in opts {
        let ext = if o.extension {
            " Cohort extension."
        } else {
            ""
        };
        let reload = match o.reload {
            Reload::Applies => "a reload applies it",
            Reload::Restart => "needs a restart",
        };
        out.push_str(&format!(
            ".TP\n.B {}\n{} ({}; default {}; accepted: {}; {}).{}\n",
            o.name,
            roff(o.doc),
            o.kind,
            roff(o.default),
            roff(o.bound),
            reload,
            ext
        ));
    }
}

/// cohort.conf(5), from the option tables.
pub fn config_page() -> String {
    let mut out = format!(
        ".TH COHORT.CONF 5 \"\" \"Cohort {}\" \"File Formats\"\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(
        ".SH NAME\ncohort.conf \\- configuration of the Cohort cluster daemon\n\
         .SH SYNOPSIS\n/etc/cohort/cohort.conf\n\
         .SH DESCRIPTION\n\
         Momentum's configuration syntax: scopes (\\fBcluster { }\\fR, \\fBReplicate \"name\" { }\\fR), \
         \\fIkey\\fR = \\fIvalue\\fR options, quoted strings, dictionaries [ k = v ], lists ( a, b ), \
         # comments and \\fBinclude \"file\"\\fR. Names are matched case-insensitively. Time values are \
         seconds, fractions allowed, at most a day. \\fBcohortd --check-config\\fR checks a file the way \
         the daemon does and prints FILE:LINE:COL on an error; \\fBconfig reload\\fR (or SIGHUP) applies \
         the options marked so below and refuses a file that changes one that needs a restart.\n\
         .SH OPTIONS\n",
    );
    for (_, written, rows) in options::catalogue() {
        table(&mut out, written, &rows);
    }
    out.push_str(
        ".SS Listeners\n\
         \\fBControl_Listener\\fR, \\fBECCluster_Listener\\fR and \\fBMetrics_Listener\\fR hold \
         \\fBListen \"ADDR\" { }\\fR scopes only (a Unix socket path, IP:port, [IPv6]:port or *:port); \
         \\fBBinding_Group \"name\" { }\\fR holds \\fBBinding\\fR scopes. Options of the MTA in any of \
         these scopes are kept and reported once.\n\
         .SH FILES\n/etc/cohort/cohort.conf\n\
         .SH SEE ALSO\n\\fBcohortd\\fR(8), \\fBcohortctl\\fR(1)\n",
    );
    out
}
