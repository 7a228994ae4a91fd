//! Which shell runs the templates that need one, chosen as GNU parallel does.
//!
//! In order: `PARALLEL_SHELL`; else the shell pardo was started from (the nearest ancestor
//! process whose executable is one, as GNU parallel looks); else `SHELL`; else `/bin/sh`.
//! Only shells whose quoting pardo knows are used, since the quoting guarantees of
//! [`Template`](super::Template) rest on it: the sh family (`sh`, `dash`, `bash`, `zsh`, `ksh`,
//! `mksh`, `ash`, busybox's `sh`/`ash`). A shell named explicitly in `PARALLEL_SHELL` that is
//! not one of them (csh, tcsh, fish, …) is an error; one only found implicitly (an ancestor
//! process or `SHELL`) is passed over, falling back to the next choice and finally to
//! `/bin/sh`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The sh-family shell names whose quoting pardo knows.
const KNOWN: &[&str] = &["sh", "dash", "bash", "zsh", "ksh", "ksh93", "mksh", "ash"];

/// Why no shell could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "PARALLEL_SHELL={0}: pardo does not know how this shell quotes, so it cannot keep values \
     from running as code; use one of sh, dash, bash, zsh, ksh, mksh or ash"
)]
pub struct UnknownShell(pub String);

/// True when `path` names a shell of the sh family (by its file name).
pub fn is_known(path: &Path) -> bool {
    path.file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|n| KNOWN.contains(&n))
}

/// Chooses the shell from explicit settings: `parallel_shell` (`PARALLEL_SHELL`), `parent`
/// (the shell pardo was started from), `shell` (`SHELL`).
///
/// ```
/// use std::path::{Path, PathBuf};
/// use pardo::command::shell::choose;
/// assert_eq!(choose(None, Some(Path::new("/usr/bin/fish")), Some("/bin/bash".as_ref())),
///            Ok(PathBuf::from("/bin/bash")));
/// assert!(choose(Some("/usr/bin/fish".as_ref()), None, None).is_err());
/// ```
pub fn choose(
    parallel_shell: Option<&OsStr>,
    parent: Option<&Path>,
    shell: Option<&OsStr>,
) -> Result<PathBuf, UnknownShell> {
    if let Some(s) = parallel_shell.filter(|s| !s.is_empty()) {
        let p = PathBuf::from(s);
        return if is_known(&p) {
            Ok(p)
        } else {
            Err(UnknownShell(p.display().to_string()))
        };
    }
    let implicit = [parent.map(Path::to_path_buf), shell.map(PathBuf::from)];
    Ok(implicit
        .into_iter()
        .flatten()
        .find(|p| p.is_absolute() && is_known(p))
        .unwrap_or_else(|| PathBuf::from("/bin/sh")))
}

/// The shell for this process, chosen once from the environment (see the module docs).
///
/// # Errors
///
/// [`UnknownShell`] when `PARALLEL_SHELL` names a shell pardo cannot quote for.
pub fn current() -> Result<&'static Path, UnknownShell> {
    static SHELL: OnceLock<Result<PathBuf, UnknownShell>> = OnceLock::new();
    SHELL
        .get_or_init(|| {
            let parent = parent_shell();
            choose(
                std::env::var_os("PARALLEL_SHELL").as_deref(),
                parent.as_deref(),
                std::env::var_os("SHELL").as_deref(),
            )
        })
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

/// The nearest ancestor process (parent, grandparent, …) whose executable is a shell pardo
/// knows, from `/proc` (Linux). GNU parallel too looks past the parent: run from a test
/// harness, `make` or a Python script, both pick the shell that started those.
fn parent_shell() -> Option<PathBuf> {
    // SAFETY: getppid has no preconditions and cannot fail.
    let mut pid = unsafe { libc::getppid() };
    // A bound in case /proc shows a cycle (PID namespaces can).
    for _ in 0..64 {
        if pid <= 1 {
            return None;
        }
        if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
            if is_known(&exe) {
                return Some(exe);
            }
        }
        pid = parent_of(pid)?;
    }
    None
}

/// The parent pid of `pid`: the field after the state in `/proc/PID/stat`, read after the last
/// `)` since the command name between parentheses may hold spaces and parentheses.
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// True when `name` is a function bash exported (`export -f name`) into this environment, so
/// only a bash shell can run it.
pub fn is_exported_function(name: &OsStr) -> bool {
    if name.as_bytes().contains(&b'/') {
        return false;
    }
    let mut var = OsString::from("BASH_FUNC_");
    var.push(name);
    var.push("%%");
    std::env::var_os(var).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_reads_the_parent_pid_past_the_command_name() {
        // SAFETY: getpid and getppid have no preconditions and cannot fail.
        let (me, parent) = unsafe { (libc::getpid(), libc::getppid()) };
        assert_eq!(parent_of(me), Some(parent));
        assert_eq!(parent_of(-1), None);
    }

    #[test]
    fn explicit_unknown_shell_is_an_error_implicit_one_falls_back() {
        let fish = Some(OsStr::new("/usr/bin/fish"));
        assert!(choose(fish, None, None).is_err());
        assert_eq!(
            choose(None, Some(Path::new("/bin/tcsh")), fish),
            Ok(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            choose(
                None,
                Some(Path::new("/usr/bin/zsh")),
                Some("/bin/bash".as_ref())
            ),
            Ok(PathBuf::from("/usr/bin/zsh"))
        );
        assert_eq!(
            choose(Some("/usr/bin/dash".as_ref()), None, None),
            Ok(PathBuf::from("/usr/bin/dash"))
        );
    }
}
